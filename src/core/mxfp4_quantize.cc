#include "core/mxfp4_quantize.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace switchyard {

namespace {

constexpr int kBlock = 32;           // values sharing one scale
constexpr int kE2M1MaxExponent = 2;  // E2M1's largest value is 1.5 * 2^2 = 6
constexpr int kE8M0Bias = 127;       // E8M0 byte s means 2^(s - 127); 255 is NaN

// The E2M1 code (without its sign) of the value nearest to `magnitude` (>= 0), saturating at 6.
// Neighbouring values 0, 0.5, 1, 1.5, 2, 3, 4, 6 have codes 0..7 in order, so the code is the
// number of midpoints below the magnitude. A magnitude on a midpoint goes to the even code (the
// one whose mantissa bit is 0): '>' where the lower neighbour's code is even, '>=' where the upper
// one's is.
uint8_t nearest_e2m1_code(float magnitude) {
  return static_cast<uint8_t>((magnitude > 0.25f) + (magnitude >= 0.75f) + (magnitude > 1.25f) +
                              (magnitude >= 1.75f) + (magnitude > 2.5f) + (magnitude >= 3.5f) +
                              (magnitude > 5.0f));
}

uint8_t signed_e2m1_code(float scaled) {
  return static_cast<uint8_t>((std::signbit(scaled) ? 0x8 : 0) | nearest_e2m1_code(std::fabs(scaled)));
}

}  // namespace

void quantize_mxfp4_block(const float* values, uint8_t* codes, uint8_t* scale) {
  float largest = 0;
  for (int i = 0; i < kBlock; ++i) {
    require(std::isfinite(values[i]), "MXFP4 cannot hold the non-finite value {} (element {} of a block)",
            values[i], i);
    largest = std::max(largest, std::fabs(values[i]));
  }
  int exponent = -kE8M0Bias;  // a block of zeros
  if (largest > 0) {
    // ilogb is floor(log2(x)), exact for every finite float (subnormals included).
    exponent = std::clamp(std::ilogb(largest) - kE2M1MaxExponent, -kE8M0Bias, kE8M0Bias);
  }
  *scale = static_cast<uint8_t>(exponent + kE8M0Bias);
  // Dividing by a power of two is exact unless the quotient falls below the normal range, and
  // such a quotient rounds to a zero code either way.
  const float inverse = std::ldexp(1.0f, -exponent);
  for (int i = 0; i < kBlock / 2; ++i) {
    codes[i] = static_cast<uint8_t>(signed_e2m1_code(values[2 * i] * inverse) |
                                    (signed_e2m1_code(values[2 * i + 1] * inverse) << 4));
  }
}

Mxfp4Tensor quantize_mxfp4(const std::string& name, std::span<const float> values, int64_t cols) {
  require(cols > 0 && cols % kBlock == 0,
          "tensor '{}' has rows of {} values, which do not split into MXFP4 blocks of {}", name, cols, kBlock);
  require(values.size() % static_cast<size_t>(cols) == 0,
          "tensor '{}' has {} values, not whole rows of {}", name, values.size(), cols);
  const size_t block_count = values.size() / kBlock;
  Mxfp4Tensor out;
  out.blocks.resize(block_count * (kBlock / 2));
  out.scales.resize(block_count);
  for (size_t b = 0; b < block_count; ++b) {
    const float* block = values.data() + b * kBlock;
    for (int i = 0; i < kBlock; ++i) {
      if (!std::isfinite(block[i])) {
        const size_t at = b * kBlock + i;
        fail("tensor '{}' holds {} at row {}, column {}: MXFP4 has no code for it", name, block[i],
             at / static_cast<size_t>(cols), at % static_cast<size_t>(cols));
      }
    }
    quantize_mxfp4_block(block, out.blocks.data() + b * (kBlock / 2), &out.scales[b]);
  }
  return out;
}

}  // namespace switchyard
