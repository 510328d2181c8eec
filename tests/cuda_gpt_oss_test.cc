// gpt-oss on the CUDA backends ("cuda": bf16 mixed precision, "cuda-fp32") against the CPU
// backend: the ops the family adds (RMSNorm, RoPE, routing, grouping, the experts' products over
// fp32, bf16 and MXFP4 weights, the clamped SwiGLU, combining, the load statistics, grouped-query
// attention with windows and sinks) op by op on odd sizes, then the reference checkpoints of the
// parity suite (tests/data, tools/make_gpt_oss_reference.py) through the whole model, training
// and decoding over the paged cache, with every op on the GPU. Every test skips, saying why, on
// machines without a usable GPU or in builds without the CUDA toolkit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "device_tensors.h"
#include "gpt_oss_device_parity.h"
#include "expect_error.h"
#include "model/checkpoint.h"
#include "model/generator.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "random_data.h"
#include "relative_error.h"

namespace switchyard {
namespace {

namespace ops = backend::ops;

class CudaGptOss : public GpuAgainstCpu {
 protected:
  // Routing weights, losses and other fp32 results computed from the same inputs on both: fp32
  // arithmetic either way, summed in different orders.
  static constexpr double kFp32Results = 1e-5;

  std::vector<double> read_f64(Backend& backend, const DeviceTensor& t) {
    std::vector<double> values(static_cast<size_t>(t.tensor().numel()));
    backend.copy_to_host(values.data(), t.tensor().data, values.size() * sizeof(double));
    return values;
  }
};

// ---- normalisation and rotary embeddings ----

TEST_P(CudaGptOss, RmsNormForwardAndBackward) {
  const int N = 39, C = 90;
  auto inp = act({N, C}, random_floats(N * C, 200, 2.0f, 0.5f));
  auto w = fp32({C}, random_floats(C, 201, 0.5f, 1.0f));
  auto out = act({N, C}, std::vector<float>(N * C)), rstd = fp32({N}, std::vector<float>(N));
  run_both([&](auto on) {
    return ops::RmsNorm{.out = on(out), .rstd = on(rstd), .inp = on(inp), .weight = on(w)};
  });
  EXPECT_LT(measured("out", out.error()), tol());
  EXPECT_LT(measured("rstd", rstd.error()), kFp32Results);
  auto dout = act({N, C}, random_floats(N * C, 202));
  auto dinp = act({N, C}, random_floats(N * C, 203));  // both gradients accumulate
  auto dw = fp32({C}, random_floats(C, 204));
  run_both([&](auto on) {
    return ops::RmsNormBackward{.dinp = on(dinp),
                                .dweight = on(dw),
                                .dout = on(dout),
                                .inp = on(inp),
                                .weight = on(w),
                                .rstd = on(rstd)};
  });
  EXPECT_LT(measured("dinp", dinp.error()), tol());
  EXPECT_LT(measured("dw", dw.error()), tol());
}

// q and k of a packed projection (q | k | v per row), rotated by the rows' positions and back.
TEST_P(CudaGptOss, RopeRotatesQueriesAndKeysInPlace) {
  const int N = 21, H = 6, KV = 2, hd = 16, P = 40;
  const int64_t width = int64_t{H + 2 * KV} * hd;
  auto proj = act({N, width}, random_floats(N * width, 210, 2.0f));
  std::vector<float> cos_values, sin_values;
  for (int p = 0; p < P; ++p) {
    for (int i = 0; i < hd / 2; ++i) {  // a rotation scaled by a YaRN-like attention factor
      const double angle = p / std::pow(150000.0, 2.0 * i / hd);
      cos_values.push_back(static_cast<float>(1.2 * std::cos(angle)));
      sin_values.push_back(static_cast<float>(1.2 * std::sin(angle)));
    }
  }
  auto cos = fp32({P, hd / 2}, cos_values), sin = fp32({P, hd / 2}, sin_values);
  auto positions = ids(random_tokens(N, P, 211));
  for (const bool transpose : {false, true}) {
    SCOPED_TRACE(transpose ? "transposed" : "forward");
    run_both([&](auto on) {
      return ops::Rope{.x = heads_view(on(proj), 0, H + KV, hd),
                       .cos = on(cos),
                       .sin = on(sin),
                       .positions = on(positions),
                       .transpose = transpose};
    });
    EXPECT_LT(measured("proj", proj.error()), tol());
  }
}

// ---- the mixture of experts ----

// Router logits with ties (every third one on a grid of integers): both backends choose the same
// experts, and group, gather, combine and count them the same way.
TEST_P(CudaGptOss, RoutingGroupingGatheringAndCombining) {
  const int N = 37, E = 5, k = 2, C = 70, A = N * k;
  std::vector<float> logit_values = random_floats(N * E, 220, 3.0f);
  for (size_t i = 0; i < logit_values.size(); i += 3) logit_values[i] = std::round(logit_values[i]);
  auto logits = act({N, E}, logit_values);
  auto expert_ids = ids(std::vector<int32_t>(A));
  auto weights = fp32({N, k}, std::vector<float>(A));
  auto choices = [&](const Tensor& t) { return t.reshape({N, k}); };
  run_both([&](auto on) {
    return ops::TopKRouting{
        .expert_ids = choices(on(expert_ids)), .weights = on(weights), .logits = on(logits)};
  });
  EXPECT_EQ(expert_ids.gpu.read_i32(), expert_ids.cpu.read_i32());
  EXPECT_LT(measured("weights", weights.error()), kFp32Results);

  auto order = ids(std::vector<int32_t>(A)), rows = ids(std::vector<int32_t>(A));
  auto position = ids(std::vector<int32_t>(A)), offsets = ids(std::vector<int32_t>(E + 1));
  run_both([&](auto on) {
    return ops::GroupByExpert{.order = on(order),
                              .rows = on(rows),
                              .position = on(position),
                              .offsets = on(offsets),
                              .expert_ids = choices(on(expert_ids)),
                              .experts = E};
  });
  EXPECT_EQ(order.gpu.read_i32(), order.cpu.read_i32());
  EXPECT_EQ(rows.gpu.read_i32(), rows.cpu.read_i32());
  EXPECT_EQ(position.gpu.read_i32(), position.cpu.read_i32());
  EXPECT_EQ(offsets.gpu.read_i32(), offsets.cpu.read_i32());

  // The rows in grouped order (a gather of activations) and back (a scatter-add onto them).
  auto x = act({N, C}, random_floats(N * C, 221));
  auto gathered = act({A, C}, std::vector<float>(A * C));
  run_both([&](auto on) {
    return ops::Embedding{.out = on(gathered), .ids = on(rows), .table = on(x)};
  });
  EXPECT_EQ(gathered.gpu.read(), gathered.cpu.read());  // a copy
  auto dgathered = act({A, C}, random_floats(A * C, 222));
  auto dx = act({N, C}, random_floats(N * C, 223));  // accumulates
  run_both([&](auto on) {
    return ops::EmbeddingBackward{.dtable = on(dx), .dout = on(dgathered), .ids = on(rows)};
  });
  EXPECT_LT(measured("dx", dx.error()), tol());

  auto expert_out = act({A, C}, random_floats(A * C, 224));
  auto combined = act({N, C}, std::vector<float>(N * C));
  run_both([&](auto on) {
    return ops::ExpertCombine{.out = on(combined),
                              .expert_out = on(expert_out),
                              .weights = on(weights),
                              .position = on(position)};
  });
  EXPECT_LT(measured("combined", combined.error()), tol());
  auto dcombined = act({N, C}, random_floats(N * C, 225));
  auto dexpert_out = act({A, C}, random_floats(A * C, 226));  // both accumulate
  auto dweights = fp32({N, k}, random_floats(A, 227));
  run_both([&](auto on) {
    return ops::ExpertCombineBackward{.dexpert_out = on(dexpert_out),
                                      .dweights = on(dweights),
                                      .dout = on(dcombined),
                                      .expert_out = on(expert_out),
                                      .weights = on(weights),
                                      .position = on(position)};
  });
  EXPECT_LT(measured("dexpert", dexpert_out.error()), tol());
  EXPECT_LT(measured("dweights", dweights.error()), kFp32Results);

  auto dlogits = act({N, E}, random_floats(N * E, 228));  // accumulates
  run_both([&](auto on) {
    return ops::TopKRoutingBackward{.dlogits = on(dlogits),
                                    .dweights = on(dweights),
                                    .weights = on(weights),
                                    .expert_ids = choices(on(expert_ids))};
  });
  EXPECT_LT(measured("dlogits", dlogits.error()), tol());

  auto totals = Pair(*gpu_, *cpu_, DType::kF64, {2, E});
  run_both([&](auto on) {
    return ops::RouterLoadStats{
        .totals = on(totals), .logits = on(logits), .expert_ids = choices(on(expert_ids))};
  });
  const std::vector<double> got = read_f64(*gpu_, totals.gpu), want = read_f64(*cpu_, totals.cpu);
  for (int e = 0; e < E; ++e) {
    EXPECT_EQ(got[e], want[e]) << "count of expert " << e;
    EXPECT_NEAR(got[E + e], want[E + e], kFp32Results * want[E + e]) << "probabilities of " << e;
  }
  run_both([&](auto on) {
    return ops::RouterLoadBackward{
        .dlogits = on(dlogits), .logits = on(logits), .totals = on(totals), .scale = 0.3f};
  });
  EXPECT_LT(measured("dlogits", dlogits.error()), tol());
}

// MXFP4 codes and scales in a backend's memory.
class DeviceBytes {
 public:
  DeviceBytes(Backend& backend, const std::vector<uint8_t>& bytes) : backend_(backend) {
    data_ = backend.allocate(std::max<size_t>(1, bytes.size()));
    backend.copy_to_device(data_, bytes.data(), bytes.size());
  }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  ~DeviceBytes() { backend_.release(data_); }
  const uint8_t* get() const { return static_cast<const uint8_t*>(data_); }

 private:
  Backend& backend_;
  void* data_ = nullptr;
};

// Experts with rows, an idle one, one with more rows than a 64-row tile, and single rows; weights
// stored as fp32, bf16 and MXFP4; then the backward pass over the products' own weights.
TEST_P(CudaGptOss, ExpertProductsOverEveryWeightFormat) {
  const int E = 5, C = 64, OC = 70;  // C a multiple of 32, as MXFP4 needs
  const std::vector<int32_t> first_rows = {0, 3, 3, 40, 41, 45};
  const int A = first_rows.back();
  auto offsets = ids(first_rows);
  auto inp = act({A, C}, random_floats(A * C, 230));
  auto bias = fp32({E, OC}, random_floats(E * OC, 231));
  auto out = act({A, OC}, std::vector<float>(A * OC));
  for (const DType stored : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(stored));
    auto w = Pair(*gpu_, *cpu_, stored, {E, OC, C}, random_floats(E * OC * C, 232, 0.2f));
    run_both([&](auto on) {
      return ops::ExpertLinear{.out = on(out),
                               .inp = on(inp),
                               .weight = on(w),
                               .bias = on(bias),
                               .offsets = on(offsets)};
    });
    EXPECT_LT(measured("out", out.error()), tol());
  }
  {
    SCOPED_TRACE("mxfp4");
    Rng rng(233);
    std::vector<uint8_t> codes(static_cast<size_t>(E) * OC * C / 2), scales(codes.size() / 16);
    for (uint8_t& b : codes) b = static_cast<uint8_t>(rng.next_u64());
    for (uint8_t& s : scales) s = static_cast<uint8_t>(120 + rng.next_u64() % 6);
    DeviceBytes gpu_codes(*gpu_, codes), gpu_scales(*gpu_, scales);
    const Tensor gpu_w = Tensor::mxfp4(gpu_codes.get(), gpu_scales.get(), {E, OC, C});
    const Tensor cpu_w = Tensor::mxfp4(codes.data(), scales.data(), {E, OC, C});
    const ops::ExpertLinear gpu_op{.out = out.gpu.tensor(),
                                   .inp = inp.gpu.tensor(),
                                   .weight = gpu_w,
                                   .bias = bias.gpu.tensor(),
                                   .offsets = offsets.gpu.tensor()};
    EXPECT_TRUE(gpu_->supports(gpu_op));
    gpu_->run(gpu_op);
    cpu_->run(ops::ExpertLinear{.out = out.cpu.tensor(),
                                .inp = inp.cpu.tensor(),
                                .weight = cpu_w,
                                .bias = bias.cpu.tensor(),
                                .offsets = offsets.cpu.tensor()});
    EXPECT_LT(measured("out", out.error()), tol());
    auto dummy = fp32({E, OC, C}, std::vector<float>(E * OC * C));
    expect_error(
        [&] {
          gpu_->run(ops::ExpertLinearBackward{.dweight = dummy.gpu.tensor(),
                                              .dout = out.gpu.tensor(),
                                              .inp = inp.gpu.tensor(),
                                              .weight = gpu_w,
                                              .offsets = offsets.gpu.tensor()});
        },
        {"cuda expert_linear_backward", "mxfp4"});
  }
  auto w = weights({E, OC, C}, random_floats(E * OC * C, 234, 0.2f));
  auto dout = act({A, OC}, random_floats(A * OC, 235));
  auto dinp = act({A, C}, random_floats(A * C, 236));  // all three accumulate
  auto dw = fp32({E, OC, C}, random_floats(E * OC * C, 237));
  auto db = fp32({E, OC}, random_floats(E * OC, 238));
  run_both([&](auto on) {
    return ops::ExpertLinearBackward{.dinp = on(dinp),
                                     .dweight = on(dw),
                                     .dbias = on(db),
                                     .dout = on(dout),
                                     .inp = on(inp),
                                     .weight = on(w),
                                     .offsets = on(offsets)};
  });
  EXPECT_LT(measured("dinp", dinp.error()), tol());
  EXPECT_LT(measured("dw", dw.error()), kFp32Results);
  EXPECT_LT(measured("db", db.error()), kFp32Results);
}

TEST_P(CudaGptOss, ClampedSwigluForwardAndBackward) {
  const int A = 45, I = 70;
  // Gates and ups on both sides of the clamps at +-7.
  auto inp = act({A, 2 * I}, random_floats(A * 2 * I, 240, 9.0f));
  auto out = act({A, I}, std::vector<float>(A * I));
  run_both([&](auto on) { return ops::ClampedSwiglu{.out = on(out), .inp = on(inp)}; });
  EXPECT_LT(measured("out", out.error()), tol());
  auto dout = act({A, I}, random_floats(A * I, 241));
  auto dinp = act({A, 2 * I}, random_floats(A * 2 * I, 242));  // accumulates
  run_both([&](auto on) {
    return ops::ClampedSwigluBackward{.dinp = on(dinp), .inp = on(inp), .dout = on(dout)};
  });
  EXPECT_LT(measured("dinp", dinp.error()), tol());
}

// ---- attention ----

// Grouped-query attention over training windows with a sliding window and sinks, forward and
// backward, for q, k and v of one packed projection as the model lays them out. Each backend keeps
// its own record (row statistics on the GPU, probabilities on the CPU).
TEST_P(CudaGptOss, GroupedQueryAttentionWithWindowAndSinks) {
  struct Case {
    int B, T, H, KV, hd, window;
    bool sinks;
  };
  for (const Case c : {Case{2, 21, 6, 2, 16, 8, true}, Case{1, 70, 4, 1, 64, 16, true},
                       Case{1, 67, 4, 2, 64, 0, false}, Case{1, 1, 2, 1, 32, 4, true}}) {
    SCOPED_TRACE(testing::Message() << "B " << c.B << " T " << c.T << " heads " << c.H << "/"
                                    << c.KV << " hd " << c.hd << " window " << c.window);
    const int64_t N = int64_t{c.B} * c.T, P = int64_t{c.H + 2 * c.KV} * c.hd;
    const int64_t width = int64_t{c.H} * c.hd;
    const ops::AttentionSpec spec{
        .heads = c.H, .kv_heads = c.KV, .head_dim = c.hd, .window = c.window};
    auto proj = act({N, P}, random_floats(N * P, 250, 2.0f));
    auto dproj = act({N, P}, random_floats(N * P, 251));
    auto out = act({N, width}, std::vector<float>(N * width));
    auto dout = act({N, width}, random_floats(N * width, 252));
    auto sinks = fp32({c.H}, random_floats(c.H, 253));
    auto dsinks = fp32({c.H}, random_floats(c.H, 254));
    auto floats = [](Backend& b, size_t n) {
      return std::make_unique<DeviceTensor>(
          b, DType::kF32, std::initializer_list<int64_t>{static_cast<int64_t>(n)});
    };
    const auto record_gpu = floats(*gpu_, gpu_->attention_record_floats(spec, c.B, c.T));
    const auto record_cpu = floats(*cpu_, cpu_->attention_record_floats(spec, c.B, c.T));
    const auto scratch_gpu = floats(*gpu_, gpu_->attention_scratch_floats(spec, c.B, c.T));
    const auto scratch_cpu = floats(*cpu_, cpu_->attention_scratch_floats(spec, c.B, c.T));
    auto view = [&](const Tensor& t, int part) {
      const int64_t col = part == 0 ? 0 : part == 1 ? width : int64_t{c.H + c.KV} * c.hd;
      return heads_view(t, col, part == 0 ? c.H : c.KV, c.hd);
    };
    auto forward = [&](Backend& b, const Tensor& o, const Tensor& x, const Tensor& s,
                       const Tensor& r) {
      b.run(ops::Attention{.out = o,
                           .record = r,
                           .q = view(x, 0),
                           .k = view(x, 1),
                           .v = view(x, 2),
                           .sinks = c.sinks ? s : Tensor{},
                           .batch = c.B,
                           .seq = c.T,
                           .spec = spec});
    };
    forward(*gpu_, out.gpu.tensor(), proj.gpu.tensor(), sinks.gpu.tensor(), record_gpu->tensor());
    forward(*cpu_, out.cpu.tensor(), proj.cpu.tensor(), sinks.cpu.tensor(), record_cpu->tensor());
    EXPECT_LT(measured("out", out.error()), tol());
    auto backward = [&](Backend& b, bool gpu, const DeviceTensor& r, const DeviceTensor& s) {
      auto on = [&](const Pair& x) { return gpu ? x.gpu.tensor() : x.cpu.tensor(); };
      b.run(ops::AttentionBackward{.dq = view(on(dproj), 0),
                                   .dk = view(on(dproj), 1),
                                   .dv = view(on(dproj), 2),
                                   .dsinks = c.sinks ? on(dsinks) : Tensor{},
                                   .scratch = s.tensor(),
                                   .dout = on(dout),
                                   .out = on(out),
                                   .record = r.tensor(),
                                   .q = view(on(proj), 0),
                                   .k = view(on(proj), 1),
                                   .v = view(on(proj), 2),
                                   .sinks = c.sinks ? on(sinks) : Tensor{},
                                   .batch = c.B,
                                   .seq = c.T,
                                   .spec = spec});
    };
    backward(*gpu_, true, *record_gpu, *scratch_gpu);
    backward(*cpu_, false, *record_cpu, *scratch_cpu);
    EXPECT_LT(measured("dproj", dproj.error()), tol());
    EXPECT_LT(measured("dsinks", dsinks.error()), tol());
  }
}

// ---- the whole model (gpt_oss_device_parity.h) ----

TEST_P(CudaGptOss, ReferenceModelTrainsAndDecodesAsOnTheCpuWithEveryOpOnTheGpu) {
  check_reference_model_trains_and_decodes(*gpu_, *cpu_, bf16());
}

TEST_P(CudaGptOss, PublishedMxfp4CheckpointRunsAsOnTheCpuWithEveryOpOnTheGpu) {
  check_published_mxfp4_checkpoint_runs(*gpu_, *cpu_, bf16());
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaGptOss, ::testing::Values("cuda-fp32", "cuda"),
                         [](const auto& info) {
                           return info.param == "cuda" ? std::string("bf16") : std::string("fp32");
                         });

}  // namespace
}  // namespace switchyard
