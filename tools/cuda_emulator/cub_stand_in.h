// A stand-in for the one CUB algorithm the kernels call, cub::DeviceRadixSort::SortPairs, for the
// CUDA emulator: preprocess.py turns `#include <cub/...>` into an include of this file.
//
// It keeps CUB's contract as encoder_backward relies on it: the first call (null storage) only
// reports the scratch size; the second sorts (key, value) pairs by the key bits [begin_bit,
// end_bit), stably (CUB's radix sort is stable, so equal keys keep their input order). It runs on
// the host at once, like every emulated launch. To catch callers that lean on more than that, it
// refuses storage smaller than it asked for, and overwrites all of the storage (a real sort uses
// it as it likes) so that a caller keeping data there sees it destroyed.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <vector>

namespace cub {

struct DeviceRadixSort {
  template <typename KeyT, typename ValueT, typename NumItemsT>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes,
                               const KeyT* d_keys_in, KeyT* d_keys_out, const ValueT* d_values_in,
                               ValueT* d_values_out, NumItemsT num_items, int begin_bit = 0,
                               int end_bit = sizeof(KeyT) * 8, cudaStream_t stream = 0) {
    static_assert(std::is_integral_v<KeyT> && std::is_unsigned_v<KeyT>,
                  "the stand-in sorts unsigned integer keys only");
    (void)stream;
    const size_t n = static_cast<size_t>(num_items);
    // Some scratch, as CUB asks for (its real amount differs and does not matter here).
    const size_t needed = 1024 + n * (sizeof(KeyT) + sizeof(ValueT));
    if (d_temp_storage == nullptr) {
      temp_storage_bytes = needed;
      return cudaSuccess;
    }
    if (temp_storage_bytes < needed || begin_bit < 0 || end_bit > int(sizeof(KeyT) * 8) ||
        begin_bit >= end_bit) {
      std::fprintf(stderr,
                   "cub stand-in: SortPairs given %zu bytes of storage (asked for %zu) "
                   "and bits [%d, %d)\n",
                   temp_storage_bytes, needed, begin_bit, end_bit);
      return cudaErrorInvalidValue;
    }
    if (static_cast<const void*>(d_keys_in) == d_keys_out ||
        static_cast<const void*>(d_values_in) == d_values_out) {
      std::fprintf(stderr, "cub stand-in: SortPairs outputs alias its inputs\n");
      return cudaErrorInvalidValue;
    }
    std::memset(d_temp_storage, 0xab, temp_storage_bytes);
    const int bits = end_bit - begin_bit;
    const KeyT mask = bits >= int(sizeof(KeyT) * 8) ? KeyT(~KeyT(0)) : KeyT((KeyT(1) << bits) - 1);
    auto digit = [&](size_t i) { return KeyT((d_keys_in[i] >> begin_bit) & mask); };
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return digit(a) < digit(b); });
    for (size_t i = 0; i < n; ++i) {
      d_keys_out[i] = d_keys_in[order[i]];
      d_values_out[i] = d_values_in[order[i]];
    }
    return cudaSuccess;
  }
};

}  // namespace cub
