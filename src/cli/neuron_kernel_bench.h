// `switchyard neuron bench <kernel>` for the model kernels of the trn*-sim backend (layernorm,
// attention, cross_entropy, ...): runs one kernel HBM to HBM on random inputs at a given shape
// and reports it like the matmul bench.
#pragma once

#include <string>

namespace switchyard::cli {

struct ModelKernelBench {
  std::string kernel;
  std::string target = "trn2";
  std::string shape;
  std::string dtype = "bf16";  // bf16: bf16 activations and compute; fp32: fp32 throughout
  std::string trace;
  uint64_t seed = 1;
  bool json = false;
};

// The kernels run_model_kernel_bench knows, with the shape each expects, one per line.
std::string model_kernel_usage();
bool is_model_kernel(const std::string& kernel);
void run_model_kernel_bench(const ModelKernelBench& bench);

}  // namespace switchyard::cli
