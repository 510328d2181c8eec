// One kernel launch of the simulator backend.
//
// The backend keeps device memory as host fp32 arrays (the Backend interface is fp32). A launch
// presents them to a tile program as HBM tensors in the dtypes the hardware would store: fp32
// tensors (parameters, their gradients, optimizer state, statistics) are used in place; in bf16
// mode activations and activation gradients are staged as bf16 tensors (rounded on the way in,
// widened on the way back), so every value that crosses a kernel boundary is what a bf16 HBM
// tensor would hold. Staging costs no simulated time: on the device the tensor already is in HBM.
// finish() copies staged outputs back and fences, so the next launch starts after this one ends,
// as kernels launched one after another do.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

class Launch {
 public:
  // `activations`: the HBM dtype of activations and activation gradients (kBF16 or kF32).
  Launch(NeuronCore& core, DType activations);
  ~Launch();  // frees the launch's HBM tensors, also when the kernel threw
  Launch(const Launch&) = delete;
  Launch& operator=(const Launch&) = delete;

  // An fp32 tensor of device memory, read and written in place.
  View fp32(const float* data, std::vector<int64_t> shape, const char* name);
  View int32(const int32_t* data, std::vector<int64_t> shape, const char* name);
  // An activation the kernel reads.
  View activation_in(const float* data, std::vector<int64_t> shape, const char* name);
  // An activation the kernel writes; with `accumulate` it starts from the current contents. A
  // pointer already presented to this launch with the same shape gets the same tensor (in-place
  // kernels such as cross-entropy backward).
  View activation_out(float* data, std::vector<int64_t> shape, const char* name,
                      bool accumulate);
  // Copies staged outputs back to device memory and fences the core.
  void finish();

 private:
  struct Tensor {
    View view;
    const void* data = nullptr;
    int64_t elements = 0;
    bool staged = false;  // a copy in another dtype (bf16 activations), not the memory itself
    bool output = false;
  };
  View present(const void* data, std::vector<int64_t> shape, DType dtype, const char* name,
               bool staged, bool output, bool load);
  NeuronCore& core_;
  DType activations_;
  std::vector<Tensor> tensors_;
};

}  // namespace switchyard::backend::neuron
