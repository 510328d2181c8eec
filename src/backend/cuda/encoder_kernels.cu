#include "backend/cuda/encoder_kernels.h"

#include <algorithm>

#include <cub/device/device_radix_sort.cuh>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_helpers.cuh"

namespace switchyard::backend::cuda {
namespace {

using device::kPack;
using device::kWarp;

// ---- forward ----

// One warp per row, lane l handling packs l, l + 32, ... of the row.
constexpr int kRowsPerBlock = 8;
constexpr int kForwardThreads = kRowsPerBlock * kWarp;

template <typename Act, typename Table>
__global__ void __launch_bounds__(kForwardThreads)
    encoder_forward_kernel(Act* out, const int32_t* tokens, const Table* wte,
                           const int32_t* positions, const float* wpe, int64_t rows, int C) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (row >= rows) return;
  const int lane = threadIdx.x % kWarp;
  const Table* e = wte + static_cast<size_t>(tokens[row]) * C;
  const float* p = wpe != nullptr ? wpe + static_cast<size_t>(positions[row]) * C : nullptr;
  Act* o = out + static_cast<size_t>(row) * C;
  const bool e_vector = device::aligned16_device(e);
  const bool p_vector = device::aligned16_device(p);
  const bool o_vector = device::aligned16_device(o);
  for (int c = lane * kPack; c < C; c += kWarp * kPack) {
    float ve[kPack];
    device::load_pack_checked(e, c, C, e_vector, ve);
    if (p != nullptr) {
      float vp[kPack];
      device::load_pack_checked(p, c, C, p_vector, vp);
#pragma unroll
      for (int k = 0; k < kPack; ++k) ve[k] += vp[k];
    }
    device::store_pack_checked(o, c, C, o_vector, ve);
  }
}

// ---- backward ----

constexpr unsigned kThreads = 256;

// rows[i] = i: the values that each sort carries along with the ids.
__global__ void __launch_bounds__(kThreads) iota_kernel(int32_t* rows, int count) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    rows[i] = static_cast<int32_t>(i);
  }
}

// Rows of dout whose loads a thread issues before adding them in order (hides the latency of the
// dependent load of each row).
constexpr int kBatch = 4;
constexpr unsigned kWteThreads = 128;

// Block i looks at sorted entry i. Unless it starts a run of equal ids it leaves at once;
// otherwise it finds the run's end by binary search and adds the run's rows of dout, in row
// order, onto the id's row of the table (thread t owning packs t, t + kWteThreads, ... of the
// row). Runs have distinct ids, so no two blocks write the same row.
template <typename Act, typename Table>
__global__ void __launch_bounds__(kWteThreads)
    encoder_backward_scatter_kernel(Table* dtable, const Act* dout, const uint32_t* sorted_ids,
                                    const int32_t* sorted_rows, int count, int C) {
  const int start = blockIdx.x;
  const uint32_t token = sorted_ids[start];
  if (start > 0 && sorted_ids[start - 1] == token) return;  // the whole block leaves
  int lo = start + 1;
  int hi = count;
  while (lo < hi) {  // first entry after start with a larger token
    const int mid = lo + (hi - lo) / 2;
    if (sorted_ids[mid] == token) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  const int end = lo;
  Table* w = dtable + static_cast<size_t>(token) * C;
  const bool w_vector = device::aligned16_device(w);
  for (int c = threadIdx.x * kPack; c < C; c += kWteThreads * kPack) {
    float acc[kPack];
    device::load_pack_checked(w, c, C, w_vector, acc);
    for (int j0 = start; j0 < end; j0 += kBatch) {
      float d[kBatch][kPack];
#pragma unroll
      for (int q = 0; q < kBatch; ++q) {
        if (j0 + q < end) {
          const Act* row = dout + static_cast<size_t>(sorted_rows[j0 + q]) * C;
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

// The key bits ids of a table of `rows` rows use (ids are in [0, rows), so as uint32 keys only
// bits [0, sort_bits) can be set): fewer bits, fewer radix passes. At least 1, at most 31.
int sort_bits(int rows) {
  int bits = 1;
  while (bits < 31 && (int64_t{1} << bits) < rows) ++bits;
  return bits;
}

// CUB's scratch bytes for sorting `count` (id, row) pairs on `bits` key bits.
size_t sort_bytes(int count, int bits) {
  size_t bytes = 0;
  check_cuda(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const uint32_t*>(nullptr),
                                             static_cast<uint32_t*>(nullptr),
                                             static_cast<const int32_t*>(nullptr),
                                             static_cast<int32_t*>(nullptr), count, 0, bits),
             "cub::DeviceRadixSort::SortPairs (workspace size)");
  return bytes;
}

// CUB's scratch for both sorts, the tokens' (V rows) and, unless P is 0, the positions'.
size_t sort_storage_bytes(int count, int V, int P) {
  const size_t tokens = sort_bytes(count, sort_bits(V));
  return P > 0 ? std::max(tokens, sort_bytes(count, sort_bits(P))) : tokens;
}

constexpr size_t kAlign = 256;

size_t align_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// The workspace, from its first 256-byte boundary: sorted ids, row numbers, sorted row numbers
// (count int32 each, each padded to 256 bytes), then CUB's scratch. Both tables' sorts use it in
// turn (the stream orders them).
struct Workspace {
  uint32_t* sorted_ids;
  int32_t* rows;
  int32_t* sorted_rows;
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

// Adds the rows of dout onto the rows of dtable[rows, C] that ids name (see the header).
template <typename Act, typename Table>
void scatter_rows(Table* dtable, int rows, const Act* dout, const int32_t* ids, int count, int C,
                  const Workspace& ws, cudaStream_t stream) {
  const int bits = sort_bits(rows);
  size_t storage_bytes = ws.sort_storage_bytes;
  check_cuda(cub::DeviceRadixSort::SortPairs(ws.sort_storage, storage_bytes,
                                             reinterpret_cast<const uint32_t*>(ids), ws.sorted_ids,
                                             ws.rows, ws.sorted_rows, count, 0, bits, stream),
             "cub::DeviceRadixSort::SortPairs");
  check_launch("encoder_backward (sort)");
  encoder_backward_scatter_kernel<Act, Table><<<count, kWteThreads, 0, stream>>>(
      dtable, dout, ws.sorted_ids, ws.sorted_rows, count, C);
  check_launch("encoder_backward (scatter)");
}

}  // namespace

template <typename Act, typename Table>
void encoder_forward(Act* out, const int32_t* tokens, const Table* wte, const int32_t* positions,
                     const float* wpe, int N, int C, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  const unsigned grid = static_cast<unsigned>((static_cast<int64_t>(N) + kRowsPerBlock - 1) /
                                              kRowsPerBlock);
  encoder_forward_kernel<Act, Table><<<grid, kForwardThreads, 0, stream>>>(out, tokens, wte,
                                                                           positions, wpe, N, C);
  check_launch("encoder_forward");
}

size_t encoder_backward_workspace_bytes(int N, int V, int P) {
  if (N <= 0) return 0;
  return workspace_bytes(N, sort_storage_bytes(N, V, P));
}

template <typename Act, typename Table>
void encoder_backward(Table* dwte, int V, float* dwpe, int P, const Act* dout,
                      const int32_t* tokens, const int32_t* positions, int N, int C,
                      void* workspace, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  const Workspace ws = carve(workspace, N, sort_storage_bytes(N, V, dwpe != nullptr ? P : 0));
  iota_kernel<<<device::flat_blocks(N, kThreads), kThreads, 0, stream>>>(ws.rows, N);
  check_launch("encoder_backward (row numbers)");
  scatter_rows(dwte, V, dout, tokens, N, C, ws, stream);
  if (dwpe != nullptr) scatter_rows(dwpe, P, dout, positions, N, C, ws, stream);
}

#define SWITCHYARD_ENCODER_FORWARD(Act, Table)                                                    \
  template void encoder_forward<Act, Table>(Act*, const int32_t*, const Table*, const int32_t*,   \
                                            const float*, int, int, cudaStream_t);
#define SWITCHYARD_ENCODER_BACKWARD(Act, Table)                                                   \
  template void encoder_backward<Act, Table>(Table*, int, float*, int, const Act*,                \
                                             const int32_t*, const int32_t*, int, int, void*,     \
                                             cudaStream_t);

// fp32 tables; bf16 tables (frozen checkpoints, rows of bf16 activations) for either activation
// type; gradients of fp32 tables, and of bf16 activation rows.
SWITCHYARD_ENCODER_FORWARD(float, float)
SWITCHYARD_ENCODER_FORWARD(bf16, float)
SWITCHYARD_ENCODER_FORWARD(float, bf16)
SWITCHYARD_ENCODER_FORWARD(bf16, bf16)
SWITCHYARD_ENCODER_BACKWARD(float, float)
SWITCHYARD_ENCODER_BACKWARD(bf16, float)
SWITCHYARD_ENCODER_BACKWARD(bf16, bf16)

#undef SWITCHYARD_ENCODER_FORWARD
#undef SWITCHYARD_ENCODER_BACKWARD

}  // namespace switchyard::backend::cuda
