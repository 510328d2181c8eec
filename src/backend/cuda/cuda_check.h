// Turning CUDA status codes into switchyard::Error messages a user can act on.
//
// Every CUDA runtime call in the backend goes through check_cuda(), and every kernel launch is
// followed by check_launch(): a failure becomes an Error naming what was being done and the
// runtime's own words for the problem, never a bare error code or a crash.
#pragma once

#include <cuda_runtime_api.h>

namespace switchyard::backend::cuda {

// Throws Error "CUDA <what> failed: <description> (<error name>)" unless status is cudaSuccess.
// Driver/toolkit mismatches and missing devices get a sentence saying what to install or check.
void check_cuda(cudaError_t status, const char* what);

// Checks that the kernel launched just before on this thread was accepted (bad launch
// configuration, too much shared memory, no kernel image for this GPU); throws Error naming it.
void check_launch(const char* kernel);

}  // namespace switchyard::backend::cuda
