// What processes under mpirun need in the sanitizer build (see tests/CMakeLists.txt): Open MPI's
// allocations kept until exit are suppressed for LeakSanitizer, found through whole stacks of
// components that stay loaded. Harmless in other builds.
#pragma once

#include <cstdlib>
#include <string>

namespace switchyard {

inline void set_mpi_sanitizer_environment() {
  setenv("ASAN_OPTIONS", "detect_leaks=1:fast_unwind_on_malloc=0", 1);
  const std::string suppressions = std::string(SWITCHYARD_TEST_DATA) + "/../lsan_suppressions.txt";
  setenv("LSAN_OPTIONS", ("suppressions=" + suppressions).c_str(), 1);
  setenv("OMPI_MCA_mca_base_component_disable_dlclose", "1", 1);
}

}  // namespace switchyard
