// How a trainable model holds its parameters on the device, in one of three forms the backend
// decides:
//
// - kF32: fp32 values, which products read as they are;
// - kF32WithCopy: fp32 values and a bf16 copy of all of them for the products, refreshed by every
//   optimizer step (backends whose products read bf16 weights but whose optimizer updates fp32
//   values only): 6 bytes a parameter;
// - kHalves: the decayed tensors (every matrix, the embeddings included) held as fp32 halves
//   (core/fp32_halves.h), whose high halves are the bf16 weights products read, and the others
//   (biases, norm gains) fp32: 4 bytes a parameter, as fp32 alone. The optimizer updates the
//   halves in place (ops::AdamW::params_low) and the embedding reads them (ops::Embedding).
//
// In every form the allocation has the layout's 4 bytes a float: the decayed region's D floats
// are, as halves, D high halves and then D low halves; the floats after it are fp32 at their own
// offsets.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"
#include "model/blocks/block_context.h"
#include "model/device_buffer.h"
#include "model/parameter_layout.h"

namespace switchyard::model {

class ParameterStorage {
 public:
  enum class Form { kF32, kF32WithCopy, kHalves };

  // Zeros, in the form the backend asks for (Form's comment).
  ParameterStorage(backend::Backend& backend, const ParameterLayout& layout);

  Form form() const { return form_; }
  // The dtype products read a tensor at `offset` in: bf16 in the two bf16 forms (the decayed
  // tensors, with halves), fp32 otherwise.
  DType read_dtype(size_t offset) const;

  // The value (and low halves), and the form products read, of the tensor at `offset` viewed with
  // `shape` (a view may cover tensors placed after it: a packed q|k|v projection).
  void view(size_t offset, std::initializer_list<int64_t> shape, blocks::ParamRef& ref) const;

  // The whole parameter vector, layout order, to and from the host (the copy refreshed).
  std::vector<float> to_host() const;
  void from_host(const std::vector<float>& values);

  // Device views of the parameters in `range`, which lies inside one decay region, for the
  // collectives: one fp32 view, or the views of its high (bf16) and low (u16) halves; each holds
  // the range's elements in order. None for an empty range.
  std::vector<Tensor> views(const FloatRange& range) const;

  // AdamW's parameter operands (params, and params_copy or params_low) for `range`, inside one
  // decay region.
  void set_update_operands(const FloatRange& range, backend::ops::AdamW& update) const;
  // Writes the bf16 copy from the fp32 values (kF32WithCopy; nothing in the other forms), after
  // anything but the optimizer has changed the values (collectives).
  void refresh_copy();
  // The values' stamp (model/weight_stamp.h); renew_stamp() after every change.
  const uint64_t* stamp() const { return &stamp_; }
  void renew_stamp();

 private:
  uint16_t* high_halves() const { return reinterpret_cast<uint16_t*>(values_.get()); }
  uint16_t* low_halves() const { return high_halves() + halves_end_; }
  bool in_halves(const FloatRange& range) const { return range.begin < halves_end_; }

  backend::Backend& backend_;
  Form form_ = Form::kF32;
  size_t total_ = 0;
  size_t halves_end_ = 0;  // floats [0, halves_end_) are held as halves (the decayed region)
  DeviceBuffer values_;
  DeviceBuffer copy_;  // kF32WithCopy's bf16 copy
  uint64_t stamp_ = 0;
};

}  // namespace switchyard::model
