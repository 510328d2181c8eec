#include "cli/openmp_environment.h"

#include <unistd.h>

#include <cstdlib>

namespace switchyard::cli {
namespace {

// Passive waiting: an idle thread sleeps at once and is woken when work arrives.
constexpr const char* kWaitPolicy = "passive";
// Set on the second start so that a failed setenv can never loop.
constexpr const char* kRestartedMarker = "SWITCHYARD_OPENMP_CONFIGURED";

bool is_set(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0';
}

}  // namespace

void ensure_openmp_wait_policy(char** argv) {
  if (is_set("OMP_WAIT_POLICY") || is_set("GOMP_SPINCOUNT") || is_set(kRestartedMarker)) return;
  if (setenv("OMP_WAIT_POLICY", kWaitPolicy, 1) != 0 || setenv(kRestartedMarker, "1", 1) != 0) return;
  execv("/proc/self/exe", argv);
  // Starting again failed (no /proc, say): run on under the runtime's default policy, which is
  // only slower on a busy machine. Undo the variables so that child processes see the truth.
  unsetenv("OMP_WAIT_POLICY");
  unsetenv(kRestartedMarker);
}

}  // namespace switchyard::cli
