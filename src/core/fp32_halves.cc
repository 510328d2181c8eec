#include "core/fp32_halves.h"

namespace switchyard {

void split_fp32(const float* values, uint16_t* high, uint16_t* low, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > (size_t{1} << 20))
  for (size_t i = 0; i < n; ++i) {
    const uint32_t bits = std::bit_cast<uint32_t>(values[i]);
    high[i] = fp32_high_half(bits);
    low[i] = fp32_low_half(bits);
  }
}

void join_fp32(const uint16_t* high, const uint16_t* low, float* values, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > (size_t{1} << 20))
  for (size_t i = 0; i < n; ++i) values[i] = fp32_from_halves(high[i], low[i]);
}

}  // namespace switchyard
