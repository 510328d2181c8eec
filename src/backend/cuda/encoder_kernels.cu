#include "backend/cuda/encoder_kernels.h"

#include <cub/device/device_radix_sort.cuh>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_helpers.cuh"

namespace switchyard::backend::cuda {
namespace {

using device::kPack;
using device::kWarp;

// ---- forward ----

// One warp per (b, t) row, lane l handling packs l, l + 32, ... of the row.
constexpr int kRowsPerBlock = 8;
constexpr int kForwardThreads = kRowsPerBlock * kWarp;

template <typename Act>
__global__ void __launch_bounds__(kForwardThreads)
    encoder_forward_kernel(Act* out, const int32_t* tokens, const float* wte, const float* wpe,
                           int64_t rows, int T, int C) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (row >= rows) return;
  const int lane = threadIdx.x % kWarp;
  const float* e = wte + static_cast<size_t>(tokens[row]) * C;
  const float* p = wpe + static_cast<size_t>(row % T) * C;
  Act* o = out + static_cast<size_t>(row) * C;
  const bool e_vector = device::aligned16_device(e);
  const bool p_vector = device::aligned16_device(p);
  const bool o_vector = device::aligned16_device(o);
  for (int c = lane * kPack; c < C; c += kWarp * kPack) {
    float ve[kPack], vp[kPack];
    device::load_pack_checked(e, c, C, e_vector, ve);
    device::load_pack_checked(p, c, C, p_vector, vp);
#pragma unroll
    for (int k = 0; k < kPack; ++k) ve[k] += vp[k];
    device::store_pack_checked(o, c, C, o_vector, ve);
  }
}

// ---- backward ----

constexpr unsigned kThreads = 256;

// dwpe[T*C] += sum over b of dout[b][T*C], b in order, one pack of 8 elements per thread. `vector`:
// dwpe and dout are 16-byte aligned and T*C % 8 == 0, so every batch's pack is aligned too.
template <typename Act>
__global__ void __launch_bounds__(kThreads)
    encoder_backward_wpe_kernel(float* dwpe, const Act* dout, int B, size_t TC, bool vector) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  const size_t packs = (TC + kPack - 1) / kPack;
  for (size_t u = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < packs;
       u += stride) {
    const size_t i = u * kPack;
    float acc[kPack];
    device::load_pack_checked(dwpe, i, TC, vector, acc);
    for (int b = 0; b < B; ++b) {
      float d[kPack];
      device::load_pack_checked(dout + static_cast<size_t>(b) * TC, i, TC, vector, d);
#pragma unroll
      for (int k = 0; k < kPack; ++k) acc[k] += d[k];
    }
    device::store_pack_checked(dwpe, i, TC, vector, acc);
  }
}

// positions[i] = i: the values that the sort carries along with the tokens.
__global__ void __launch_bounds__(kThreads) iota_kernel(int32_t* positions, int count) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    positions[i] = static_cast<int32_t>(i);
  }
}

// Rows of dout whose loads a thread issues before adding them in order (hides the latency of the
// dependent load of each position).
constexpr int kBatch = 4;
constexpr unsigned kWteThreads = 128;

// Block i looks at sorted entry i. Unless it starts a run of equal tokens it leaves at once;
// otherwise it finds the run's end by binary search and adds the run's rows of dout, in position
// order, onto the token's row of dwte (thread t owning packs t, t + kWteThreads, ... of the row).
// Runs have distinct tokens, so no two blocks write the same row.
template <typename Act>
__global__ void __launch_bounds__(kWteThreads)
    encoder_backward_wte_kernel(float* dwte, const Act* dout, const uint32_t* sorted_tokens,
                                const int32_t* sorted_positions, int count, int C) {
  const int start = blockIdx.x;
  const uint32_t token = sorted_tokens[start];
  if (start > 0 && sorted_tokens[start - 1] == token) return;  // the whole block leaves
  int lo = start + 1;
  int hi = count;
  while (lo < hi) {  // first entry after start with a larger token
    const int mid = lo + (hi - lo) / 2;
    if (sorted_tokens[mid] == token) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  const int end = lo;
  float* w = dwte + static_cast<size_t>(token) * C;
  const bool w_vector = device::aligned16_device(w);
  for (int c = threadIdx.x * kPack; c < C; c += kWteThreads * kPack) {
    float acc[kPack];
    device::load_pack_checked(w, c, C, w_vector, acc);
    for (int j0 = start; j0 < end; j0 += kBatch) {
      float d[kBatch][kPack];
#pragma unroll
      for (int q = 0; q < kBatch; ++q) {
        if (j0 + q < end) {
          const Act* row = dout + static_cast<size_t>(sorted_positions[j0 + q]) * C;
          device::load_pack_checked(row, c, C, device::aligned16_device(row), d[q]);
        }
      }
#pragma unroll
      for (int q = 0; q < kBatch; ++q) {
        if (j0 + q < end) {
#pragma unroll
          for (int k = 0; k < kPack; ++k) acc[k] += d[q][k];
        }
      }
    }
    device::store_pack_checked(w, c, C, w_vector, acc);
  }
}

// Tokens are non-negative int32, so as uint32 keys their bit 31 is clear: sort bits [0, 31).
constexpr int kSortBits = 31;

// CUB's scratch bytes for sorting `count` (token, position) pairs.
size_t sort_bytes(int count) {
  size_t bytes = 0;
  check_cuda(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const uint32_t*>(nullptr),
                                             static_cast<uint32_t*>(nullptr),
                                             static_cast<const int32_t*>(nullptr),
                                             static_cast<int32_t*>(nullptr), count, 0, kSortBits),
             "cub::DeviceRadixSort::SortPairs (workspace size)");
  return bytes;
}

constexpr size_t kAlign = 256;

size_t align_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// The workspace, from its first 256-byte boundary: sorted tokens, positions, sorted positions
// (count int32 each, each padded to 256 bytes), then CUB's scratch.
struct Workspace {
  uint32_t* sorted_tokens;
  int32_t* positions;
  int32_t* sorted_positions;
  void* sort_storage;
  size_t sort_storage_bytes;
};

size_t workspace_bytes(int count, size_t sort_storage_bytes) {
  return kAlign - 1 + 3 * align_up(static_cast<size_t>(count) * sizeof(int32_t)) +
         sort_storage_bytes;
}

Workspace carve(void* workspace, int count, size_t sort_storage_bytes) {
  const uintptr_t base = (reinterpret_cast<uintptr_t>(workspace) + kAlign - 1) / kAlign * kAlign;
  const size_t array = align_up(static_cast<size_t>(count) * sizeof(int32_t));
  char* p = reinterpret_cast<char*>(base);
  return {reinterpret_cast<uint32_t*>(p), reinterpret_cast<int32_t*>(p + array),
          reinterpret_cast<int32_t*>(p + 2 * array), p + 3 * array, sort_storage_bytes};
}

}  // namespace

template <typename Act>
void encoder_forward(Act* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                     int T, int C, cudaStream_t stream) {
  const int64_t rows = static_cast<int64_t>(B) * T;
  if (rows <= 0 || C <= 0) return;
  const unsigned grid = static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  encoder_forward_kernel<Act><<<grid, kForwardThreads, 0, stream>>>(out, tokens, wte, wpe, rows, T,
                                                                    C);
  check_launch("encoder_forward");
}

size_t encoder_backward_workspace_bytes(int B, int T) {
  const int64_t count = static_cast<int64_t>(B) * T;
  if (count <= 0) return 0;
  return workspace_bytes(static_cast<int>(count), sort_bytes(static_cast<int>(count)));
}

template <typename Act>
void encoder_backward(float* dwte, float* dwpe, const Act* dout, const int32_t* tokens, int B,
                      int T, int C, void* workspace, cudaStream_t stream) {
  const int64_t count64 = static_cast<int64_t>(B) * T;
  if (count64 <= 0 || C <= 0) return;
  const int count = static_cast<int>(count64);

  const size_t TC = static_cast<size_t>(T) * C;
  const bool wpe_vector = device::aligned16(dwpe) && device::aligned16(dout) && TC % kPack == 0;
  const size_t wpe_packs = (TC + kPack - 1) / kPack;
  encoder_backward_wpe_kernel<Act><<<device::flat_blocks(wpe_packs, kThreads), kThreads, 0,
                                     stream>>>(dwpe, dout, B, TC, wpe_vector);
  check_launch("encoder_backward (dwpe)");

  const Workspace ws = carve(workspace, count, sort_bytes(count));
  iota_kernel<<<device::flat_blocks(count, kThreads), kThreads, 0, stream>>>(ws.positions, count);
  check_launch("encoder_backward (positions)");
  size_t storage_bytes = ws.sort_storage_bytes;
  check_cuda(cub::DeviceRadixSort::SortPairs(ws.sort_storage, storage_bytes,
                                             reinterpret_cast<const uint32_t*>(tokens),
                                             ws.sorted_tokens, ws.positions, ws.sorted_positions,
                                             count, 0, kSortBits, stream),
             "cub::DeviceRadixSort::SortPairs");
  check_launch("encoder_backward (sort)");
  encoder_backward_wte_kernel<Act><<<count, kWteThreads, 0, stream>>>(
      dwte, dout, ws.sorted_tokens, ws.sorted_positions, count, C);
  check_launch("encoder_backward (dwte)");
}

template void encoder_forward<float>(float*, const int32_t*, const float*, const float*, int, int,
                                     int, cudaStream_t);
template void encoder_forward<bf16>(bf16*, const int32_t*, const float*, const float*, int, int,
                                    int, cudaStream_t);
template void encoder_backward<float>(float*, float*, const float*, const int32_t*, int, int, int,
                                      void*, cudaStream_t);
template void encoder_backward<bf16>(float*, float*, const bf16*, const int32_t*, int, int, int,
                                     void*, cudaStream_t);

}  // namespace switchyard::backend::cuda
