// Executor: TensorE instructions (matmul accumulating in PSUM, transpose).
#include <algorithm>

#include "neuron/executor.h"
#include "neuron/matmul_kernel.h"

namespace switchyard::neuron {

void Executor::matmul(const View& out, const View& stationary, const View& moving, bool start) {
  // The product in fp32, accumulated into PSUM. bf16 and fp32 operands whose rows are contiguous
  // are read where they lie in SBUF; others through fp32 copies.
  const int64_t K = stationary.partitions();
  const int64_t M = stationary.free_size();
  const int64_t N = moving.free_size();
  const int Mi = static_cast<int>(M), Ni = static_cast<int>(N), Ki = static_cast<int>(K);
  const int64_t sbuf_stride = memories_.partition_stride_bytes(Memory::kSbuf);
  auto multiply = [&](float* c, int64_t ldc, bool overwrite) {
    const bool in_place = stationary.rows_contiguous() && moving.rows_contiguous();
    if (in_place && stationary.dtype() == DType::kBF16) {
      const int64_t ld = sbuf_stride / 2;
      matmul_accumulate_bf16(c, ldc, reinterpret_cast<const uint16_t*>(element_base(stationary, 0)),
                             ld, reinterpret_cast<const uint16_t*>(element_base(moving, 0)), ld,
                             Mi, Ni, Ki, overwrite);
    } else if (in_place && stationary.dtype() == DType::kF32) {
      const int64_t ld = sbuf_stride / 4;
      matmul_accumulate(c, ldc, reinterpret_cast<const float*>(element_base(stationary, 0)), ld,
                        reinterpret_cast<const float*>(element_base(moving, 0)), ld, Mi, Ni, Ki,
                        overwrite);
    } else {
      std::span<float> s = scratch(0, K * M);
      std::span<float> v = scratch(1, K * N);
      load(stationary, s.data());
      load(moving, v.data());
      matmul_accumulate(c, ldc, s.data(), M, v.data(), N, Mi, Ni, Ki, overwrite);
    }
  };
  if (out.rows_contiguous()) {
    float* c = reinterpret_cast<float*>(element_base(out, 0));
    multiply(c, memories_.partition_stride_bytes(Memory::kPsum) / 4, /*overwrite=*/start);
  } else {
    std::span<float> c = scratch(2, M * N);
    std::fill(c.begin(), c.end(), 0.0f);
    if (!start) load(out, c.data());
    multiply(c.data(), N, /*overwrite=*/false);
    store(out, c.data());
  }
}

void Executor::transpose(const View& out, const View& in) {
  const int64_t P = in.partitions();
  const int64_t F = in.free_size();
  std::span<float> a = scratch(0, P * F);
  std::span<float> t = scratch(1, P * F);
  load(in, a.data());
  for (int64_t p = 0; p < P; ++p)
    for (int64_t f = 0; f < F; ++f) t[f * P + p] = a[p * F + f];
  store(out, t.data());
}

}  // namespace switchyard::neuron
