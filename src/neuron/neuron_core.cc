// NeuronCore: the facade. Each instruction passes the rules, executes (functional mode) and is
// scheduled, in that order.
#include "neuron/neuron_core.h"

#include <algorithm>

#include "core/error.h"

namespace switchyard::neuron {

NeuronCore::NeuronCore(CoreConfig config, ExecutionMode mode)
    : config_(std::move(config)),
      mode_(mode),
      memories_(config_, mode == ExecutionMode::kFunctional),
      rules_(config_, memories_, context_),
      executor_(memories_, rules_),
      scheduler_(config_, memories_, context_, trace_) {}

// ---- Memory.

View NeuronCore::allocate(Memory memory, int64_t partitions, const std::vector<int64_t>& free_shape,
                          DType dtype, const std::string& name, uint8_t* external) {
  View view = memories_.allocate(memory, partitions, free_shape, dtype, name, external);
  scheduler_.on_allocate(view.allocation());
  return view;
}

View NeuronCore::hbm_alloc(const std::vector<int64_t>& shape, DType dtype,
                           const std::string& name) {
  return hbm_tensor(shape, dtype, name, nullptr);
}

View NeuronCore::hbm_attach(void* data, const std::vector<int64_t>& shape, DType dtype,
                            const std::string& name) {
  require(data != nullptr, "HBM tensor '{}': attach needs memory, got a null pointer", name);
  return hbm_tensor(shape, dtype, name, static_cast<uint8_t*>(data));
}

View NeuronCore::hbm_tensor(const std::vector<int64_t>& shape, DType dtype, const std::string& name,
                            uint8_t* external) {
  require(!shape.empty() && shape.size() <= kMaxFreeDims + 1,
          "HBM tensor '{}': needs 1 to {} dimensions, got {}", name, kMaxFreeDims + 1,
          shape.size());
  require(shape[0] >= 1, "HBM tensor '{}': every dimension must be >= 1", name);
  if (shape.size() == 1) return allocate(Memory::kHbm, 1, shape, dtype, name, external);
  return allocate(Memory::kHbm, shape[0], std::vector<int64_t>(shape.begin() + 1, shape.end()),
                  dtype, name, external);
}

View NeuronCore::sbuf_alloc(int64_t partitions, const std::vector<int64_t>& free_shape, DType dtype,
                            const std::string& name) {
  return allocate(Memory::kSbuf, partitions, free_shape, dtype, name);
}

View NeuronCore::psum_alloc(int64_t partitions, const std::vector<int64_t>& free_shape, DType dtype,
                            const std::string& name) {
  return allocate(Memory::kPsum, partitions, free_shape, dtype, name);
}

void NeuronCore::release(const View& view) {
  rules_.check_release(view);
  scheduler_.on_release(view.allocation());
  memories_.release(view.allocation());
}

// ---- Host access.

std::vector<float> NeuronCore::read(const View& view) const {
  std::vector<float> out(static_cast<size_t>(view.elements()));
  read(view, out);
  return out;
}

void NeuronCore::read(const View& view, std::span<float> out) const {
  rules_.check_view("host read", "view", view, false);
  require(static_cast<int64_t>(out.size()) == view.elements(),
          "host read of '{}' {}: room for {} values, the view holds {}", allocation_name(view),
          view.describe(), out.size(), view.elements());
  if (memories_.has_bytes(view)) {
    executor_.load(view, out.data());
  } else {
    std::fill(out.begin(), out.end(), 0.0f);
  }
}

void NeuronCore::write(const View& view, std::span<const float> values) {
  rules_.check_view("host write", "view", view, true);
  require(static_cast<int64_t>(values.size()) == view.elements(),
          "host write to '{}' {}: got {} values, the view holds {}", allocation_name(view),
          view.describe(), values.size(), view.elements());
  if (memories_.has_bytes(view)) executor_.store(view, values.data());
}

// ---- DMA.

void NeuronCore::dma_copy(const View& dst, const View& src, int queue) {
  rules_.dma_copy(dst, src, queue);
  if (executes()) executor_.dma_copy(dst, src);
  scheduler_.dma_copy(dst, src, queue);
}

void NeuronCore::dma_gather(const View& dst, const View& table, const View& indices, int queue) {
  rules_.dma_gather(dst, table, indices, queue);
  if (executes()) executor_.dma_gather(dst, table, indices);
  scheduler_.dma_gather(dst, table, indices, queue);
}

void NeuronCore::dma_scatter(const View& table, const View& src, const View& indices,
                             bool accumulate, int queue, NegativeIndex negative) {
  const char* op = accumulate ? "dma_scatter_add" : "dma_scatter";
  rules_.dma_scatter(op, table, src, indices, queue);
  // Without values every row counts as written: which indices are negative is data.
  const int64_t rows =
      executes() ? executor_.dma_scatter(op, table, src, indices, accumulate, negative)
                 : indices.partitions();
  scheduler_.dma_scatter(op, table, src, indices, accumulate, queue, rows);
}

// ---- TensorE.

void NeuronCore::matmul(const View& out, const View& stationary, const View& moving, bool start,
                        bool stop) {
  rules_.matmul(out, stationary, moving, start, stop);
  if (executes()) executor_.matmul(out, stationary, moving, start);
  scheduler_.matmul(out, stationary, moving, start);
}

void NeuronCore::transpose(const View& out, const View& in) {
  rules_.transpose(out, in);
  if (executes()) executor_.transpose(out, in);
  scheduler_.transpose(out, in);
}

// ---- ScalarE.

void NeuronCore::activation(const View& out, Activation function, const View& in, Operand scale,
                            Operand bias) {
  const char* op = "activation";
  rules_.activation(op, out, in, nullptr, scale, bias);
  if (executes()) executor_.activation(out, function, in, nullptr, scale, bias);
  scheduler_.activation(op, out, in, nullptr, scale, bias);
}

void NeuronCore::activation_reduce(const View& out, Activation function, const View& in,
                                   const View& reduce_out, Operand scale, Operand bias) {
  const char* op = "activation_reduce";
  rules_.activation(op, out, in, &reduce_out, scale, bias);
  if (executes()) executor_.activation(out, function, in, &reduce_out, scale, bias);
  scheduler_.activation(op, out, in, &reduce_out, scale, bias);
}

// ---- VectorE and GpSimd.

void NeuronCore::tensor_tensor(const View& out, const View& a, AluOp op, const View& b,
                               Engine engine) {
  rules_.tensor_tensor(out, a, op, b, engine);
  if (executes()) executor_.tensor_tensor(out, a, op, b);
  scheduler_.tensor_tensor(out, a, op, b, engine);
}

void NeuronCore::tensor_scalar(const View& out, const View& in, AluOp op0, Operand s0, AluOp op1,
                               Operand s1, Engine engine) {
  rules_.tensor_scalar(out, in, s0, s1, engine);
  if (executes()) executor_.tensor_scalar(out, in, op0, s0, op1, s1);
  scheduler_.tensor_scalar(out, in, s0, s1, engine);
}

void NeuronCore::tensor_reduce(const View& out, AluOp op, const View& in, int axes,
                               Engine engine) {
  rules_.tensor_reduce(out, op, in, axes, engine);
  if (executes()) executor_.tensor_reduce(out, op, in, axes);
  scheduler_.tensor_reduce(out, op, in, engine);
}

void NeuronCore::tensor_copy(const View& out, const View& in, Engine engine) {
  rules_.tensor_copy(out, in, engine);
  if (executes()) executor_.tensor_copy(out, in);
  scheduler_.tensor_copy(out, in, engine);
}

void NeuronCore::reciprocal(const View& out, const View& in, Engine engine) {
  rules_.reciprocal(out, in, engine);
  if (executes()) executor_.reciprocal(out, in);
  scheduler_.reciprocal(out, in, engine);
}

void NeuronCore::memset(const View& out, float value, Engine engine) {
  rules_.memset(out, engine);
  if (executes()) executor_.memset(out, value);
  scheduler_.memset(out, engine);
}

void NeuronCore::select(const View& out, const View& predicate, const View& on_true,
                        const View& on_false, Engine engine) {
  rules_.select(out, predicate, on_true, on_false, engine);
  if (executes()) executor_.select(out, predicate, on_true, on_false);
  scheduler_.select(out, predicate, on_true, on_false, engine);
}

// ---- MXFP4 decode.

void NeuronCore::mxfp4_decode(const View& out, const View& codes, const View& scales,
                              Engine engine) {
  rules_.mxfp4_decode(out, codes, scales, engine);
  if (executes()) executor_.mxfp4_decode(out, codes, scales);
  scheduler_.mxfp4_decode(out, codes, scales, engine);
}

// ---- GpSimd.

void NeuronCore::iota(const View& out, float base, float partition_step,
                      const std::vector<float>& free_steps) {
  rules_.iota(out, free_steps);
  if (executes()) executor_.iota(out, base, partition_step, free_steps);
  scheduler_.iota(out);
}

void NeuronCore::affine_select(const View& out, const View& in, float base, float partition_step,
                               const std::vector<float>& free_steps, AluOp cmp, float fill) {
  rules_.affine_select(out, in, free_steps, cmp);
  if (executes()) executor_.affine_select(out, in, base, partition_step, free_steps, cmp, fill);
  scheduler_.affine_select(out, in);
}

}  // namespace switchyard::neuron
