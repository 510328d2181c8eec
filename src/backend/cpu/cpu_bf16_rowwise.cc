// CpuBf16Backend's elementwise and LayerNorm ops over bf16 activations. Each thread widens a chunk
// (or a few rows) into fp32 buffers of its own, small enough to stay in L1, runs CpuBackend's fp32
// kernel on it and narrows the result: the math is the fp32 reference's, and the activations make
// one pass through memory instead of the host fallback's three (widen whole, compute, narrow whole)
// through staging buffers as large as the tensors.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/cpu/cpu_bf16_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/operand_checks.h"
#include "backend/cpu/weight_decode.h"

namespace switchyard::backend::cpu {
namespace {

// Floats a thread widens per stream at a time: 8 KiB, so that three streams stay in L1.
constexpr size_t kChunk = 2048;

// Strided views (none of the model's ops passes one here) take the host fallback, which keeps
// strides.
template <typename Op>
bool dense_operands(const Op& op) {
  bool dense = true;
  op.for_each_tensor([&](const Tensor& t, ops::Access) { dense = dense && (t.empty() || t.is_contiguous()); });
  return dense;
}

bool all_bf16(std::span<const DType> dtypes) {
  return std::all_of(dtypes.begin(), dtypes.end(), [](DType d) { return d == DType::kBF16; });
}

uint16_t* bf16_out(const Tensor& t, const char* op, const char* what) {
  return dense<uint16_t>(t, DType::kBF16, op, what);
}
const uint16_t* bf16_in(const Tensor& t, const char* op, const char* what) {
  return dense<const uint16_t>(t, DType::kBF16, op, what);
}

// fn(begin, count, buffers) over blocks of `count` items of `width` values (rows, or chunks of a
// flat tensor with width 1), in parallel; buffers holds `streams` fp32 blocks of the thread's own.
template <typename Fn>
void for_each_block(size_t items, size_t width, int streams, Fn&& fn) {
  const size_t per_block = std::max<size_t>(1, kChunk / width);
  const size_t blocks = (items + per_block - 1) / per_block;
  SWITCHYARD_OMP(omp parallel if (items * width > kParallelThreshold))
  {
    std::vector<float> buffer(static_cast<size_t>(streams) * per_block * width);
    SWITCHYARD_OMP(omp for schedule(static))
    for (size_t b = 0; b < blocks; ++b) {
      const size_t begin = b * per_block;
      fn(begin, std::min(per_block, items - begin), buffer.data(), per_block * width);
    }
  }
}

// out = f(in...) elementwise over n values: each operand's chunk widened into its stream.
template <typename Fn>
void elementwise(size_t n, std::initializer_list<const uint16_t*> inputs, uint16_t* out, Fn&& fn) {
  const int streams = static_cast<int>(inputs.size());
  for_each_block(n, 1, streams, [&](size_t begin, size_t count, float* buf, size_t stride) {
    int s = 0;
    for (const uint16_t* in : inputs) bf16_to_float(in + begin, buf + stride * s++, count);
    fn(buf, stride, count);
    float_to_bf16(buf, out + begin, count);  // the first stream holds the result
  });
}

// dweight += sum_n norm * dout, dbias += sum_n dout over bf16 rows, summed as the fp32 reference
// does (layernorm_backward): threads take blocks of channels and run down the rows in order, so
// the sums do not depend on the thread count.
void layernorm_parameter_gradients(float* dweight, float* dbias, const uint16_t* dout,
                                   const uint16_t* inp, const float* mean, const float* rstd, int N,
                                   int C) {
  constexpr int kBlock = 64;
  const int blocks = (C + kBlock - 1) / kBlock;
  SWITCHYARD_OMP_FOR(schedule(static) if (static_cast<size_t>(N) * C > kParallelThreshold))
  for (int blk = 0; blk < blocks; ++blk) {
    const int c0 = blk * kBlock, c1 = std::min(C, c0 + kBlock);
    for (int n = 0; n < N; ++n) {
      const uint16_t* x = inp + static_cast<size_t>(n) * C;
      const uint16_t* d = dout + static_cast<size_t>(n) * C;
      SWITCHYARD_OMP(omp simd)
      for (int c = c0; c < c1; ++c) {
        const float dc = weight_decode::widen_bf16(d[c]);
        dweight[c] += (weight_decode::widen_bf16(x[c]) - mean[n]) * rstd[n] * dc;
        dbias[c] += dc;
      }
    }
  }
}

}  // namespace

bool CpuBf16Backend::native_rowwise(OpKind kind, std::span<const DType> dtypes) const {
  switch (kind) {
    case OpKind::kGelu:            // out, inp
    case OpKind::kGeluBackward:    // dinp, inp, dout
    case OpKind::kAdd:             // out, a, b
    case OpKind::kAccumulate:      // dst, src
      return all_bf16(dtypes);
    case OpKind::kLayerNorm:  // out, mean, rstd, inp, weight, bias
      return dtypes.size() == 6 && dtypes[0] == DType::kBF16 && dtypes[3] == DType::kBF16 &&
             dtypes[1] == DType::kF32 && dtypes[2] == DType::kF32 && dtypes[4] == DType::kF32 &&
             dtypes[5] == DType::kF32;
    case OpKind::kLayerNormBackward:  // dinp, dweight, dbias, dout, inp, weight, mean, rstd
      return dtypes.size() == 8 && dtypes[0] == DType::kBF16 && dtypes[3] == DType::kBF16 &&
             dtypes[4] == DType::kBF16 && dtypes[1] == DType::kF32 && dtypes[2] == DType::kF32 &&
             dtypes[5] == DType::kF32 && dtypes[6] == DType::kF32 && dtypes[7] == DType::kF32;
    default:
      return false;
  }
}

void CpuBf16Backend::run(const ops::Gelu& op) {
  if (!supports(op) || !dense_operands(op)) return run_on_host(op);
  require_numel(op.out, op.inp.numel(), "gelu", "out");
  elementwise(static_cast<size_t>(op.inp.numel()), {bf16_in(op.inp, "gelu", "inp")},
              bf16_out(op.out, "gelu", "out"),
              [](float* x, size_t, size_t n) { gelu_forward(x, x, n); });
}

void CpuBf16Backend::run(const ops::GeluBackward& op) {
  if (!supports(op) || !dense_operands(op)) return run_on_host(op);
  const char* name = "gelu_backward";
  require_numel(op.dinp, op.inp.numel(), name, "dinp");
  require_numel(op.dout, op.inp.numel(), name, "dout");
  uint16_t* dinp = bf16_out(op.dinp, name, "dinp");
  elementwise(static_cast<size_t>(op.inp.numel()),
              {dinp, bf16_in(op.inp, name, "inp"), bf16_in(op.dout, name, "dout")}, dinp,
              [](float* b, size_t s, size_t n) { gelu_backward(b, b + s, b + 2 * s, n); });
}

void CpuBf16Backend::run(const ops::Add& op) {
  if (!supports(op) || !dense_operands(op)) return run_on_host(op);
  require_numel(op.b, op.a.numel(), "add", "b");
  require_numel(op.out, op.a.numel(), "add", "out");
  elementwise(static_cast<size_t>(op.a.numel()), {bf16_in(op.a, "add", "a"), bf16_in(op.b, "add", "b")},
              bf16_out(op.out, "add", "out"),
              [](float* b, size_t s, size_t n) { residual_forward(b, b, b + s, n); });
}

void CpuBf16Backend::run(const ops::Accumulate& op) {
  if (!supports(op) || !dense_operands(op)) return run_on_host(op);
  require_numel(op.dst, op.src.numel(), "accumulate", "dst");
  uint16_t* dst = bf16_out(op.dst, "accumulate", "dst");
  elementwise(static_cast<size_t>(op.src.numel()), {dst, bf16_in(op.src, "accumulate", "src")}, dst,
              [](float* b, size_t s, size_t n) { accumulate(b, b + s, n); });
}

void CpuBf16Backend::run(const ops::LayerNorm& op) {
  if (!supports(op) || !dense_operands(op)) return run_on_host(op);
  const char* name = "layernorm";
  require_matrix(op.inp, -1, -1, name, "inp");
  const int64_t N = op.inp.shape[0], C = op.inp.shape[1];
  require(C > 0, "cpu-bf16 layernorm: rows must have channels, got {}", op.inp.describe());
  require_matrix(op.out, N, C, name, "out");
  require_numel(op.mean, N, name, "mean");
  require_numel(op.rstd, N, name, "rstd");
  require_numel(op.weight, C, name, "weight");
  require_numel(op.bias, C, name, "bias");
  const uint16_t* inp = bf16_in(op.inp, name, "inp");
  uint16_t* out = bf16_out(op.out, name, "out");
  float* mean = f32(op.mean, name, "mean");
  float* rstd = f32(op.rstd, name, "rstd");
  const float* weight = f32(op.weight, name, "weight");
  const float* bias = f32(op.bias, name, "bias");
  const size_t width = static_cast<size_t>(C);
  for_each_block(static_cast<size_t>(N), width, 1, [&](size_t n0, size_t rows, float* x, size_t) {
    bf16_to_float(inp + n0 * width, x, rows * width);
    layernorm_forward(x, mean + n0, rstd + n0, x, weight, bias, static_cast<int>(rows),
                      static_cast<int>(C), op.epsilon);
    float_to_bf16(x, out + n0 * width, rows * width);
  });
}

// dinp a few rows at a time over widened rows (the reference kernel, its parameter gradients sent
// to scratch rows), then dweight and dbias over the whole batch, in the reference's order.
void CpuBf16Backend::run(const ops::LayerNormBackward& op) {
  if (!supports(op) || !dense_operands(op)) return run_on_host(op);
  const char* name = "layernorm_backward";
  require_matrix(op.inp, -1, -1, name, "inp");
  const int64_t N = op.inp.shape[0], C = op.inp.shape[1];
  require(C > 0, "cpu-bf16 layernorm_backward: rows must have channels, got {}", op.inp.describe());
  require_matrix(op.dinp, N, C, name, "dinp");
  require_matrix(op.dout, N, C, name, "dout");
  require_numel(op.mean, N, name, "mean");
  require_numel(op.rstd, N, name, "rstd");
  require_numel(op.weight, C, name, "weight");
  require_numel(op.dweight, C, name, "dweight");
  require_numel(op.dbias, C, name, "dbias");
  uint16_t* dinp = bf16_out(op.dinp, name, "dinp");
  const uint16_t* dout = bf16_in(op.dout, name, "dout");
  const uint16_t* inp = bf16_in(op.inp, name, "inp");
  const float* weight = f32(op.weight, name, "weight");
  const float* mean = f32(op.mean, name, "mean");
  const float* rstd = f32(op.rstd, name, "rstd");
  const size_t width = static_cast<size_t>(C);
  // Three row streams, then the discarded parameter gradients (a row each).
  for_each_block(static_cast<size_t>(N), width, 5, [&](size_t n0, size_t rows, float* b, size_t s) {
    const size_t values = rows * width;
    float *dx = b, *d = b + s, *x = b + 2 * s, *dweight = b + 3 * s, *dbias = b + 4 * s;
    bf16_to_float(dinp + n0 * width, dx, values);
    bf16_to_float(dout + n0 * width, d, values);
    bf16_to_float(inp + n0 * width, x, values);
    std::fill(dweight, dweight + width, 0.0f);
    std::fill(dbias, dbias + width, 0.0f);
    layernorm_backward(dx, dweight, dbias, d, x, weight, mean + n0, rstd + n0,
                       static_cast<int>(rows), static_cast<int>(C));
    float_to_bf16(dx, dinp + n0 * width, values);
  });
  layernorm_parameter_gradients(f32(op.dweight, name, "dweight"), f32(op.dbias, name, "dbias"), dout,
                                inp, mean, rstd, static_cast<int>(N), static_cast<int>(C));
}

}  // namespace switchyard::backend::cpu
