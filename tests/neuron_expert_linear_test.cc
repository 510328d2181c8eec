// The trn*-sim backend's grouped expert products (expert_linear_kernel.h) against the CPU kernel
// templates (backend/cpu/expert_linear_kernels.h) run in double on the same rounded inputs: fp32
// tensors with fp32 compute agree to fp32 rounding, bf16 ones with bf16 compute to bf16 rounding.
// Shapes are odd on purpose: C and OC not multiples of 128, an expert without rows, one with more
// than 128 rows and one with more than a pass (512 rows), MXFP4 contractions of more than 128
// blocks. MXFP4 weights are decoded on the chip exactly: mxfp4_decode gives core/dtype.h's
// decode_mxfp4_block bit for bit. Also: the decode instruction's rules, cost and timing-only mode;
// bad offsets; launches through the backend that leave nothing to the host.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <bit>
#include <cmath>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/expert_linear_kernels.h"
#include "backend/neuron/expert_linear_kernel.h"
#include "core/rng.h"
#include "device_tensors.h"
#include "expect_error.h"
#include "neuron/config.h"
#include "neuron/cost_model.h"
#include "neuron_test_tensors.h"
#include "relative_error.h"

namespace switchyard::backend::neuron {
namespace {

namespace cpu = ::switchyard::backend::cpu;
using ::switchyard::neuron::CoreConfig;
using ::switchyard::neuron::ExecutionMode;
using ::switchyard::neuron::Host;
using ::switchyard::neuron::random_tensor;
using ::switchyard::neuron::read;
using ::switchyard::neuron::trn1_config;
using ::switchyard::neuron::trn2_config;

struct Mode {
  DType act, compute;
  double tol;
  const char* name;
};
constexpr Mode kFp32{DType::kF32, DType::kF32, 1e-5, "fp32"};
constexpr Mode kBf16{DType::kBF16, DType::kBF16, 2e-2, "bf16"};

// E experts of OC outputs and C inputs; rows[e] rows for expert e.
struct Shape {
  int64_t E, OC, C;
  std::vector<int64_t> rows;
  bool bias;
};

std::vector<int64_t> offsets_of(const std::vector<int64_t>& rows) {
  std::vector<int64_t> offsets{0};
  for (int64_t r : rows) offsets.push_back(offsets.back() + r);
  return offsets;
}

std::vector<int32_t> narrow(const std::vector<int64_t>& v) { return {v.begin(), v.end()}; }

std::string describe(const Mode& mode, const Shape& s) {
  return fmt::format("{} E={} OC={} C={} rows={} bias={}", mode.name, s.E, s.OC, s.C,
                     fmt::join(s.rows, ","), s.bias);
}

// MXFP4 weights of `rows` rows of C values: any code byte, scales from 2^-8 to 2^3.
struct Mxfp4 {
  std::vector<uint8_t> codes, scales;  // [rows, C / 2], [rows, C / 32]
};

Mxfp4 random_mxfp4(int64_t rows, int64_t C, Rng& rng) {
  Mxfp4 w{std::vector<uint8_t>(static_cast<size_t>(rows * C / 2)),
          std::vector<uint8_t>(static_cast<size_t>(rows * C / 32))};
  for (uint8_t& b : w.codes) b = static_cast<uint8_t>(rng.next_u64());
  for (uint8_t& s : w.scales) s = static_cast<uint8_t>(119 + rng.next_u64() % 12);
  return w;
}

// The values as the CPU decodes them.
std::vector<float> decoded(const Mxfp4& w) {
  std::vector<float> values(w.scales.size() * 32);
  for (size_t b = 0; b < w.scales.size(); ++b)
    decode_mxfp4_block(&w.codes[b * 16], w.scales[b], &values[b * 32]);
  return values;
}

View byte_tensor(NeuronCore& core, const std::vector<uint8_t>& bytes,
                 const std::vector<int64_t>& shape, const std::string& name) {
  View v = core.hbm_alloc(shape, DType::kU8, name);
  core.write(v, std::vector<float>(bytes.begin(), bytes.end()));
  return v;
}

// Expert weights on the core (dense in `dtype`, or MXFP4) and their values as the CPU sees them.
ExpertWeights make_weights(NeuronCore& core, const Shape& s, bool mxfp4, DType dtype, Rng& rng,
                           Host& values) {
  ExpertWeights w;
  w.experts = s.E;
  w.out_features = s.OC;
  w.in_features = s.C;
  if (!mxfp4) {
    w.dense = random_tensor(core, {s.E * s.OC, s.C}, dtype, "weight", rng, 0.1f);
    values = read(core, w.dense);
    return w;
  }
  const Mxfp4 m = random_mxfp4(s.E * s.OC, s.C, rng);
  w.codes = byte_tensor(core, m.codes, {s.E * s.OC, s.C / 2}, "codes");
  w.scales = byte_tensor(core, m.scales, {s.E * s.OC, s.C / 32}, "scales");
  const std::vector<float> v = decoded(m);
  values.assign(v.begin(), v.end());
  return w;
}

void check_forward(const CoreConfig& config, const Mode& mode, const Shape& s, bool mxfp4) {
  SCOPED_TRACE(describe(mode, s) + (mxfp4 ? " mxfp4" : ""));
  NeuronCore core(config);
  Rng rng(41);
  const std::vector<int64_t> offsets = offsets_of(s.rows);
  const int64_t A = offsets.back();
  const View inp = random_tensor(core, {A, s.C}, mode.act, "inp", rng, 1.0f);
  const View out = core.hbm_alloc({A, s.OC}, mode.act, "out");
  Host weight;
  const ExpertWeights w = make_weights(core, s, mxfp4, mode.act, rng, weight);
  const View bias = s.bias ? random_tensor(core, {s.E, s.OC}, DType::kF32, "bias", rng, 1.0f) : View();
  expert_linear_forward(core, out, inp, w, bias, offsets, mode.compute);

  const Host x = read(core, inp), b = s.bias ? read(core, bias) : Host();
  Host ref(static_cast<size_t>(A * s.OC));
  const std::vector<int32_t> o = narrow(offsets);
  cpu::expert_linear_forward<double>(ref.data(), x.data(), weight.data(),
                                     s.bias ? b.data() : nullptr, o.data(), static_cast<int>(s.E),
                                     static_cast<int>(s.C), static_cast<int>(s.OC), false);
  EXPECT_LT(relative_error(read(core, out), ref), mode.tol);
}

TEST(NeuronExpertLinear, DenseForwardMatchesCpuReference) {
  check_forward(trn2_config(), kFp32, {3, 130, 150, {5, 0, 140}, true}, false);
  check_forward(trn2_config(), kFp32, {2, 70, 200, {0, 9}, false}, false);
  check_forward(trn2_config(), kBf16, {3, 130, 150, {140, 0, 3}, true}, false);
}

TEST(NeuronExpertLinear, Mxfp4ForwardMatchesCpuReference) {
  // 3 blocks as 12 quarter runs on 12 lanes; two passes of rows for the last expert; a feature
  // step of 128 + 72.
  check_forward(trn2_config(), kFp32, {3, 200, 96, {3, 0, 530}, true}, true);
  // 130 blocks as 520 quarter runs: five lane tiles, some holding runs of two quarters, all
  // accumulating into one group.
  check_forward(trn2_config(), kBf16, {4, 130, 4160, {2, 0, 0, 5}, false}, true);
  // 60 blocks as 120 half runs, on trn1's smaller SBUF in fp32; 600 features: steps of 512 + 88.
  check_forward(trn1_config(), kFp32, {2, 600, 1920, {1, 150}, true}, true);
  // 128 whole blocks: one full lane tile.
  check_forward(trn2_config(), kFp32, {2, 40, 4096, {3, 2}, true}, true);
}

TEST(NeuronExpertLinear, Mxfp4DecodedWeightsAreExactInBf16) {
  // bf16 inputs times exactly decoded weights, summed in fp32: only the bf16 output rounds.
  check_forward(trn2_config(), {DType::kBF16, DType::kBF16, 4e-3, "bf16"},
                {2, 64, 320, {7, 40}, true}, true);
}

void check_backward(const Mode& mode, const Shape& s, bool dinp_wanted) {
  SCOPED_TRACE(describe(mode, s) + (dinp_wanted ? " with dinp" : ""));
  NeuronCore core(trn2_config());
  Rng rng(43);
  const std::vector<int64_t> offsets = offsets_of(s.rows);
  const int64_t A = offsets.back();
  const View inp = random_tensor(core, {A, s.C}, mode.act, "inp", rng, 1.0f);
  const View dout = random_tensor(core, {A, s.OC}, mode.act, "dout", rng, 1.0f);
  Host weight;
  const ExpertWeights w = make_weights(core, s, false, mode.act, rng, weight);
  // Gradients hold earlier values: the backward pass adds to them.
  const View dinp = dinp_wanted ? random_tensor(core, {A, s.C}, mode.act, "dinp", rng, 1.0f) : View();
  const View dweight = random_tensor(core, {s.E * s.OC, s.C}, DType::kF32, "dweight", rng, 1.0f);
  const View dbias = s.bias ? random_tensor(core, {s.E, s.OC}, DType::kF32, "dbias", rng, 1.0f) : View();
  Host ref_dinp = dinp_wanted ? read(core, dinp) : Host();
  Host ref_dweight = read(core, dweight);
  Host ref_dbias = s.bias ? read(core, dbias) : Host();
  const Host x = read(core, inp), d = read(core, dout);
  expert_linear_backward(core, dinp, dweight, dbias, dout, inp, w, offsets, mode.compute);

  const std::vector<int32_t> o = narrow(offsets);
  cpu::expert_linear_backward<double>(dinp_wanted ? ref_dinp.data() : nullptr, ref_dweight.data(),
                                      s.bias ? ref_dbias.data() : nullptr, d.data(), x.data(),
                                      weight.data(), o.data(), static_cast<int>(s.E),
                                      static_cast<int>(s.C), static_cast<int>(s.OC));
  EXPECT_LT(relative_error(read(core, dweight), ref_dweight), mode.tol);
  if (dinp_wanted) {
    EXPECT_LT(relative_error(read(core, dinp), ref_dinp), mode.tol);
  }
  if (s.bias) {
    EXPECT_LT(relative_error(read(core, dbias), ref_dbias), mode.tol);
  }
}

TEST(NeuronExpertLinear, BackwardAccumulatesLikeCpuReference) {
  check_backward(kFp32, {3, 130, 150, {5, 0, 140}, true}, true);
  check_backward(kFp32, {2, 70, 200, {0, 9}, false}, false);
  check_backward(kBf16, {3, 130, 150, {140, 0, 3}, true}, true);
}

TEST(NeuronExpertLinear, Mxfp4WeightsHaveNoBackwardPass) {
  NeuronCore core(trn2_config());
  Rng rng(44);
  const Shape s{2, 8, 32, {1, 1}, false};
  Host values;
  const ExpertWeights w = make_weights(core, s, true, DType::kF32, rng, values);
  const View x = core.hbm_alloc({2, 32}, DType::kF32, "inp");
  const View d = core.hbm_alloc({2, 8}, DType::kF32, "dout");
  const View dw = core.hbm_alloc({16, 32}, DType::kF32, "dweight");
  expect_error([&] { expert_linear_backward(core, View(), dw, View(), d, x, w, offsets_of(s.rows), DType::kF32); },
               {"expert_linear_backward", "MXFP4", "frozen"});
}

TEST(NeuronExpertLinear, OffsetsThatDoNotSplitTheRowsAreNamed) {
  EXPECT_EQ(offsets_problem(std::vector<int64_t>{0, 2, 2, 5}, 3, 5), "");
  EXPECT_NE(offsets_problem(std::vector<int64_t>{0, 2, 5}, 3, 5).find("E + 1 = 4"), std::string::npos);
  EXPECT_NE(offsets_problem(std::vector<int64_t>{1, 2, 2, 5}, 3, 5).find("offsets[0] = 0"),
            std::string::npos);
  EXPECT_NE(offsets_problem(std::vector<int64_t>{0, 3, 2, 5}, 3, 5).find("offsets[2] = 2"),
            std::string::npos);
  EXPECT_NE(offsets_problem(std::vector<int64_t>{0, 2, 2, 4}, 3, 5).find("row count 5"),
            std::string::npos);
}

// One MXFP4 forward on a fresh core: its statistics.
::switchyard::neuron::RunStats mxfp4_stats(const Shape& s) {
  NeuronCore core(trn2_config());
  Rng rng(52);
  Host values;
  const ExpertWeights w = make_weights(core, s, true, DType::kBF16, rng, values);
  const std::vector<int64_t> offsets = offsets_of(s.rows);
  const int64_t A = offsets.back();
  const View inp = random_tensor(core, {A, s.C}, DType::kBF16, "inp", rng, 1.0f);
  const View out = core.hbm_alloc({A, s.OC}, DType::kBF16, "out");
  const View bias = random_tensor(core, {s.E, s.OC}, DType::kF32, "bias", rng, 1.0f);
  expert_linear_forward(core, out, inp, w, bias, offsets, DType::kBF16);
  return core.stats();
}

TEST(NeuronExpertLinear, Mxfp4WeightsStreamOnceAndExpertsWithoutRowsCostNothing) {
  // 128 blocks: whole blocks, one lane tile, so each scale byte is read once.
  const Shape s{3, 40, 4096, {2, 0, 3}, true};
  const auto stats = mxfp4_stats(s);
  const int64_t experts_with_rows = 2, A = 5;
  const int64_t weights = experts_with_rows * s.OC * (s.C / 2 + s.C / 32);
  const int64_t inputs = A * s.C * 2;                      // bf16
  const int64_t bias = experts_with_rows * s.OC * 4;       // each expert's bias row, fp32
  EXPECT_EQ(stats.hbm_read_bytes, weights + inputs + bias);
  EXPECT_EQ(stats.hbm_write_bytes, A * s.OC * 2);
  // Experts without rows issue nothing: the same work as without them.
  const auto fewer = mxfp4_stats({2, 40, 4096, {2, 3}, true});
  EXPECT_EQ(stats.instructions, fewer.instructions);
  EXPECT_EQ(stats.total_ns, fewer.total_ns);
}

// ---- The decode instruction.

// Every code byte in 8 partitions of 64 bytes (128 values each), with scales that reach both
// ends of E8M0 (2^-127, 2^127) and its NaN.
struct DecodeCase {
  std::vector<uint8_t> codes, scales;
};

DecodeCase decode_case(int64_t runs) {
  DecodeCase c{std::vector<uint8_t>(8 * 64), std::vector<uint8_t>(static_cast<size_t>(8 * runs))};
  for (size_t i = 0; i < c.codes.size(); ++i) c.codes[i] = static_cast<uint8_t>(i * 37 + i / 256);
  const uint8_t special[] = {0, 1, 100, 126, 127, 128, 200, 254, 255};
  for (size_t i = 0; i < c.scales.size(); ++i) c.scales[i] = special[i % 9];
  return c;
}

// What decode_mxfp4_block gives for value v of partition p when each scale covers `run` values.
float cpu_value(const DecodeCase& c, int64_t p, int64_t v, int64_t run) {
  const int64_t runs = 128 / run;
  uint8_t block[16];
  for (int i = 0; i < 16; ++i) block[i] = c.codes[p * 64 + (v / 32) * 16 + i];
  float values[32];
  decode_mxfp4_block(block, c.scales[p * runs + v / run], values);
  // decode_mxfp4_block scales a whole block by one byte: take the value from a block decoded
  // with this value's scale.
  return values[v % 32];
}

void check_decode(DType out_dtype, int64_t run, Engine engine) {
  SCOPED_TRACE(fmt::format("{} run {} on {}", dtype_name(out_dtype), run, ::switchyard::neuron::engine_name(engine)));
  NeuronCore core(trn2_config());
  const DecodeCase c = decode_case(128 / run);
  const View codes_hbm = byte_tensor(core, c.codes, {8, 64}, "codes");
  const View scales_hbm = byte_tensor(core, c.scales, {8, 128 / run}, "scales");
  const View codes = core.sbuf_alloc(8, {64}, DType::kU8, "codes_sb");
  const View scales = core.sbuf_alloc(8, {128 / run}, DType::kU8, "scales_sb");
  const View out = core.sbuf_alloc(8, {128}, out_dtype, "out");
  core.dma_copy(codes, codes_hbm);
  core.dma_copy(scales, scales_hbm);
  core.mxfp4_decode(out, codes, scales, engine);
  const std::vector<float> got = core.read(out);
  for (int64_t p = 0; p < 8; ++p) {
    for (int64_t v = 0; v < 128; ++v) {
      const float want = cpu_value(c, p, v, run);
      const float g = got[p * 128 + v];
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(g)) << "partition " << p << " value " << v;
      } else {
        EXPECT_EQ(std::bit_cast<uint32_t>(g), std::bit_cast<uint32_t>(want))
            << "partition " << p << " value " << v << ": " << g << " vs " << want;
      }
    }
  }
}

TEST(NeuronMxfp4Decode, GivesTheCpuValuesBitForBit) {
  check_decode(DType::kBF16, 32, Engine::kVector);
  check_decode(DType::kF32, 32, Engine::kGpSimd);
  check_decode(DType::kBF16, 8, Engine::kGpSimd);  // runs shorter than a block
}

TEST(NeuronMxfp4Decode, KeepsTheRules) {
  NeuronCore core(trn2_config());
  const View codes = core.sbuf_alloc(4, {16}, DType::kU8, "codes");
  const View scales = core.sbuf_alloc(4, {1}, DType::kU8, "scales");
  const View out = core.sbuf_alloc(4, {32}, DType::kBF16, "out");
  const View floats = core.sbuf_alloc(4, {16}, DType::kF32, "floats");
  const View acc = core.psum_alloc(4, {32}, DType::kF32, "acc");
  const View ints = core.sbuf_alloc(4, {32}, DType::kI32, "ints");
  expect_error([&] { core.mxfp4_decode(out, floats, scales); }, {"mxfp4_decode", "uint8"});
  expect_error([&] { core.mxfp4_decode(ints, codes, scales); }, {"mxfp4_decode", "float type"});
  expect_error([&] { core.mxfp4_decode(out.cols(0, 30), codes, scales); },
               {"mxfp4_decode", "one byte per two values"});
  expect_error([&] { core.mxfp4_decode(out.cols(0, 30), codes.cols(0, 15), scales.broadcast(0, 4)); },
               {"mxfp4_decode", "even length"});
  expect_error([&] { core.mxfp4_decode(acc, codes, scales); }, {"mxfp4_decode", "SBUF"});
  expect_error([&] { core.mxfp4_decode(out, codes, scales, Engine::kScalar); },
               {"mxfp4_decode", "ScalarE cannot run"});
  expect_error([&] { core.mxfp4_decode(out.rows(0, 2), codes, scales); },
               {"mxfp4_decode", "same partitions"});
  // TensorE takes no integer tiles: codes must be decoded first.
  const View pe = core.psum_alloc(16, {16}, DType::kF32, "pe");
  expect_error([&] { core.matmul(pe, codes, codes, true, true); }, {"matmul", "not int32 or uint8"});
}

TEST(NeuronMxfp4Decode, CostsThreeElementPasses) {
  NeuronCore core(trn2_config());
  const View codes = core.sbuf_alloc(128, {2048}, DType::kU8, "codes");
  const View scales = core.sbuf_alloc(128, {128}, DType::kU8, "scales");
  const View out = core.sbuf_alloc(128, {4096}, DType::kBF16, "out");
  const CoreConfig& c = core.config();
  const int64_t passes = ::switchyard::neuron::cost::kMxfp4DecodePasses;
  core.mxfp4_decode(out, codes, scales, Engine::kVector);
  const auto& vector = core.last_timing();
  EXPECT_DOUBLE_EQ(vector.end_ns - vector.start_ns, passes * 4096 / c.vector_ghz);
  core.mxfp4_decode(out, codes, scales, Engine::kGpSimd);
  const auto& gpsimd = core.last_timing();
  EXPECT_DOUBLE_EQ(gpsimd.end_ns - gpsimd.start_ns, (150 + passes * 4096) / c.gpsimd_ghz);
}

// ---- Timing-only mode: the same instructions and simulated times without arithmetic.

struct CoreRun {
  ::switchyard::neuron::RunStats stats;
  std::string trace;
};

template <typename Kernel>
CoreRun run_on_core(ExecutionMode mode, Kernel&& kernel) {
  NeuronCore core(trn2_config(), mode);
  core.record_trace(true);
  kernel(core);
  const std::string path = ::testing::TempDir() + "expert_linear_trace.json";
  core.write_trace(path);
  std::ifstream in(path);
  return {core.stats(), std::string(std::istreambuf_iterator<char>(in), {})};
}

TEST(NeuronExpertLinear, TimingOnlyTimesMxfp4AsFunctional) {
  auto kernel = [](NeuronCore& core) {
    const Shape s{3, 200, 4160, {2, 0, 20}, true};
    Rng rng(45);
    Host values;
    const ExpertWeights w = make_weights(core, s, true, DType::kBF16, rng, values);
    const View inp = random_tensor(core, {22, s.C}, DType::kBF16, "inp", rng, 1.0f);
    const View out = core.hbm_alloc({22, s.OC}, DType::kBF16, "out");
    const View bias = random_tensor(core, {s.E, s.OC}, DType::kF32, "bias", rng, 1.0f);
    expert_linear_forward(core, out, inp, w, bias, offsets_of(s.rows), DType::kBF16);
  };
  const CoreRun functional = run_on_core(ExecutionMode::kFunctional, kernel);
  const CoreRun timing = run_on_core(ExecutionMode::kTimingOnly, kernel);
  EXPECT_GT(functional.stats.total_ns, 0.0);
  EXPECT_EQ(timing.stats.total_ns, functional.stats.total_ns);
  EXPECT_EQ(timing.stats.instructions, functional.stats.instructions);
  EXPECT_EQ(timing.stats.hbm_read_bytes, functional.stats.hbm_read_bytes);
  ASSERT_EQ(timing.stats.engines.size(), functional.stats.engines.size());
  for (size_t e = 0; e < functional.stats.engines.size(); ++e)
    EXPECT_EQ(timing.stats.engines[e].busy_ns, functional.stats.engines[e].busy_ns);
  EXPECT_NE(functional.trace.find("expert_linear_mxfp4.mxfp4_decode"), std::string::npos);
  EXPECT_EQ(timing.trace, functional.trace);
}

// ---- Through the trn*-sim backend.

// MXFP4 expert weights in a backend's memory.
struct DeviceMxfp4 {
  DeviceMxfp4(Backend& b, const Mxfp4& m, int64_t E, int64_t OC, int64_t C)
      : backend(b), codes(b.allocate(m.codes.size())), scales(b.allocate(m.scales.size())) {
    b.copy_to_device(codes, m.codes.data(), m.codes.size());
    b.copy_to_device(scales, m.scales.data(), m.scales.size());
    tensor = Tensor::mxfp4(codes, static_cast<const uint8_t*>(scales), {E, OC, C});
  }
  ~DeviceMxfp4() {
    backend.release(codes);
    backend.release(scales);
  }
  Backend& backend;
  void* codes;
  void* scales;
  Tensor tensor;
};

std::vector<float> normals(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = rng.normal();
  return v;
}

TEST(NeuronExpertLinear, Mxfp4LaunchRunsOnTheSimulatedClockAndMatchesTheCpu) {
  const int64_t E = 4, OC = 96, C = 160, A = 9;
  const std::vector<int32_t> offsets{0, 3, 3, 3, 9};
  Rng rng(46);
  const Mxfp4 m = random_mxfp4(E * OC, C, rng);
  const std::vector<float> x = normals(A * C, 47), b = normals(E * OC, 48);
  auto run = [&](Backend& device, DType act) {
    DeviceMxfp4 w(device, m, E, OC, C);
    DeviceTensor inp(device, act, {A, C}, x), out(device, act, {A, OC});
    DeviceTensor bias(device, DType::kF32, {E, OC}, b), off(device, offsets);
    const ops::ExpertLinear op{.out = out.tensor(), .inp = inp.tensor(), .weight = w.tensor,
                               .bias = bias.tensor(), .offsets = off.tensor()};
    device.run(op);
    return out.read();
  };
  auto sim = create_backend("trn2-sim");
  auto cpu_backend = create_backend("cpu");
  const double before = sim->simulator()->simulation_report().total_ns;
  const std::vector<float> got = run(*sim, DType::kBF16);
  const SimulationReport after = sim->simulator()->simulation_report();
  EXPECT_GT(after.total_ns, before);
  EXPECT_TRUE(after.unsimulated_ops.empty());
  // The CPU gets the inputs as the simulator held them (bf16).
  std::vector<float> rounded = x;
  for (float& v : rounded) v = bf16_to_float(float_to_bf16(v));
  std::vector<float> want;
  {
    DeviceMxfp4 w(*cpu_backend, m, E, OC, C);
    DeviceTensor inp(*cpu_backend, DType::kF32, {A, C}, rounded), out(*cpu_backend, DType::kF32, {A, OC});
    DeviceTensor bias(*cpu_backend, DType::kF32, {E, OC}, b), off(*cpu_backend, offsets);
    cpu_backend->run(ops::ExpertLinear{.out = out.tensor(), .inp = inp.tensor(), .weight = w.tensor,
                                       .bias = bias.tensor(), .offsets = off.tensor()});
    want = out.read();
  }
  EXPECT_LT(relative_error(got, want), 4e-3);
}

TEST(NeuronExpertLinear, BackendSupportsMxfp4ForwardOnly) {
  auto sim = create_backend("trn2-sim");
  const DType forward[] = {DType::kBF16, DType::kBF16, DType::kMXFP4, DType::kF32, DType::kI32};
  const DType dense[] = {DType::kBF16, DType::kBF16, DType::kBF16, DType::kF32, DType::kI32};
  EXPECT_TRUE(sim->supports(OpKind::kExpertLinear, forward));
  EXPECT_TRUE(sim->supports(OpKind::kExpertLinear, dense));
  const DType backward[] = {DType::kBF16, DType::kF32, DType::kF32, DType::kBF16,
                            DType::kBF16, DType::kMXFP4, DType::kI32};
  EXPECT_FALSE(sim->supports(OpKind::kExpertLinearBackward, backward));
  const DType trainable[] = {DType::kBF16, DType::kF32, DType::kF32, DType::kBF16,
                             DType::kBF16, DType::kF32, DType::kI32};
  EXPECT_TRUE(sim->supports(OpKind::kExpertLinearBackward, trainable));
}

// One ExpertLinear with MXFP4 weights on `device`; returns the simulated time it took.
double mxfp4_launch(const std::string& device, const std::vector<int32_t>& offsets) {
  const int64_t E = 3, OC = 64, C = 96, A = 6;
  auto sim = create_backend(device);
  Rng rng(49);
  DeviceMxfp4 w(*sim, random_mxfp4(E * OC, C, rng), E, OC, C);
  DeviceTensor inp(*sim, DType::kBF16, {A, C}, normals(A * C, 50)), out(*sim, DType::kBF16, {A, OC});
  DeviceTensor off(*sim, offsets);
  sim->run(ops::ExpertLinear{.out = out.tensor(), .inp = inp.tensor(), .weight = w.tensor,
                             .bias = {}, .offsets = off.tensor()});
  const SimulationReport report = sim->simulator()->simulation_report();
  EXPECT_TRUE(report.unsimulated_ops.empty());
  return report.total_ns;
}

TEST(NeuronExpertLinear, TimingOnlyBackendTimesAnMxfp4LaunchAsFunctional) {
  const std::vector<int32_t> offsets{0, 4, 4, 6};
  const double functional = mxfp4_launch("trn2-sim", offsets);
  EXPECT_GT(functional, 0.0);
  EXPECT_EQ(mxfp4_launch("trn2-sim:timing", offsets), functional);
}

TEST(NeuronExpertLinear, BadOffsetsAreAnErrorAndAStandInWhenOnlyTiming) {
  expect_error([&] { mxfp4_launch("trn2-sim", {0, 4, 3, 6}); },
               {"trn2-sim expert_linear", "offsets", "decrease"});
  expect_error([&] { mxfp4_launch("trn2-sim", {0, 1, 2, 5}); },
               {"trn2-sim expert_linear", "offsets", "row count 6"});
  // Timing-only: a routing kernel that computed nothing leaves zeros; the rows are timed spread
  // over the first experts, as valid offsets that do so time.
  EXPECT_EQ(mxfp4_launch("trn2-sim:timing", {0, 0, 0, 0}), mxfp4_launch("trn2-sim:timing", {0, 2, 4, 6}));
}

TEST(NeuronExpertLinear, BackendRefusesTheBackwardPassOfMxfp4Weights) {
  auto sim = create_backend("trn2-sim");
  Rng rng(51);
  DeviceMxfp4 w(*sim, random_mxfp4(2 * 8, 32, rng), 2, 8, 32);
  DeviceTensor inp(*sim, DType::kBF16, {2, 32}), dout(*sim, DType::kBF16, {2, 8});
  DeviceTensor dweight(*sim, DType::kF32, {2, 8, 32});
  DeviceTensor off(*sim, std::vector<int32_t>{0, 1, 2});
  expect_error([&] {
    sim->run(ops::ExpertLinearBackward{.dinp = {}, .dweight = dweight.tensor(), .dbias = {},
                                       .dout = dout.tensor(),
                                       .inp = inp.tensor(), .weight = w.tensor,
                                       .offsets = off.tensor()});
  }, {"trn2-sim expert_linear_backward", "MXFP4", "frozen"});
}

}  // namespace
}  // namespace switchyard::backend::neuron
