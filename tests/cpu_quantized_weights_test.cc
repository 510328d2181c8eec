// Products and embeddings over inference weights kept as they are stored (bf16, MXFP4): the
// batch-invariant kernel over bf16 or MXFP4 weights gives the bits of the fp32 kernel over the
// decoded weights (decoded here with core's bf16_to_float and decode_mxfp4_block), and of the
// documented summation order written out; then the ops through CpuBackend (Linear, ExpertLinear,
// Embedding), what supports() answers, and the errors for operands that cannot work.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/mxfp4_bf16_gemm.h"
#include "backend/cpu/weight_decode.h"
#include "backend/ops.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "expect_error.h"
#include "random_data.h"

namespace switchyard::backend::cpu {
namespace {

// ---- weights in their stored form, and decoded ----

struct Bf16Weights {
  std::vector<uint16_t> bits;
  std::vector<float> decoded;
};

Bf16Weights random_bf16(size_t n, uint64_t seed) {
  Bf16Weights w;
  for (const float v : random_floats(n, seed)) {
    w.bits.push_back(float_to_bf16(v));
    w.decoded.push_back(bf16_to_float(w.bits.back()));
  }
  return w;
}

struct Mxfp4Weights {
  std::vector<uint8_t> codes, scales;
  std::vector<float> decoded;
};

// Rows of C values (C a multiple of 32): random code bytes (every one of the 16 codes in each low
// and high nibble position, the first 8 bytes of each row cycling through them), random scales in
// [scale_lo, scale_hi].
Mxfp4Weights random_mxfp4(int rows, int C, uint64_t seed, int scale_lo = 110, int scale_hi = 130) {
  Rng rng(seed);
  Mxfp4Weights w;
  w.codes.resize(static_cast<size_t>(rows) * C / 2);
  w.scales.resize(static_cast<size_t>(rows) * C / 32);
  for (size_t i = 0; i < w.codes.size(); ++i) {
    const size_t in_row = i % (C / 2);
    w.codes[i] = in_row < 8 ? static_cast<uint8_t>((2 * in_row) | ((2 * in_row + 1) << 4))
                            : static_cast<uint8_t>(rng.next_u64());
  }
  for (uint8_t& s : w.scales) {
    s = static_cast<uint8_t>(scale_lo + rng.next_u64() % (scale_hi - scale_lo + 1));
  }
  w.decoded.resize(static_cast<size_t>(rows) * C);
  for (size_t b = 0; b < w.scales.size(); ++b) {
    decode_mxfp4_block(w.codes.data() + 16 * b, w.scales[b], w.decoded.data() + 32 * b);
  }
  return w;
}

// The summation order batch_invariant_linear documents, written out: 16 chains (fused
// multiply-adds from zero over c = l, l + 16, ...), added in a tree of halves, then the tail.
float documented_order(const float* x, const float* w, int C) {
  const int main_part = C - C % 16;
  float chain[16] = {};
  for (int l = 0; l < 16; ++l) {
    for (int c = l; c < main_part; c += 16) chain[l] = std::fma(x[c], w[c], chain[l]);
  }
  for (int half = 8; half >= 1; half /= 2) {
    for (int l = 0; l < half; ++l) chain[l] += chain[l + half];
  }
  if (main_part == C) return chain[0];
  float tail = 0.0f;
  for (int c = main_part; c < C; ++c) tail = std::fma(x[c], w[c], tail);
  return chain[0] + tail;
}

// Elements where the two differ in bits (NaN payloads included).
int mismatches(const std::vector<float>& got, const std::vector<float>& want) {
  int count = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    count += std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want[i]);
  }
  return count;
}

// The product over stored weights against the fp32 kernel over the decoded ones and against the
// documented order.
void expect_same_bits(const WeightMatrix& stored, const std::vector<float>& decoded, int N, int C,
                      int OC, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << dtype_name(stored.dtype) << " N=" << N << " C=" << C
                                  << " OC=" << OC);
  const std::vector<float> inp = random_floats(static_cast<size_t>(N) * C, seed);
  std::vector<float> got(static_cast<size_t>(N) * OC), want(got.size()), written(got.size());
  batch_invariant_linear(got.data(), inp.data(), stored, N, C, OC);
  batch_invariant_linear(want.data(), inp.data(), decoded.data(), N, C, OC);
  EXPECT_EQ(mismatches(got, want), 0);
  for (int n = 0; n < N; ++n) {
    for (int o = 0; o < OC; ++o) {
      written[static_cast<size_t>(n) * OC + o] =
          documented_order(inp.data() + static_cast<size_t>(n) * C,
                           decoded.data() + static_cast<size_t>(o) * C, C);
    }
  }
  EXPECT_EQ(mismatches(got, written), 0);
}

constexpr int kRowCounts[] = {1, 2, 3, 16, 17, 40, 100};
constexpr int kOutputCounts[] = {7, 45, 203};

// ---- the kernel ----

TEST(QuantizedWeights, Bf16ProductHasTheBitsOfTheFp32ProductOverDecodedWeights) {
  // 96 and 160: multiples of 32, not of 64; 67: a tail past the 16 chains.
  for (const int C : {96, 160, 67}) {
    for (const int OC : kOutputCounts) {
      const Bf16Weights w = random_bf16(static_cast<size_t>(OC) * C, 100 + C + OC);
      for (const int N : kRowCounts) {
        expect_same_bits({DType::kBF16, w.bits.data(), nullptr}, w.decoded, N, C, OC, 7 * N + C);
      }
    }
  }
}

TEST(QuantizedWeights, Mxfp4ProductHasTheBitsOfTheFp32ProductOverDecodedWeights) {
  for (const int C : {96, 160, 32}) {
    for (const int OC : kOutputCounts) {
      const Mxfp4Weights w = random_mxfp4(OC, C, 200 + C + OC);
      for (const int N : kRowCounts) {
        expect_same_bits({DType::kMXFP4, w.codes.data(), w.scales.data()}, w.decoded, N, C, OC,
                         11 * N + C);
      }
    }
  }
}

// Scales at the ends of E8M0's range: 2^-127 (below fp32's normals), 2^-126, 1, 2^53.
TEST(QuantizedWeights, Mxfp4ExtremeScalesDecodeExactly) {
  const int C = 96, OC = 45;
  for (const int scale : {0, 1, 127, 180}) {
    const Mxfp4Weights w = random_mxfp4(OC, C, 300 + scale, scale, scale);
    for (const int N : {1, 3, 40}) {
      expect_same_bits({DType::kMXFP4, w.codes.data(), w.scales.data()}, w.decoded, N, C, OC,
                       13 * N + scale);
    }
  }
}

// Scale byte 255 is NaN in E8M0: every output over such a block is NaN, the others are not.
TEST(QuantizedWeights, Mxfp4NanScaleMakesItsOutputsNan) {
  const int C = 96, OC = 7;
  Mxfp4Weights w = random_mxfp4(OC, C, 400);
  w.scales[2 * (C / 32) + 1] = 255;  // output 2, second block
  for (const int N : {1, 17}) {
    const std::vector<float> inp = random_floats(static_cast<size_t>(N) * C, 401);
    std::vector<float> out(static_cast<size_t>(N) * OC);
    batch_invariant_linear(out.data(), inp.data(), {DType::kMXFP4, w.codes.data(), w.scales.data()},
                           N, C, OC);
    for (int n = 0; n < N; ++n) {
      for (int o = 0; o < OC; ++o) {
        EXPECT_EQ(std::isnan(out[static_cast<size_t>(n) * OC + o]), o == 2)
            << "N=" << N << " row " << n << " output " << o;
      }
    }
  }
}

// cpu-bf16's panels (mxfp4_bf16_gemm.h): every block decoded to bf16 is its values exactly, for
// every scale byte, NaN's included; rows from the middle of the matrix.
TEST(QuantizedWeights, Mxfp4DecodedToBf16IsEveryValueExactly) {
  const int C = 64, OC = 256;
  Mxfp4Weights w = random_mxfp4(OC, C, 450, 0, 255);
  for (int b = 0; b < 256; ++b) w.scales[b] = static_cast<uint8_t>(b);  // one block of each
  for (size_t i = 0; i < w.decoded.size(); i += 32) {
    decode_mxfp4_block(w.codes.data() + 16 * (i / 32), w.scales[i / 32],
                       w.decoded.data() + i / 32 * 32);
  }
  const int first = 5, rows = 200;
  std::vector<uint16_t> bits(static_cast<size_t>(rows) * C);
  decode_mxfp4_rows_to_bf16(bits.data(), {DType::kMXFP4, w.codes.data(), w.scales.data()}, first,
                            rows, C);
  for (size_t i = 0; i < bits.size(); ++i) {
    const float expected = w.decoded[static_cast<size_t>(first) * C + i];
    const float got = bf16_to_float(bits[i]);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << "value " << i;
    } else {
      EXPECT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(expected)) << "value " << i;
    }
  }
  expect_error(
      [&] { decode_mxfp4_rows_to_bf16(bits.data(), {DType::kBF16, w.codes.data()}, 0, 1, C); },
      {"decode_mxfp4_rows_to_bf16", "mxfp4 weights", "bf16"});
}

// The kernels' scale table, built from the bits, against core's e8m0_to_float, for every byte.
TEST(QuantizedWeights, ScaleTableIsE8M0) {
  for (int bits = 0; bits < 256; ++bits) {
    const float got = weight_decode::kE8M0Scales[bits];
    const float want = e8m0_to_float(static_cast<uint8_t>(bits));
    if (bits == 255) {
      EXPECT_TRUE(std::isnan(got));
    } else {
      EXPECT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(want))
          << "scale byte " << bits;
    }
  }
}

TEST(QuantizedWeights, Fp32WeightMatrixIsThePointerProduct) {
  const int N = 5, C = 67, OC = 45;
  const std::vector<float> weight = random_floats(static_cast<size_t>(OC) * C, 500),
                           inp = random_floats(static_cast<size_t>(N) * C, 501);
  std::vector<float> got(static_cast<size_t>(N) * OC), want(got.size());
  batch_invariant_linear(got.data(), inp.data(), {DType::kF32, weight.data(), nullptr}, N, C, OC);
  batch_invariant_linear(want.data(), inp.data(), weight.data(), N, C, OC);
  EXPECT_EQ(mismatches(got, want), 0);
}

TEST(QuantizedWeights, ExpertSlicesStartWhereTheLayoutSays) {
  const WeightMatrix bf16{DType::kBF16, reinterpret_cast<const void*>(0x1000), nullptr};
  EXPECT_EQ(bf16.rows_from(3 * 7, 64).data, reinterpret_cast<const void*>(0x1000 + 3 * 7 * 64 * 2));
  const auto* scales = reinterpret_cast<const uint8_t*>(0x9000);
  const WeightMatrix mx = WeightMatrix{DType::kMXFP4, reinterpret_cast<const void*>(0x1000), scales}
                              .rows_from(2 * 5, 96);
  EXPECT_EQ(mx.data, reinterpret_cast<const void*>(0x1000 + 2 * 5 * 96 / 2));
  EXPECT_EQ(mx.scales, scales + 2 * 5 * 96 / 32);
}

// ---- through CpuBackend ----

Tensor f32(std::vector<float>& v, std::initializer_list<int64_t> shape) {
  return Tensor::dense(v.data(), DType::kF32, shape);
}
Tensor i32(std::vector<int32_t>& v, std::initializer_list<int64_t> shape) {
  return Tensor::dense(v.data(), DType::kI32, shape);
}

// Linear over bf16 or MXFP4 weights (with a bias) gives the bits of the fp32 batch-invariant
// Linear over the decoded weights, whatever the op's batch_invariant says.
TEST(QuantizedWeightOps, LinearEqualsTheFp32BatchInvariantLinearOverDecodedWeights) {
  CpuBackend backend;
  const int C = 160, OC = 45;
  Bf16Weights bf16 = random_bf16(static_cast<size_t>(OC) * C, 600);
  Mxfp4Weights mx = random_mxfp4(OC, C, 601);
  std::vector<float> bias = random_floats(OC, 602);
  struct Case {
    Tensor weight;
    std::vector<float>* decoded;
  };
  const Case cases[] = {{Tensor::dense(bf16.bits.data(), DType::kBF16, {OC, C}), &bf16.decoded},
                        {Tensor::mxfp4(mx.codes.data(), mx.scales.data(), {OC, C}), &mx.decoded}};
  for (const Case& k : cases) {
    for (const int N : {1, 5, 40}) {
      SCOPED_TRACE(testing::Message() << k.weight.describe() << " N=" << N);
      std::vector<float> inp = random_floats(static_cast<size_t>(N) * C, 603 + N);
      std::vector<float> got(static_cast<size_t>(N) * OC), want(got.size());
      backend.run(ops::Linear{.out = f32(got, {N, OC}), .inp = f32(inp, {N, C}),
                              .weight = k.weight, .bias = f32(bias, {OC})});
      backend.run(ops::Linear{.out = f32(want, {N, OC}), .inp = f32(inp, {N, C}),
                              .weight = f32(*k.decoded, {OC, C}), .bias = f32(bias, {OC}),
                              .batch_invariant = true});
      EXPECT_EQ(mismatches(got, want), 0);
      // The bias is there: without it every output moves by exactly its bias's rounding.
      std::vector<float> unbiased(got.size());
      backend.run(ops::Linear{.out = f32(unbiased, {N, OC}), .inp = f32(inp, {N, C}),
                              .weight = k.weight});
      EXPECT_EQ(got[OC - 1], unbiased[OC - 1] + bias[OC - 1]);
    }
  }
}

// ExpertLinear over [E, OC, C] bf16 or MXFP4 weights (experts 1 and 3 without rows) gives the bits
// of the fp32 batch-invariant ExpertLinear over the decoded weights.
TEST(QuantizedWeightOps, ExpertLinearEqualsTheFp32ExpertLinearOverDecodedWeights) {
  CpuBackend backend;
  const int E = 5, C = 96, OC = 45;
  std::vector<int32_t> offsets = {0, 3, 3, 20, 20, 21};  // rows per expert: 3, 0, 17, 0, 1
  const int A = offsets[E];
  Bf16Weights bf16 = random_bf16(static_cast<size_t>(E) * OC * C, 700);
  Mxfp4Weights mx = random_mxfp4(E * OC, C, 701);
  std::vector<float> bias = random_floats(static_cast<size_t>(E) * OC, 702),
                     inp = random_floats(static_cast<size_t>(A) * C, 703);
  struct Case {
    Tensor weight;
    std::vector<float>* decoded;
  };
  const Case cases[] = {
      {Tensor::dense(bf16.bits.data(), DType::kBF16, {E, OC, C}), &bf16.decoded},
      {Tensor::mxfp4(mx.codes.data(), mx.scales.data(), {E, OC, C}), &mx.decoded}};
  for (const Case& k : cases) {
    SCOPED_TRACE(k.weight.describe());
    std::vector<float> got(static_cast<size_t>(A) * OC), want(got.size());
    backend.run(ops::ExpertLinear{.out = f32(got, {A, OC}), .inp = f32(inp, {A, C}),
                                  .weight = k.weight, .bias = f32(bias, {E, OC}),
                                  .offsets = i32(offsets, {E + 1})});
    backend.run(ops::ExpertLinear{.out = f32(want, {A, OC}), .inp = f32(inp, {A, C}),
                                  .weight = f32(*k.decoded, {E, OC, C}),
                                  .bias = f32(bias, {E, OC}), .offsets = i32(offsets, {E + 1}),
                                  .batch_invariant = true});
    EXPECT_EQ(mismatches(got, want), 0);
    // Row 20 (expert 4's only row) by the documented order over expert 4's decoded weights.
    const float* w4 = k.decoded->data() + static_cast<size_t>(4) * OC * C;
    for (int o = 0; o < OC; o += 11) {
      const float sum = documented_order(inp.data() + static_cast<size_t>(20) * C,
                                         w4 + static_cast<size_t>(o) * C, C);
      const float want_o = sum + bias[4 * OC + o];
      EXPECT_EQ(got[static_cast<size_t>(20) * OC + o], want_o) << "output " << o;
    }
  }
}

TEST(QuantizedWeightOps, EmbeddingWidensBf16Rows) {
  CpuBackend backend;
  const int rows = 11, C = 24, N = 6;
  Bf16Weights table = random_bf16(static_cast<size_t>(rows) * C, 800);
  std::vector<int32_t> ids = {3, 0, 10, 3, 7, 1}, positions = {0, 1, 2, 3, 4, 0};
  std::vector<float> position_table = random_floats(static_cast<size_t>(5) * C, 801);
  std::vector<float> out(static_cast<size_t>(N) * C, -1.0f), with_positions(out.size());
  const Tensor bf16_table = Tensor::dense(table.bits.data(), DType::kBF16, {rows, C});
  backend.run(ops::Embedding{.out = f32(out, {N, C}), .ids = i32(ids, {N}), .table = bf16_table});
  backend.run(ops::Embedding{.out = f32(with_positions, {N, C}), .ids = i32(ids, {N}),
                             .table = bf16_table, .position_ids = i32(positions, {N}),
                             .position_table = f32(position_table, {5, C})});
  for (int n = 0; n < N; ++n) {
    for (int c = 0; c < C; ++c) {
      const float value = table.decoded[static_cast<size_t>(ids[n]) * C + c];
      EXPECT_EQ(out[static_cast<size_t>(n) * C + c], value) << n << ", " << c;
      EXPECT_EQ(with_positions[static_cast<size_t>(n) * C + c],
                value + position_table[static_cast<size_t>(positions[n]) * C + c])
          << n << ", " << c;
    }
  }
}

TEST(QuantizedWeightOps, SupportsExactlyTheInferenceWeightDtypes) {
  CpuBackend cpu;
  const Backend& backend = cpu;  // the interface's supports(op)
  std::vector<uint8_t> bytes(64);
  auto t = [&](DType dtype) { return Tensor::dense(bytes.data(), dtype, {1, 32}); };
  const Tensor fp32 = t(DType::kF32), bf16 = t(DType::kBF16), fp16 = t(DType::kF16);
  const Tensor ids = t(DType::kI32);
  const Tensor mx = Tensor::mxfp4(bytes.data(), bytes.data(), {1, 32});
  for (const Tensor& w : {bf16, mx}) {
    EXPECT_TRUE(backend.supports(ops::Linear{.out = fp32, .inp = fp32, .weight = w, .bias = fp32}));
    EXPECT_TRUE(backend.supports(ops::Linear{.out = fp32, .inp = fp32, .weight = w}));
    EXPECT_TRUE(backend.supports(
        ops::ExpertLinear{.out = fp32, .inp = fp32, .weight = w, .offsets = ids}));
    EXPECT_FALSE(backend.supports(ops::Linear{.out = w, .inp = fp32, .weight = w}));
    EXPECT_FALSE(backend.supports(ops::Linear{.out = fp32, .inp = w, .weight = fp32}));
    EXPECT_FALSE(
        backend.supports(ops::Linear{.out = fp32, .inp = fp32, .weight = fp32, .bias = w}));
    EXPECT_FALSE(backend.supports(ops::LinearBackward{
        .dinp = fp32, .dweight = fp32, .dout = fp32, .inp = fp32, .weight = w}));
    EXPECT_FALSE(backend.supports(ops::ExpertLinearBackward{
        .dweight = fp32, .dout = fp32, .inp = fp32, .weight = w, .offsets = ids}));
    EXPECT_FALSE(
        backend.supports(ops::LinearGelu{.pre = fp32, .out = fp32, .inp = fp32, .weight = w}));
  }
  EXPECT_FALSE(backend.supports(ops::Linear{.out = fp32, .inp = fp32, .weight = fp16}));
  EXPECT_TRUE(backend.supports(ops::Embedding{.out = fp32, .ids = ids, .table = bf16}));
  EXPECT_FALSE(backend.supports(ops::Embedding{.out = fp32, .ids = ids, .table = mx}));
  EXPECT_FALSE(backend.supports(ops::Embedding{.out = bf16, .ids = ids, .table = bf16}));
  EXPECT_FALSE(backend.supports(ops::Gelu{.out = bf16, .inp = bf16}));
}

TEST(QuantizedWeightOps, BadInferenceWeightsAreErrorsNamingTheOpAndOperand) {
  CpuBackend backend;
  const int N = 2, C = 64, OC = 3, E = 2;
  std::vector<float> inp = random_floats(static_cast<size_t>(N) * C, 900), out(N * OC),
                     dout(N * OC), dinp(N * C), dweight(static_cast<size_t>(E) * OC * C);
  std::vector<uint8_t> codes(static_cast<size_t>(E) * OC * C / 2), scales(E * OC * C / 32, 127);
  std::vector<uint16_t> bf16(static_cast<size_t>(E) * OC * C);
  std::vector<int32_t> offsets = {0, 1, 2};

  Tensor no_scales = Tensor::mxfp4(codes.data(), nullptr, {OC, C});
  expect_error([&] {
    backend.run(
        ops::Linear{.out = f32(out, {N, OC}), .inp = f32(inp, {N, C}), .weight = no_scales});
  }, {"cpu linear", "weight", "no scales"});
  expect_error([&] {
    backend.run(ops::ExpertLinear{.out = f32(out, {N, OC}), .inp = f32(inp, {N, C}),
                                  .weight = Tensor::mxfp4(codes.data(), nullptr, {E, OC, C}),
                                  .offsets = i32(offsets, {E + 1})});
  }, {"cpu expert_linear", "weight", "no scales"});

  // C = 48: not whole blocks (Tensor::mxfp4 refuses it, so the tensor is laid out by hand).
  std::vector<float> inp48(N * 48);
  Tensor partial = Tensor::dense(codes.data(), DType::kMXFP4, {OC, 48});
  partial.scales = scales.data();
  expect_error([&] {
    backend.run(
        ops::Linear{.out = f32(out, {N, OC}), .inp = f32(inp48, {N, 48}), .weight = partial});
  }, {"cpu linear", "weight", "multiple of 32"});
  Tensor partial_experts = Tensor::dense(codes.data(), DType::kMXFP4, {E, OC, 48});
  partial_experts.scales = scales.data();
  expect_error([&] {
    backend.run(ops::ExpertLinear{.out = f32(out, {N, OC}), .inp = f32(inp48, {N, 48}),
                                  .weight = partial_experts, .offsets = i32(offsets, {E + 1})});
  }, {"cpu expert_linear", "weight", "multiple of 32"});

  std::vector<uint16_t> fp16(static_cast<size_t>(OC) * C);
  expect_error([&] {
    backend.run(ops::Linear{.out = f32(out, {N, OC}), .inp = f32(inp, {N, C}),
                            .weight = Tensor::dense(fp16.data(), DType::kF16, {OC, C})});
  }, {"cpu linear", "weight", "fp32, bf16 or mxfp4", "fp16"});

  // No backward pass over inference weights.
  expect_error([&] {
    backend.run(ops::LinearBackward{.dinp = f32(dinp, {N, C}), .dweight = f32(dweight, {OC, C}),
                                    .dout = f32(dout, {N, OC}), .inp = f32(inp, {N, C}),
                                    .weight = Tensor::dense(bf16.data(), DType::kBF16, {OC, C})});
  }, {"cpu linear_backward", "weight", "bf16", "no backward pass"});
  expect_error([&] {
    backend.run(ops::ExpertLinearBackward{
        .dweight = f32(dweight, {E, OC, C}), .dout = f32(dout, {N, OC}), .inp = f32(inp, {N, C}),
        .weight = Tensor::mxfp4(codes.data(), scales.data(), {E, OC, C}),
        .offsets = i32(offsets, {E + 1})});
  }, {"cpu expert_linear_backward", "weight", "mxfp4", "no backward pass"});
}

}  // namespace
}  // namespace switchyard::backend::cpu
