// A model's parameters for inference only: each tensor kept in the dtype it is stored in, without
// gradients or optimizer state. bf16 and MXFP4 checkpoints stay bf16 and MXFP4 in memory (the
// products decode them in registers), so gpt-oss-20b takes about 13 GB instead of 84.
//
// On a backend whose memory is host memory, a matrix the checkpoint holds as the kernels read it
// (not transposed by the layout, not packed with a neighbour) is used in place from the
// memory-mapped file. Everything else is copied once: vectors (norm gains, biases, sinks), which
// the kernels read as fp32; tensors the layout transposes (fp32 copies); tensors packed with a
// neighbour (q, k and v as one projection), in their stored dtype.
//
// Random weights (no checkpoint) take the published layout's dtypes: MXFP4 for stacks of expert
// matrices, bf16 for the other matrices, fp32 vectors; for benchmarks that need no download. On a
// timing-only simulator they are left as allocated (zero): nothing reads their values there.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"
#include "model/device_buffer.h"
#include "model/parameter_layout.h"
#include "model/safetensors_set.h"
#include "model/weight_stamp.h"

namespace switchyard::model {

struct WeightSource {
  std::string checkpoint;  // a checkpoint directory; empty: random weights
  uint64_t seed = 1337;    // for random weights
  DType random_expert_dtype = DType::kMXFP4;  // random weights' expert stacks: MXFP4 or bf16
};

class FrozenWeights {
 public:
  // Throws Error naming the file or tensor for a checkpoint that does not fit the layout.
  FrozenWeights(backend::Backend& backend, const ParameterLayout& layout, const WeightSource& source);

  // Layout tensor `index` (layout().tensors() order) with its layout shape.
  const Tensor& tensor(size_t index) const { return tensors_.at(index); }
  // Bytes of weights in memory (mapped ones included) and of those copied.
  int64_t bytes() const { return bytes_; }
  // The weights' stamp (model/weight_stamp.h): one for their whole life, as they never change.
  const uint64_t* stamp() const { return &stamp_; }
  int64_t copied_bytes() const { return copied_bytes_; }

 private:
  uint64_t stamp_ = new_weight_stamp();
  // The dtype tensor t takes, and whether it is read in place from the checkpoint.
  struct Plan {
    DType dtype = DType::kF32;
    bool mapped = false;
  };
  Plan plan_tensor(const ParameterTensor& t) const;
  // The checkpoint's tensor for t (GPT-2's may carry the "transformer." prefix), or null.
  const TensorInfo* stored(const ParameterTensor& t) const;
  void place_group(const std::vector<size_t>& group, const std::vector<Plan>& plans);
  void fill_copy(const ParameterTensor& t, const Tensor& dst, uint64_t seed) const;

  backend::Backend& backend_;
  const ParameterLayout& layout_;
  WeightSource source_;
  std::optional<SafetensorsSet> files_;
  std::vector<DeviceBuffer> buffers_;
  std::vector<Tensor> tensors_;
  int64_t bytes_ = 0, copied_bytes_ = 0;
};

}  // namespace switchyard::model
