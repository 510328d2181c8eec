// What the shared blocks (embeddings, norms, attention, MLPs, heads) work with: the backend, the
// batch's index tensors on the device, the KV cache when the batch runs over one, and parameter
// references.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "backend/backend.h"
#include "core/tensor.h"
#include "model/batch_on_device.h"
#include "model/gradient_ledger.h"
#include "model/kv_cache.h"

namespace switchyard::model::blocks {

namespace ops = backend::ops;

// One parameter tensor: its fp32 value and gradient, and the form linear layers read (the value
// itself, or its copy in the backend's matmul weight dtype). A value held as fp32 halves
// (core/fp32_halves.h; Model) is two tensors: `value` and `weight` bf16, its high halves, and `low`
// its low halves, which the ops that read the exact value (the embedding) take beside it.
struct ParamRef {
  Tensor value, grad, weight;
  Tensor low;  // u16, where the value is held as halves; empty otherwise
  // The model's current stamp for its weights (model/weight_stamp.h), read when an op runs.
  const uint64_t* stamp = nullptr;
  bool present() const { return !value.empty(); }
  uint64_t current_stamp() const { return stamp ? *stamp : 0; }
};

struct BlockContext {
  backend::Backend& backend;
  DType activations;             // the backend's activation dtype
  const BatchOnDevice& batch;
  KvCache* cache = nullptr;      // set when the batch runs over a cache
  // Set in a training step whose gradients were not zeroed up front (Model::begin_step).
  GradientLedger* gradients = nullptr;

  // An activation tensor of this context's dtype over `data`.
  Tensor act(const void* data, std::initializer_list<int64_t> shape) const {
    return Tensor::dense(data, activations, shape);
  }
  // Rows over a cache belong to sequences that must get the same numbers alone or batched with
  // others, so their products are asked to be batch-invariant (ops::Linear::batch_invariant).
  bool batch_invariant() const { return cache != nullptr; }
  // The stamp a product over `weight` carries: its current one over a cache (serving, whose
  // weights stay put), none in training, where every step changes them.
  uint64_t weight_stamp(const ParamRef& weight) const {
    return cache != nullptr ? weight.current_stamp() : 0;
  }
  // Zeroes a dense tensor (gradients accumulate, so their buffers start at zero).
  void zero(const Tensor& t) const { backend.fill_zero(t.data, t.bytes()); }
  // A parameter gradient's first write in a step that did not zero them: the op may set it.
  bool first_write(const Tensor& grad) const { return gradients && gradients->claim(grad); }
  // Before an op adds to a parameter gradient: zeroes it on its first write in such a step.
  void ready_to_add(const Tensor& grad) const {
    if (first_write(grad)) zero(grad);
  }
};

}  // namespace switchyard::model::blocks
