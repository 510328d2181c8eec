#include "model/parameter_storage.h"

#include <algorithm>
#include <array>

#include "core/error.h"
#include "core/fp32_halves.h"
#include "model/weight_stamp.h"

namespace switchyard::model {
namespace {

namespace ops = backend::ops;
using backend::OpKind;

int64_t i64(size_t n) { return static_cast<int64_t>(n); }

// Halves where the backend updates them and its embedding reads them natively; a bf16 copy where
// its products want bf16 weights otherwise.
ParameterStorage::Form form_for(const backend::Backend& backend) {
  const backend::Precision precision = backend.precision();
  if (precision.matmul_weights == DType::kF32) return ParameterStorage::Form::kF32;
  constexpr DType f = DType::kF32, b = DType::kBF16, u = DType::kU16, i = DType::kI32;
  // ops.h's operand order; an absent operand reads as fp32.
  const std::array<DType, 7> update{b, f, f, f, DType::kF64, f, u};
  const std::array<DType, 7> lookup{precision.activations, i, b, i, b, u, u};
  const std::array<DType, 7> lookup_without_positions{precision.activations, i, b, f, f, u, f};
  const bool halves = precision.matmul_weights == DType::kBF16 &&
                      backend.supports(OpKind::kAdamW, update) &&
                      backend.supports(OpKind::kEmbedding, lookup) &&
                      backend.supports(OpKind::kEmbedding, lookup_without_positions);
  return halves ? ParameterStorage::Form::kHalves : ParameterStorage::Form::kF32WithCopy;
}

// Floats a host conversion moves at a time: the halves pass through buffers this size, not
// through a second copy of the whole vector.
constexpr size_t kHostChunk = size_t{1} << 20;

}  // namespace

ParameterStorage::ParameterStorage(backend::Backend& backend, const ParameterLayout& layout)
    : backend_(backend), form_(form_for(backend)), total_(layout.total()),
      values_(backend, layout.total()), stamp_(new_weight_stamp()) {
  if (form_ == Form::kHalves) halves_end_ = layout.decay_end();
  if (form_ == Form::kF32WithCopy) {
    const DType weights = backend_.precision().matmul_weights;
    copy_ = DeviceBuffer(backend_, (storage_bytes(weights, i64(total_)) + 3) / 4);
  }
}

DType ParameterStorage::read_dtype(size_t offset) const {
  if (form_ == Form::kF32WithCopy || offset < halves_end_) return backend_.precision().matmul_weights;
  return DType::kF32;
}

void ParameterStorage::view(size_t offset, std::initializer_list<int64_t> shape,
                            blocks::ParamRef& ref) const {
  if (offset < halves_end_) {
    ref.value = Tensor::dense(high_halves() + offset, DType::kBF16, shape);
    ref.low = Tensor::dense(low_halves() + offset, DType::kU16, shape);
    ref.weight = ref.value;
    return;
  }
  ref.value = Tensor::dense(values_.get() + offset, DType::kF32, shape);
  ref.weight = ref.value;
  if (form_ == Form::kF32WithCopy) {
    const DType dtype = backend_.precision().matmul_weights;
    const char* base = reinterpret_cast<const char*>(copy_.get());
    ref.weight = Tensor::dense(base + storage_bytes(dtype, i64(offset)), dtype, shape);
  }
}

std::vector<float> ParameterStorage::to_host() const {
  std::vector<float> values(total_);
  std::vector<uint16_t> high, low;
  for (size_t begin = 0; begin < halves_end_; begin += kHostChunk) {
    const size_t n = std::min(kHostChunk, halves_end_ - begin);
    high.resize(n), low.resize(n);
    backend_.copy_to_host(high.data(), high_halves() + begin, n * sizeof(uint16_t));
    backend_.copy_to_host(low.data(), low_halves() + begin, n * sizeof(uint16_t));
    join_fp32(high.data(), low.data(), values.data() + begin, n);
  }
  backend_.copy_to_host(values.data() + halves_end_, values_.get() + halves_end_,
                        (total_ - halves_end_) * sizeof(float));
  return values;
}

void ParameterStorage::from_host(const std::vector<float>& values) {
  require(values.size() == total_, "parameter vector has {} values, the model needs {}",
          values.size(), total_);
  std::vector<uint16_t> high, low;
  for (size_t begin = 0; begin < halves_end_; begin += kHostChunk) {
    const size_t n = std::min(kHostChunk, halves_end_ - begin);
    high.resize(n), low.resize(n);
    split_fp32(values.data() + begin, high.data(), low.data(), n);
    backend_.copy_to_device(high_halves() + begin, high.data(), n * sizeof(uint16_t));
    backend_.copy_to_device(low_halves() + begin, low.data(), n * sizeof(uint16_t));
  }
  backend_.copy_to_device(values_.get() + halves_end_, values.data() + halves_end_,
                          (total_ - halves_end_) * sizeof(float));
  refresh_copy();
  renew_stamp();
}

void ParameterStorage::renew_stamp() { stamp_ = new_weight_stamp(); }

std::vector<Tensor> ParameterStorage::views(const FloatRange& range) const {
  require(range.begin <= range.end && range.end <= total_ &&
              (range.end <= halves_end_ || range.begin >= halves_end_),
          "parameter range [{}, {}) does not lie inside one decay region", range.begin, range.end);
  if (range.size() == 0) return {};
  const int64_t n = i64(range.size());
  if (in_halves(range)) {
    return {Tensor::dense(high_halves() + range.begin, DType::kBF16, {n}),
            Tensor::dense(low_halves() + range.begin, DType::kU16, {n})};
  }
  return {Tensor::dense(values_.get() + range.begin, DType::kF32, {n})};
}

void ParameterStorage::set_update_operands(const FloatRange& range, ops::AdamW& update) const {
  const std::vector<Tensor> pieces = views(range);
  if (pieces.empty()) return;
  update.params = pieces[0];
  if (in_halves(range)) update.params_low = pieces[1];
  if (form_ == Form::kF32WithCopy) {
    const DType dtype = backend_.precision().matmul_weights;
    const char* base = reinterpret_cast<const char*>(copy_.get());
    update.params_copy = Tensor::dense(base + storage_bytes(dtype, i64(range.begin)), dtype,
                                       {i64(range.size())});
  }
}

void ParameterStorage::refresh_copy() {
  if (form_ != Form::kF32WithCopy) return;
  const int64_t n = i64(total_);
  backend_.run(ops::Cast{
      .out = Tensor::dense(copy_.get(), backend_.precision().matmul_weights, {n}),
      .inp = Tensor::dense(values_.get(), DType::kF32, {n})});
}

}  // namespace switchyard::model
