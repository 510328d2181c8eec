#include "backend/cuda/elementwise_kernels.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_helpers.cuh"

namespace switchyard::backend::cuda {
namespace {

using device::kPack;

constexpr unsigned kThreads = 256;

// ---- one kernel for every flat elementwise operation ----

// Each operation is a functor out = op(out_old, a, b) over fp32 values; kInputs says which of a and
// b it reads, kReadsOut whether it reads out's old value.

// GELU as x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3), which equals the tanh form and, as in
// the CPU kernel, gives 1 - s without cancellation. The exponent is capped (as the CPU's exp is) so
// that e * s stays finite for very negative x; a NaN x still gives NaN through the factor x.
__device__ __forceinline__ void gelu_sigmoid(float x, float& s, float& one_minus_s) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  const float u = kSqrt2OverPi * (x + 0.044715f * x * x * x);
  const float e = expf(fminf(-2.0f * u, 88.0f));
  s = 1.0f / (1.0f + e);
  one_minus_s = e * s;
}

struct GeluForward {
  static constexpr int kInputs = 1;
  static constexpr bool kReadsOut = false;
  __device__ float operator()(float, float x, float) const {
    float s, one_minus_s;
    gelu_sigmoid(x, s, one_minus_s);
    return x * s;
  }
};

// d/dx [x s] = s + x s (1 - s) 2 u'(x), u'(x) = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
struct GeluBackward {
  static constexpr int kInputs = 2;  // a = inp, b = dout
  static constexpr bool kReadsOut = true;
  __device__ float operator()(float dinp, float x, float dout) const {
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    float s, one_minus_s;
    gelu_sigmoid(x, s, one_minus_s);
    const float du = kSqrt2OverPi * (1.0f + float(3 * 0.044715) * x * x);
    return dinp + (s + 2.0f * x * s * one_minus_s * du) * dout;
  }
};

struct Add {
  static constexpr int kInputs = 2;
  static constexpr bool kReadsOut = false;
  __device__ float operator()(float, float a, float b) const { return a + b; }
};

struct Accumulate {
  static constexpr int kInputs = 1;
  static constexpr bool kReadsOut = true;
  __device__ float operator()(float dst, float src, float) const { return dst + src; }
};

struct Convert {
  static constexpr int kInputs = 1;
  static constexpr bool kReadsOut = false;
  __device__ float operator()(float, float a, float) const { return a; }
};

// out[i] = op(out[i], a[i], b[i]) for i < n. With `vector`, every pointer is 16-byte aligned and
// whole packs move in 16-byte accesses; the last n % kPack elements, and everything otherwise, go
// element by element. Each element is read and written by one thread, so out may alias a or b.
template <typename Op, typename Out, typename In>
__global__ void __launch_bounds__(kThreads)
    map_kernel(Op op, Out* out, const In* a, const In* b, size_t n, bool vector) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  const size_t first = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  size_t scalar_begin = 0;
  if (vector) {
    const size_t packs = n / kPack;
    for (size_t p = first; p < packs; p += stride) {
      const size_t i = p * kPack;
      float va[kPack] = {}, vb[kPack] = {}, vo[kPack] = {};
      if constexpr (Op::kInputs >= 1) device::load_pack(a + i, va);
      if constexpr (Op::kInputs >= 2) device::load_pack(b + i, vb);
      if constexpr (Op::kReadsOut) device::load_pack(out + i, vo);
#pragma unroll
      for (int k = 0; k < kPack; ++k) vo[k] = op(vo[k], va[k], vb[k]);
      device::store_pack(out + i, vo);
    }
    scalar_begin = packs * kPack;
  }
  for (size_t i = scalar_begin + first; i < n; i += stride) {
    float va = 0.0f, vb = 0.0f, vo = 0.0f;
    if constexpr (Op::kInputs >= 1) va = device::to_float(a[i]);
    if constexpr (Op::kInputs >= 2) vb = device::to_float(b[i]);
    if constexpr (Op::kReadsOut) vo = device::to_float(out[i]);
    out[i] = device::from_float<Out>(op(vo, va, vb));
  }
}

template <typename Op, typename Out, typename In>
void launch_map(const char* name, Op op, Out* out, const In* a, const In* b, size_t n,
                cudaStream_t stream) {
  if (n == 0) return;
  // Unused inputs are null, which counts as aligned.
  const bool vector = device::aligned16(out) && device::aligned16(a) && device::aligned16(b);
  const size_t units = vector ? (n + kPack - 1) / kPack : n;
  map_kernel<<<device::flat_blocks(units, kThreads), kThreads, 0, stream>>>(op, out, a, b, n,
                                                                            vector);
  check_launch(name);
}

// ---- bias gradient ----

// Phase 1 of bias_backward: block (x, y) sums rows of chunk y over a tile of kTileColumns columns.
// Thread (tx, ty) owns columns [tile + 8 tx, +8) and rows chunk_begin + ty, + kRowThreads, ...;
// the kRowThreads sums of a column are then added in ty order.
constexpr int kColumnThreads = 32;
constexpr int kRowThreads = 8;
constexpr int kTileColumns = kColumnThreads * kPack;

template <typename Act>
__global__ void __launch_bounds__(kColumnThreads * kRowThreads)
    bias_partials_kernel(float* partials, const Act* dout, int N, int OC, int rows_per_chunk) {
  __shared__ float sums[kRowThreads][kTileColumns];
  const int tile = blockIdx.x * kTileColumns;
  const int column = tile + threadIdx.x * kPack;
  const int chunk = blockIdx.y;
  const int row_begin = chunk * rows_per_chunk;
  const int row_end = min(N, row_begin + rows_per_chunk);
  float acc[kPack] = {};
  if (column < OC) {
#pragma unroll 4
    for (int r = row_begin + threadIdx.y; r < row_end; r += kRowThreads) {
      const Act* row = dout + static_cast<size_t>(r) * OC;
      float v[kPack];
      device::load_pack_checked(row, column, OC, device::aligned16_device(row), v);
#pragma unroll
      for (int k = 0; k < kPack; ++k) acc[k] += v[k];
    }
  }
#pragma unroll
  for (int k = 0; k < kPack; ++k) sums[threadIdx.y][threadIdx.x * kPack + k] = acc[k];
  __syncthreads();
  const int lin = threadIdx.y * kColumnThreads + threadIdx.x;
  for (int j = lin; j < kTileColumns; j += kColumnThreads * kRowThreads) {
    if (tile + j >= OC) continue;
    float total = 0.0f;
#pragma unroll
    for (int y = 0; y < kRowThreads; ++y) total += sums[y][j];
    partials[static_cast<size_t>(chunk) * OC + tile + j] = total;
  }
}

// Phase 2: dbias[c] += the sum over chunks of partials[chunk, c]; thread (tx, ty) adds chunks
// ty, ty + kChunkThreads, ... in order, then the kChunkThreads sums are added in ty order.
constexpr int kChunkThreads = 16;

__global__ void __launch_bounds__(kColumnThreads * kChunkThreads)
    bias_sum_partials_kernel(float* dbias, const float* partials, int chunks, int OC) {
  __shared__ float sums[kChunkThreads][kColumnThreads];
  const int column = blockIdx.x * kColumnThreads + threadIdx.x;
  float acc = 0.0f;
  if (column < OC) {
#pragma unroll 4
    for (int p = threadIdx.y; p < chunks; p += kChunkThreads) {
      acc += partials[static_cast<size_t>(p) * OC + column];
    }
  }
  sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && column < OC) {
    float total = 0.0f;
#pragma unroll
    for (int y = 0; y < kChunkThreads; ++y) total += sums[y][threadIdx.x];
    dbias[column] += total;
  }
}

}  // namespace

template <typename Act>
void gelu_forward(Act* out, const Act* inp, size_t N, cudaStream_t stream) {
  launch_map<GeluForward, Act, Act>("gelu_forward", {}, out, inp, nullptr, N, stream);
}

template <typename Act>
void gelu_backward(Act* dinp, const Act* inp, const Act* dout, size_t N, cudaStream_t stream) {
  launch_map<GeluBackward, Act, Act>("gelu_backward", {}, dinp, inp, dout, N, stream);
}

template <typename Act>
void residual_forward(Act* out, const Act* a, const Act* b, size_t N, cudaStream_t stream) {
  launch_map<Add, Act, Act>("residual_forward", {}, out, a, b, N, stream);
}

template <typename Act>
void accumulate(Act* dst, const Act* src, size_t N, cudaStream_t stream) {
  launch_map<Accumulate, Act, Act>("accumulate", {}, dst, src, nullptr, N, stream);
}

size_t bias_backward_workspace_bytes(int N, int OC) {
  int rows_per_chunk = 0;
  const int chunks = device::reduction_chunks(N, &rows_per_chunk);
  return OC <= 0 ? 0 : static_cast<size_t>(chunks) * static_cast<size_t>(OC) * sizeof(float);
}

template <typename Act>
void bias_backward(float* dbias, const Act* dout, int N, int OC, void* workspace,
                   cudaStream_t stream) {
  if (N <= 0 || OC <= 0) return;
  int rows_per_chunk = 0;
  const int chunks = device::reduction_chunks(N, &rows_per_chunk);
  float* partials = static_cast<float*>(workspace);
  const dim3 grid1((OC + kTileColumns - 1) / kTileColumns, chunks);
  bias_partials_kernel<Act><<<grid1, dim3(kColumnThreads, kRowThreads), 0, stream>>>(
      partials, dout, N, OC, rows_per_chunk);
  check_launch("bias_backward (partial sums)");
  const unsigned grid2 = (OC + kColumnThreads - 1) / kColumnThreads;
  bias_sum_partials_kernel<<<grid2, dim3(kColumnThreads, kChunkThreads), 0, stream>>>(
      dbias, partials, chunks, OC);
  check_launch("bias_backward (sum of partials)");
}

void convert_to_bf16(bf16* dst, const float* src, size_t N, cudaStream_t stream) {
  launch_map<Convert, bf16, float>("convert_to_bf16", {}, dst, src, nullptr, N, stream);
}

void convert_to_f32(float* dst, const bf16* src, size_t N, cudaStream_t stream) {
  launch_map<Convert, float, bf16>("convert_to_f32", {}, dst, src, nullptr, N, stream);
}

#define SWITCHYARD_ELEMENTWISE_INSTANCES(Act)                                                    \
  template void gelu_forward<Act>(Act*, const Act*, size_t, cudaStream_t);                       \
  template void gelu_backward<Act>(Act*, const Act*, const Act*, size_t, cudaStream_t);          \
  template void residual_forward<Act>(Act*, const Act*, const Act*, size_t, cudaStream_t);       \
  template void accumulate<Act>(Act*, const Act*, size_t, cudaStream_t);                         \
  template void bias_backward<Act>(float*, const Act*, int, int, void*, cudaStream_t);

SWITCHYARD_ELEMENTWISE_INSTANCES(float)
SWITCHYARD_ELEMENTWISE_INSTANCES(bf16)

#undef SWITCHYARD_ELEMENTWISE_INSTANCES

}  // namespace switchyard::backend::cuda
