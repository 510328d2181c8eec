// CpuBf16Backend's elementwise and LayerNorm ops over bf16 activations. Each thread widens a chunk
// (or a row) into fp32 buffers of its own, small enough to stay in L1, runs the fp32 kernels'
// per-value and per-row functions (cpu_kernels.h) on it and narrows the result: the math is the
// fp32 reference's, and the activations make one pass through memory instead of the host
// fallback's three (widen whole, compute, narrow whole) through staging buffers as large as the
// tensors. Nothing inside a thread's loop opens an OpenMP region of its own: a nested region,
// even an inactive one, costs microseconds, thousands of times per op.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/cpu/bf16_rows.h"
#include "backend/cpu/cpu_bf16_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/operand_checks.h"

namespace switchyard::backend::cpu {
namespace {

// Floats a thread widens per stream at a time: 8 KiB on its stack, so that three streams stay in L1.
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

// fn(begin, count) over the chunks of n values, in parallel.
template <typename Fn>
void for_each_chunk(size_t n, Fn&& fn) {
  const size_t chunks = (n + kChunk - 1) / kChunk;
  SWITCHYARD_OMP_FOR(schedule(static) if (n > kParallelThreshold))
  for (size_t c = 0; c < chunks; ++c) fn(c * kChunk, std::min(kChunk, n - c * kChunk));
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
        const float dc = widen_bf16_bits(d[c]);
        dweight[c] += (widen_bf16_bits(x[c]) - mean[n]) * rstd[n] * dc;
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
  const uint16_t* inp = bf16_in(op.inp, "gelu", "inp");
  uint16_t* out = bf16_out(op.out, "gelu", "out");
  for_each_chunk(static_cast<size_t>(op.inp.numel()), [&](size_t begin, size_t n) {
    float x[kChunk];
    widen_bf16_row(inp + begin, x, n);
    SWITCHYARD_OMP(omp simd)
    for (size_t i = 0; i < n; ++i) x[i] = gelu(x[i]);
    narrow_bf16_row(x, out + begin, n);
  });
}

void CpuBf16Backend::run(const ops::GeluBackward& op) {
  if (!supports(op) || !dense_operands(op)) return run_on_host(op);
  const char* name = "gelu_backward";
  require_numel(op.dinp, op.inp.numel(), name, "dinp");
  require_numel(op.dout, op.inp.numel(), name, "dout");
  uint16_t* dinp = bf16_out(op.dinp, name, "dinp");
  const uint16_t* inp = bf16_in(op.inp, name, "inp");
  const uint16_t* dout = bf16_in(op.dout, name, "dout");
  for_each_chunk(static_cast<size_t>(op.inp.numel()), [&](size_t begin, size_t n) {
    float dx[kChunk], x[kChunk], d[kChunk];
    widen_bf16_row(dinp + begin, dx, n);
    widen_bf16_row(inp + begin, x, n);
    widen_bf16_row(dout + begin, d, n);
    SWITCHYARD_OMP(omp simd)
    for (size_t i = 0; i < n; ++i) dx[i] += gelu_derivative(x[i]) * d[i];
    narrow_bf16_row(dx, dinp + begin, n);
  });
}

void CpuBf16Backend::run(const ops::Add& op) {
  if (!supports(op) || !dense_operands(op)) return run_on_host(op);
  require_numel(op.b, op.a.numel(), "add", "b");
  require_numel(op.out, op.a.numel(), "add", "out");
  const uint16_t* a = bf16_in(op.a, "add", "a");
  const uint16_t* b = bf16_in(op.b, "add", "b");
  uint16_t* out = bf16_out(op.out, "add", "out");  // may be a or b
  for_each_chunk(static_cast<size_t>(op.a.numel()), [&](size_t begin, size_t n) {
    float x[kChunk], y[kChunk];
    widen_bf16_row(a + begin, x, n);
    widen_bf16_row(b + begin, y, n);
    SWITCHYARD_OMP(omp simd)
    for (size_t i = 0; i < n; ++i) x[i] += y[i];
    narrow_bf16_row(x, out + begin, n);
  });
}

void CpuBf16Backend::run(const ops::Accumulate& op) {
  require_numel(op.dst, op.src.numel(), "accumulate", "dst");
  run(ops::Add{.out = op.dst, .a = op.dst, .b = op.src});
}

void CpuBf16Backend::run(const ops::LayerNorm& op) {
  if (!supports(op) || !dense_operands(op)) return run_on_host(op);
  const char* name = "layernorm";
  const auto [N, C] = check_layernorm(op);
  const uint16_t* inp = bf16_in(op.inp, name, "inp");
  uint16_t* out = bf16_out(op.out, name, "out");
  float* mean = f32(op.mean, name, "mean");
  float* rstd = f32(op.rstd, name, "rstd");
  const float* weight = f32(op.weight, name, "weight");
  const float* bias = f32(op.bias, name, "bias");
  const size_t width = static_cast<size_t>(C);
  for_each_row(N, C, 1, [&](int n, float* x) {
    widen_bf16_row(inp + n * width, x, width);
    layernorm_row(x, mean[n], rstd[n], x, weight, bias, C, op.epsilon);
    narrow_bf16_row(x, out + n * width, width);
  });
}

// dinp a row at a time over widened rows, then dweight and dbias over the whole batch, in the
// reference's order.
void CpuBf16Backend::run(const ops::LayerNormBackward& op) {
  if (!supports(op) || !dense_operands(op)) return run_on_host(op);
  const char* name = "layernorm_backward";
  const auto [N, C] = check_layernorm_backward(op);
  uint16_t* dinp = bf16_out(op.dinp, name, "dinp");
  const uint16_t* dout = bf16_in(op.dout, name, "dout");
  const uint16_t* inp = bf16_in(op.inp, name, "inp");
  const float* weight = f32(op.weight, name, "weight");
  const float* mean = f32(op.mean, name, "mean");
  const float* rstd = f32(op.rstd, name, "rstd");
  const size_t width = static_cast<size_t>(C);
  for_each_row(N, C, 3, [&](int n, float* b) {
    float *dx = b, *d = b + width, *x = b + 2 * width;
    widen_bf16_row(dinp + n * width, dx, width);
    widen_bf16_row(dout + n * width, d, width);
    widen_bf16_row(inp + n * width, x, width);
    layernorm_row_backward(dx, d, x, weight, mean[n], rstd[n], C);
    narrow_bf16_row(dx, dinp + n * width, width);
  });
  layernorm_parameter_gradients(f32(op.dweight, name, "dweight"), f32(op.dbias, name, "dbias"), dout,
                                inp, mean, rstd, N, C);
}

}  // namespace switchyard::backend::cpu
