// One kernel launch of the simulator backend.
//
// Device memory is host memory that holds every tensor in its own dtype (bf16 activations as
// bf16, parameters and statistics as fp32), as HBM would. A launch presents an op's tensors to a
// tile program as HBM tensors over that very memory, in place: a kernel reads and writes device
// memory itself. Presenting costs no simulated time (on the device the tensor already is in HBM).
// finish() fences the core, so the next launch starts after this one ends, as kernels launched
// one after another do.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/neuron/kernel_support.h"
#include "core/tensor.h"

namespace switchyard::backend::neuron {

class Launch {
 public:
  explicit Launch(NeuronCore& core) : core_(core) {}
  ~Launch();  // releases the launch's HBM tensors, also when the kernel threw
  Launch(const Launch&) = delete;
  Launch& operator=(const Launch&) = delete;

  // `elements` of `dtype` at `data` as an HBM tensor of `shape` (its first dimension the rows).
  // Memory already presented to this launch with the same shape and dtype gets the same tensor,
  // so that an output aliasing an input (cross-entropy backward in place) is one tensor.
  View hbm(void* data, DType dtype, const std::vector<int64_t>& shape, const char* name);
  // A dense tensor as an HBM tensor of `shape` (the same element count, e.g. [N] for a flat
  // elementwise kernel); its own shape when `shape` is empty.
  View hbm(const Tensor& t, const char* name, std::vector<int64_t> shape = {});
  // hbm() for an optional operand: an empty View() when `t` is absent.
  View optional(const Tensor& t, const char* name, std::vector<int64_t> shape = {});
  // Fences the core: the launch's instructions end before the next launch's begin.
  void finish() { core_.fence(); }

 private:
  struct Presented {
    View view;
    const void* data = nullptr;
    std::vector<int64_t> shape;
  };
  NeuronCore& core_;
  std::vector<Presented> presented_;
};

}  // namespace switchyard::backend::neuron
