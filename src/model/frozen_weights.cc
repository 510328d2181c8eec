#include "model/frozen_weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fmt/format.h>

#include "core/error.h"
#include "core/rng.h"
#include "model/checkpoint.h"

namespace switchyard::model {

namespace {

constexpr const char* kGpt2Prefix = "transformer.";
constexpr size_t kChunkBytes = size_t{64} << 20;  // random weights are made and copied in chunks

// What the kernels read as fp32: norm gains, biases (expert biases too), sinks.
bool is_vector(const ParameterTensor& t) { return t.shape.size() == 1 || t.name.ends_with("bias"); }

// Bytes of a tensor of `dtype` with `numel` elements, MXFP4 scales included.
size_t tensor_bytes(DType dtype, int64_t numel) {
  size_t bytes = storage_bytes(dtype, numel);
  if (dtype == DType::kMXFP4) bytes += static_cast<size_t>(numel / 32);
  return (bytes + 63) / 64 * 64;
}

// A dense row-major tensor of `shape` over data (MXFP4: codes, then `scales`).
Tensor dense_tensor(const void* data, const uint8_t* scales, DType dtype,
                    const std::vector<int64_t>& shape) {
  Tensor t = Tensor::dense(data, dtype, {});
  t.rank = static_cast<int>(shape.size());
  int64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.shape[d] = shape[d];
    t.strides[d] = stride;
    stride *= shape[d];
  }
  t.scales = scales;
  return t;
}

std::string shape_string(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

// Copies `bytes` produced chunk by chunk by make(chunk, offset, size) to device memory at dst.
template <typename Make>
void copy_in_chunks(backend::Backend& backend, void* dst, size_t bytes, Make make) {
  std::vector<uint8_t> chunk(std::min(bytes, kChunkBytes));
  for (size_t at = 0; at < bytes; at += chunk.size()) {
    const size_t n = std::min(chunk.size(), bytes - at);
    make(chunk.data(), at, n);
    backend.copy_to_device(static_cast<char*>(dst) + at, chunk.data(), n);
  }
}

}  // namespace

FrozenWeights::FrozenWeights(backend::Backend& backend, const ParameterLayout& layout,
                             const WeightSource& source)
    : backend_(backend), layout_(layout), source_(source) {
  if (!source.checkpoint.empty()) files_.emplace(SafetensorsSet::open(source.checkpoint));
  const std::vector<ParameterTensor>& all = layout.tensors();
  std::vector<Plan> plans;
  for (const ParameterTensor& t : all) plans.push_back(plan_tensor(t));
  tensors_.resize(all.size());
  // Tensors placed right after their predecessor form one group, placed together.
  for (size_t i = 0; i < all.size();) {
    std::vector<size_t> group{i++};
    while (i < all.size() && all[i].follows_previous) group.push_back(i++);
    place_group(group, plans);
  }
}

const TensorInfo* FrozenWeights::stored(const ParameterTensor& t) const {
  const TensorInfo* info = files_->find(t.name);
  return info ? info : files_->find(kGpt2Prefix + t.name);
}

FrozenWeights::Plan FrozenWeights::plan_tensor(const ParameterTensor& t) const {
  if (is_vector(t)) return {DType::kF32, false};
  if (!files_) {
    const bool experts = t.shape.size() == 3 && t.shape.back() % 32 == 0;
    return {experts ? source_.random_expert_dtype : DType::kBF16, false};
  }
  const bool host = backend_.device_memory_is_host_memory();
  if (files_->find(t.name + "_blocks")) return {DType::kMXFP4, host};
  const TensorInfo* info = stored(t);
  if (!info) fail("{}: missing tensor '{}'", files_->source(), t.name);
  if (t.hf_transposed || (info->dtype != DType::kBF16 && info->dtype != DType::kF32)) {
    return {DType::kF32, false};
  }
  return {info->dtype, host};
}

void FrozenWeights::place_group(const std::vector<size_t>& group, const std::vector<Plan>& plans) {
  const std::vector<ParameterTensor>& all = layout_.tensors();
  DType dtype = plans[group.front()].dtype;
  for (size_t i : group) {
    if (plans[i].dtype != dtype) dtype = DType::kF32;  // a packed group shares one dtype
  }
  if (group.size() == 1 && plans[group.front()].mapped) {
    const ParameterTensor& t = all[group.front()];
    const TensorInfo* info = stored(t);
    if (dtype == DType::kMXFP4) {
      // read_hf_tensor checks the blocks' and scales' shapes and dtypes; its decoded copy is not kept.
      if (!files_->find(t.name + "_scales")) read_hf_tensor(t, *files_);
      const TensorInfo* blocks = files_->find(t.name + "_blocks");
      std::vector<int64_t> want = t.shape;
      want.back() /= 32;
      want.push_back(16);
      if (blocks->shape != want || blocks->dtype != DType::kU8 ||
          files_->find(t.name + "_scales")->numel() * 16 != blocks->numel()) {
        read_hf_tensor(t, *files_);  // throws the message naming what is wrong
      }
      tensors_[group.front()] = dense_tensor(files_->raw(t.name + "_blocks").data(),
                                             files_->raw(t.name + "_scales").data(), dtype, t.shape);
    } else {
      require(info->shape == t.shape, "{}: tensor '{}' has shape {}, but the model config implies {}",
              files_->source(), info->name, shape_string(info->shape), shape_string(t.shape));
      tensors_[group.front()] = dense_tensor(files_->raw(info->name).data(), nullptr, dtype, t.shape);
    }
    bytes_ += static_cast<int64_t>(tensor_bytes(dtype, static_cast<int64_t>(t.numel)));
    return;
  }
  size_t total = 0;
  for (size_t i : group) total += tensor_bytes(dtype, static_cast<int64_t>(all[i].numel));
  buffers_.emplace_back(backend_, (total + 3) / 4);
  char* base = reinterpret_cast<char*>(buffers_.back().get());
  size_t at = 0;
  for (size_t i : group) {
    const ParameterTensor& t = all[i];
    const int64_t n = static_cast<int64_t>(t.numel);
    const uint8_t* scales = dtype == DType::kMXFP4
                                ? reinterpret_cast<uint8_t*>(base + at + storage_bytes(dtype, n))
                                : nullptr;
    tensors_[i] = dense_tensor(base + at, scales, dtype, t.shape);
    fill_copy(t, tensors_[i], source_.seed + 0x9E3779B97F4A7C15ull * (i + 1));
    // Packed neighbours must be exactly adjacent, as in the layout (no padding between them).
    at += group.size() > 1 ? storage_bytes(dtype, n) : tensor_bytes(dtype, n);
  }
  bytes_ += static_cast<int64_t>(total);
  copied_bytes_ += static_cast<int64_t>(total);
}

void FrozenWeights::fill_copy(const ParameterTensor& t, const Tensor& dst, uint64_t seed) const {
  const int64_t n = static_cast<int64_t>(t.numel);
  if (files_) {
    const TensorInfo* info = stored(t);
    if (dst.dtype == DType::kF32) {
      // Decoded, widened and transposed as the layout needs; shapes checked.
      const std::vector<float> values = read_hf_tensor(t, *files_);
      backend_.copy_to_device(dst.data, values.data(), values.size() * sizeof(float));
    } else if (dst.dtype == DType::kBF16) {
      require(info->shape == t.shape, "{}: tensor '{}' has shape {}, but the model config implies {}",
              files_->source(), info->name, shape_string(info->shape), shape_string(t.shape));
      const std::span<const uint8_t> raw = files_->raw(info->name);
      backend_.copy_to_device(dst.data, raw.data(), raw.size());
    } else {
      read_hf_tensor(t, *files_);  // checks the blocks and scales
      const std::span<const uint8_t> codes = files_->raw(t.name + "_blocks");
      const std::span<const uint8_t> scales = files_->raw(t.name + "_scales");
      backend_.copy_to_device(dst.data, codes.data(), codes.size());
      backend_.copy_to_device(const_cast<uint8_t*>(dst.scales), scales.data(), scales.size());
    }
    return;
  }
  // A timing-only simulator computes nothing from the weights, and its memory starts zeroed:
  // leaving them untouched lets gpt-oss-120b's shard be timed without filling its bytes.
  if (const backend::SimulatorBackend* sim = backend_.simulator(); sim && sim->timing_only()) return;
  Rng rng(seed);
  if (dst.dtype == DType::kF32) {
    std::vector<float> values(static_cast<size_t>(n), t.init == Init::kOne ? 1.0f : 0.0f);
    if (t.init == Init::kNormal) rng.fill_normal(values.data(), values.size(), t.init_std);
    backend_.copy_to_device(dst.data, values.data(), values.size() * sizeof(float));
  } else if (dst.dtype == DType::kBF16) {
    std::vector<float> normal;
    copy_in_chunks(backend_, dst.data, storage_bytes(DType::kBF16, n), [&](uint8_t* out, size_t, size_t bytes) {
      normal.resize(bytes / 2);
      rng.fill_normal(normal.data(), normal.size(), t.init_std);
      uint16_t* bits = reinterpret_cast<uint16_t*>(out);
      for (size_t k = 0; k < normal.size(); ++k) bits[k] = float_to_bf16(normal[k]);
    });
  } else {
    // Uniform codes under one scale whose largest value (6 x 2^(s - 127)) is about three standard
    // deviations of the layout's initialisation.
    const int exponent = static_cast<int>(std::floor(std::log2(3.0 * t.init_std / 6.0)));
    const uint8_t scale = static_cast<uint8_t>(std::clamp(127 + exponent, 1, 254));
    copy_in_chunks(backend_, dst.data, storage_bytes(DType::kMXFP4, n), [&](uint8_t* out, size_t, size_t bytes) {
      for (size_t k = 0; k + 8 <= bytes; k += 8) {
        const uint64_t r = rng.next_u64();
        std::memcpy(out + k, &r, 8);
      }
      for (size_t k = bytes - bytes % 8; k < bytes; ++k) out[k] = static_cast<uint8_t>(rng.next_u64());
    });
    copy_in_chunks(backend_, const_cast<uint8_t*>(dst.scales), static_cast<size_t>(n / 32),
                   [&](uint8_t* out, size_t, size_t bytes) { std::memset(out, scale, bytes); });
  }
}

}  // namespace switchyard::model
