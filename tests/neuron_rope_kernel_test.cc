// The trn*-sim backend's rotary-embedding tile program against the CPU kernel template
// (norm_rope_kernels.h) run in double on the same rounded inputs, on strided rows (q and k inside
// a packed projection whose v columns must stay untouched), forward and transposed, for the
// partition layouts the program chooses: a row's head groups on consecutive partitions for
// decode-sized tiles (a DMA per row), a group's rows on consecutive partitions for larger ones (a
// DMA per group), and whole rows in tiles of up to 128 rows.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "backend/cpu/norm_rope_kernels.h"
#include "backend/neuron/rope_kernel.h"
#include "core/rng.h"
#include "expect_error.h"
#include "neuron_kernel_inputs.h"
#include "neuron/config.h"
#include "relative_error.h"

namespace switchyard::backend::neuron {
namespace {

namespace cpu = ::switchyard::backend::cpu;
using ::switchyard::neuron::trn2_config;
using Host = std::vector<double>;

constexpr int64_t kPositions = 50;

// cos and sin of a rotation scaled by 1.2 (a YaRN-like attention factor), [kPositions, D / 2].
void rotation_tables(int64_t D, std::vector<float>& cos, std::vector<float>& sin) {
  for (int64_t p = 0; p < kPositions; ++p) {
    for (int64_t i = 0; i < D / 2; ++i) {
      const double angle = static_cast<double>(p) / std::pow(150000.0, 2.0 * i / D);
      cos.push_back(static_cast<float>(1.2 * std::cos(angle)));
      sin.push_back(static_cast<float>(1.2 * std::sin(angle)));
    }
  }
}

// Rotates H heads of D dimensions at the start of rows that also hold V more heads (v).
void check_rope(const Mode& mode, int64_t N, int64_t H, int64_t V, int64_t D, bool transpose) {
  SCOPED_TRACE(std::string(mode.name) + " N=" + std::to_string(N) + " H=" + std::to_string(H) +
               " D=" + std::to_string(D) + (transpose ? " transposed" : ""));
  NeuronCore core(trn2_config());
  const int64_t width = (H + V) * D;
  Rng rng(N * 1000 + H);
  std::vector<float> values(static_cast<size_t>(N * width)), positions(static_cast<size_t>(N));
  for (float& x : values) x = 2.0f * rng.normal();
  for (float& p : positions) p = static_cast<float>(rng.next_u64() % kPositions);
  std::vector<float> cos_values, sin_values;
  rotation_tables(D, cos_values, sin_values);
  const View projection = upload(core, {N, width}, mode.act, values, "projection");
  const View cos = upload(core, {kPositions, D / 2}, DType::kF32, cos_values, "cos");
  const View sin = upload(core, {kPositions, D / 2}, DType::kF32, sin_values, "sin");
  const View position = upload(core, {N, 1}, DType::kI32, positions, "positions");
  Host want = read(core, projection);
  rope(core, projection.cols(0, H * D), cos, sin, position, H, D, transpose, mode.compute);
  const Host c = read(core, cos), s = read(core, sin);
  const std::vector<int32_t> p(positions.begin(), positions.end());
  const Host before = want;
  cpu::rope<double>(want.data(), width, c.data(), s.data(), p.data(), static_cast<int>(N),
                    static_cast<int>(H), static_cast<int>(D), transpose);
  const Host got = read(core, projection);
  EXPECT_LT(relative_error(got, want), mode.tol);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t i = H * D; i < width; ++i) {
      ASSERT_EQ(got[n * width + i], before[n * width + i]) << "v column " << i << " of row " << n;
    }
  }
}

TEST(NeuronRope, RotatesStridedRowsLikeTheReference) {
  check_rope(kBf16, 32, 72, 8, 64, false);   // gpt-oss-20b decode: 32 rows x 4 head groups
  check_rope(kFp32, 5, 3, 1, 6, false);      // odd sizes: 5 rows x 3 groups
  check_rope(kFp32, 2, 72, 8, 64, true);     // 2 rows x 36 groups
  check_rope(kFp32, 130, 10, 5, 16, true);   // whole rows, two row tiles of up to 128 rows
  check_rope(kBf16, 130, 72, 8, 64, false);  // a DMA per group of 36 heads, tiles of 64 rows
}

TEST(NeuronRope, TransposeUndoesAnUnscaledRotation) {
  // Tables without a scale: the transposed map is the inverse.
  NeuronCore core(trn2_config());
  const int64_t N = 9, H = 4, D = 8;
  std::vector<float> cos_values, sin_values;
  for (int64_t p = 0; p < kPositions; ++p) {
    for (int64_t i = 0; i < D / 2; ++i) {
      cos_values.push_back(static_cast<float>(std::cos(0.3 * p + i)));
      sin_values.push_back(static_cast<float>(std::sin(0.3 * p + i)));
    }
  }
  std::vector<float> values(static_cast<size_t>(N * H * D));
  Rng rng(7);
  for (float& x : values) x = rng.normal();
  const View x = upload(core, {N, H * D}, DType::kF32, values, "x");
  const View cos = upload(core, {kPositions, D / 2}, DType::kF32, cos_values, "cos");
  const View sin = upload(core, {kPositions, D / 2}, DType::kF32, sin_values, "sin");
  const View positions = upload(core, {N, 1}, DType::kI32, {0, 3, 49, 7, 7, 1, 20, 30, 2}, "pos");
  rope(core, x, cos, sin, positions, H, D, false, DType::kF32);
  rope(core, x, cos, sin, positions, H, D, true, DType::kF32);
  EXPECT_LT(relative_error(core.read(x), values), 1e-6);
}

TEST(NeuronRope, RejectsBadShapesAndPositions) {
  NeuronCore core(trn2_config());
  const View x = core.hbm_alloc({2, 12}, DType::kF32, "x");
  core.write(x, std::vector<float>(24, 1.0f));
  const View cos = core.hbm_alloc({4, 3}, DType::kF32, "cos");
  core.write(cos, std::vector<float>(12, 1.0f));
  const View positions = upload(core, {2, 1}, DType::kI32, {1, 4}, "positions");
  expect_error([&] { rope(core, x, cos, cos, positions, 2, 6, false, DType::kF32); },
               {"index 4", "outside"});
  expect_error([&] { rope(core, x, cos, cos, positions, 4, 3, false, DType::kF32); },
               {"rope", "even head_dim"});
  EXPECT_FALSE(rope_supported(1, 8192));
  EXPECT_FALSE(rope_supported(131, 64));  // a prime count of heads too wide for one partition
  EXPECT_TRUE(rope_supported(72, 64));
}

}  // namespace
}  // namespace switchyard::backend::neuron
