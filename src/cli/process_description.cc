#include "cli/process_description.h"

#include "backend/cpu/cpu_backend.h"

namespace switchyard::cli {

std::string describe_process() {
  // The host line already names the OpenMP threads, why that many, and how they wait.
  return "switchyard on " + backend::cpu::describe_host_cpu();
}

}  // namespace switchyard::cli
