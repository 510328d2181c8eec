// The CUDA backends ("cuda": bf16 mixed precision, "cuda-fp32": fp32 throughout) against the CPU
// backend, op by op on awkward sizes (nothing a multiple of 32, 64 or 128), then a whole GPT-2
// step. Every test skips, saying why, on machines without a usable GPU or in builds without the
// CUDA toolkit; the one test that runs everywhere checks that message.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "device_tensors.h"
#include "expect_error.h"
#include "model/gpt2.h"
#include "random_data.h"
#include "relative_error.h"
#include "training_run.h"

namespace switchyard {
namespace {

using backend::Backend;
namespace ops = backend::ops;

TEST(CudaBackend, SaysWhyItCannotRunWhereThereIsNoGpu) {
  for (const std::string device : {"cuda", "cuda-fp32"}) {
    const std::string reason = unavailable_reason(device);
    if (reason.empty()) GTEST_SKIP() << device << " can run here";
    expect_error([&] { backend::create_backend(device); }, {device});
    EXPECT_NE(error_of([&] { backend::create_backend(device); }).find(reason), std::string::npos);
  }
}

struct QkvViews {
  Tensor q, k, v;
};
// GPT-2's packed projection [N, 3C] as q, k, v views.
QkvViews qkv_views(const Tensor& qkv, int C, int NH) {
  return {heads_view(qkv, 0, NH, C / NH), heads_view(qkv, C, NH, C / NH),
          heads_view(qkv, 2 * C, NH, C / NH)};
}

ops::AttentionSpec mha(int C, int NH) {
  return {.heads = NH, .kv_heads = NH, .head_dim = C / NH};
}

// x rounded to bf16 and widened again.
float bf16_rounded(float x) { return bf16_to_float(float_to_bf16(x)); }

class CudaKernels : public GpuAgainstCpu {};

TEST_P(CudaKernels, EncoderForwardAndBackward) {
  const int B = 3, T = 13, C = 54, V = 211;
  const int64_t N = B * T;
  // Repeated tokens, so that the scatter of the backward pass sums several positions per row.
  std::vector<int32_t> tokens = random_tokens(N, 17, 1);
  tokens[0] = V - 1;
  std::vector<int32_t> positions(N);
  for (int64_t n = 0; n < N; ++n) positions[n] = static_cast<int32_t>(n % T);  // GPT-2's
  auto tok = ids(tokens), pos = ids(positions);
  auto wte = fp32({V, C}, random_floats(V * C, 2)), wpe = fp32({T, C}, random_floats(T * C, 3));
  auto out = act({N, C}, std::vector<float>(N * C, 7.0f));
  run_both([&](auto on) {
    return ops::Embedding{.out = on(out), .ids = on(tok), .table = on(wte),
                          .position_ids = on(pos), .position_table = on(wpe)};
  });
  EXPECT_LT(measured("out", out.error()), tol());

  auto dout = act({N, C}, random_floats(N * C, 4));
  auto dwte = fp32({V, C}, random_floats(V * C, 5)), dwpe = fp32({T, C}, random_floats(T * C, 6));
  run_both([&](auto on) {  // accumulates
    return ops::EmbeddingBackward{.dtable = on(dwte), .dposition_table = on(dwpe),
                                  .dout = on(dout), .ids = on(tok), .position_ids = on(pos)};
  });
  EXPECT_LT(measured("dwte", dwte.error()), tol());
  EXPECT_LT(measured("dwpe", dwpe.error()), tol());

  // Positions of a flat batch (any order, repeated, a table of another length), and the plain
  // row gather without a position table.
  const int P = 40;
  auto scattered = ids(random_tokens(N, P, 7));
  auto table = fp32({P, C}, random_floats(P * C, 8)), dtable = fp32({P, C}, random_floats(P * C, 9));
  run_both([&](auto on) {
    return ops::Embedding{.out = on(out), .ids = on(tok), .table = on(wte),
                          .position_ids = on(scattered), .position_table = on(table)};
  });
  EXPECT_LT(measured("out", out.error()), tol());
  run_both([&](auto on) {
    return ops::EmbeddingBackward{.dtable = on(dwte), .dposition_table = on(dtable),
                                  .dout = on(dout), .ids = on(tok),
                                  .position_ids = on(scattered)};
  });
  EXPECT_LT(measured("dwte", dwte.error()), tol());
  EXPECT_LT(measured("dtable", dtable.error()), tol());
  run_both([&](auto on) {
    return ops::Embedding{.out = on(out), .ids = on(tok), .table = on(wte)};
  });
  EXPECT_LT(measured("out", out.error()), tol());
  run_both([&](auto on) {
    return ops::EmbeddingBackward{.dtable = on(dwte), .dout = on(dout), .ids = on(tok)};
  });
  EXPECT_LT(measured("dwte", dwte.error()), tol());
}

TEST_P(CudaKernels, LayernormForwardBackwardAndTheFusedResidualForm) {
  const int N = 39, C = 54;
  // A large mean: the variance must not be computed as E[x^2] - E[x]^2.
  auto inp = act({N, C}, random_floats(N * C, 10, 3.0f, 100.0f));
  auto w = fp32({C}, random_floats(C, 11)), b = fp32({C}, random_floats(C, 12));
  auto out = act({N, C}, std::vector<float>(N * C)), mean = fp32({N}, std::vector<float>(N)),
       rstd = fp32({N}, std::vector<float>(N));
  auto layernorm = [&](float epsilon) {
    run_both([&](auto on) {
      return ops::LayerNorm{.out = on(out), .mean = on(mean), .rstd = on(rstd), .inp = on(inp),
                            .weight = on(w), .bias = on(b), .epsilon = epsilon};
    });
  };
  layernorm(1e-3f);  // an epsilon of another model reaches the kernel
  EXPECT_LT(measured("rstd", rstd.error()), bf16() ? 1e-2 : 1e-5);
  layernorm(1e-5f);
  EXPECT_LT(measured("out", out.error()), tol());
  EXPECT_LT(measured("mean", mean.error()), bf16() ? 1e-2 : 1e-6);
  EXPECT_LT(measured("rstd", rstd.error()), bf16() ? 1e-2 : 1e-5);

  auto dout = act({N, C}, random_floats(N * C, 13));
  auto dinp = act({N, C}, random_floats(N * C, 14));  // accumulates
  auto dw = fp32({C}, random_floats(C, 15)), db = fp32({C}, random_floats(C, 16));
  run_both([&](auto on) {
    return ops::LayerNormBackward{.dinp = on(dinp), .dweight = on(dw), .dbias = on(db),
                                  .dout = on(dout), .inp = on(inp), .weight = on(w),
                                  .mean = on(mean), .rstd = on(rstd)};
  });
  EXPECT_LT(measured("dinp", dinp.error()), tol());
  EXPECT_LT(measured("dw", dw.error()), tol());
  EXPECT_LT(measured("db", db.error()), tol());

  auto a = act({N, C}, random_floats(N * C, 17)), bb = act({N, C}, random_floats(N * C, 18));
  auto residual = act({N, C}, std::vector<float>(N * C));
  run_both([&](auto on) {
    return ops::AddLayerNorm{.residual = on(residual), .out = on(out), .mean = on(mean),
                             .rstd = on(rstd), .a = on(a), .b = on(bb), .weight = on(w),
                             .bias = on(b)};
  });
  EXPECT_LT(measured("residual", residual.error()), tol());
  EXPECT_LT(measured("out", out.error()), tol());
}

TEST_P(CudaKernels, MatmulForwardAndBackward) {
  // The shapes of a block's products and of the vocabulary projection, at odd sizes, and one row
  // (decoding).
  for (const auto [N, C, OC] : {std::array{39, 54, 162}, std::array{39, 54, 211},
                                std::array{1, 54, 216}, std::array{77, 216, 54}}) {
    SCOPED_TRACE(testing::Message() << "N " << N << " C " << C << " OC " << OC);
    auto inp = act({N, C}, random_floats(N * C, 20)),
         w = weights({OC, C}, random_floats(OC * C, 21, 0.2f)),
         bias = fp32({OC}, random_floats(OC, 22));
    auto out = act({N, OC}, std::vector<float>(N * OC, 3.0f));
    run_both([&](auto on) {
      return ops::Linear{.out = on(out), .inp = on(inp), .weight = on(w), .bias = on(bias)};
    });
    EXPECT_LT(measured("out", out.error()), tol());
    run_both([&](auto on) { return ops::Linear{.out = on(out), .inp = on(inp), .weight = on(w)}; });
    EXPECT_LT(measured("out", out.error()), tol());

    auto dout = act({N, OC}, random_floats(N * OC, 23));
    auto dinp = act({N, C}, random_floats(N * C, 24));  // all three accumulate
    auto dw = fp32({OC, C}, random_floats(OC * C, 25)), db = fp32({OC}, random_floats(OC, 26));
    run_both([&](auto on) {
      return ops::LinearBackward{.dinp = on(dinp), .dweight = on(dw), .dbias = on(db),
                                 .dout = on(dout), .inp = on(inp), .weight = on(w)};
    });
    EXPECT_LT(measured("dinp", dinp.error()), tol());
    EXPECT_LT(measured("dw", dw.error()), tol());
    EXPECT_LT(measured("db", db.error()), tol());
    // No input gradient and no bias, as for the vocabulary projection.
    run_both([&](auto on) {
      return ops::LinearBackward{.dweight = on(dw), .dout = on(dout), .inp = on(inp),
                                 .weight = on(w)};
    });
    EXPECT_LT(measured("dw", dw.error()), tol());
  }
}

TEST_P(CudaKernels, MatmulWithGelu) {
  const int N = 39, C = 54, OC = 216;
  auto inp = act({N, C}, random_floats(N * C, 30)),
       w = weights({OC, C}, random_floats(OC * C, 31, 0.3f)),
       bias = fp32({OC}, random_floats(OC, 32));
  auto pre = act({N, OC}, std::vector<float>(N * OC)),
       out = act({N, OC}, std::vector<float>(N * OC));
  run_both([&](auto on) {
    return ops::LinearGelu{.pre = on(pre), .out = on(out), .inp = on(inp), .weight = on(w),
                           .bias = on(bias)};
  });
  EXPECT_LT(measured("pre", pre.error()), tol());
  EXPECT_LT(measured("out", out.error()), tol());
}

TEST_P(CudaKernels, WeightsChangedByAdamWReachTheProducts) {
  // The products read the weight copy the model keeps (bf16 in bf16 mode; the fp32 masters
  // themselves otherwise): AdamW must write it with every update, and a Cast after a load from the
  // host refreshes it, as the model runs them.
  const int N = 9, C = 54, OC = 30;
  auto inp = act({N, C}, random_floats(N * C, 40));
  auto w = fp32({OC, C}, random_floats(OC * C, 41)), g = fp32({OC, C}, random_floats(OC * C, 42));
  auto m = fp32({OC, C}, std::vector<float>(OC * C)), v = fp32({OC, C}, std::vector<float>(OC * C));
  auto out = act({N, OC}, std::vector<float>(N * OC));
  std::unique_ptr<DeviceTensor> copy;
  if (gpu_->precision().matmul_weights != DType::kF32) {
    copy = std::make_unique<DeviceTensor>(*gpu_, gpu_->precision().matmul_weights,
                                          std::initializer_list<int64_t>{OC, C});
  }
  const Tensor products = copy ? copy->tensor() : w.gpu.tensor();
  auto refresh_copy = [&] {
    if (copy) gpu_->run(ops::Cast{.out = copy->tensor(), .inp = w.gpu.tensor()});
  };
  auto expect_copy_current = [&] {
    if (!copy) return;
    std::vector<float> want = w.gpu.read();
    for (float& x : want) x = bf16_rounded(x);
    EXPECT_EQ(copy->read(), want);
  };
  refresh_copy();
  gpu_->run(ops::Linear{.out = out.gpu.tensor(), .inp = inp.gpu.tensor(), .weight = products});
  backend::AdamWStep step;
  step.learning_rate = 0.05f;
  step.weight_decay = 0.1f;
  gpu_->run(ops::AdamW{.params = w.gpu.flat(), .grads = g.gpu.flat(), .m = m.gpu.flat(),
                       .v = v.gpu.flat(), .params_copy = copy ? copy->flat() : Tensor{},
                       .step = step});
  cpu_->run(ops::AdamW{.params = w.cpu.flat(), .grads = g.cpu.flat(), .m = m.cpu.flat(),
                       .v = v.cpu.flat(), .step = step});
  EXPECT_LT(measured("w", w.error()), 1e-6);
  expect_copy_current();
  gpu_->run(ops::Linear{.out = out.gpu.tensor(), .inp = inp.gpu.tensor(), .weight = products});
  cpu_->run(ops::Linear{.out = out.cpu.tensor(), .inp = inp.cpu.tensor(), .weight = w.cpu.tensor()});
  EXPECT_LT(measured("out", out.error()), tol());
  // And a copy from the host (a checkpoint load) too.
  w.gpu.write(random_floats(OC * C, 43));
  w.cpu.write(random_floats(OC * C, 43));
  refresh_copy();
  expect_copy_current();
  gpu_->run(ops::Linear{.out = out.gpu.tensor(), .inp = inp.gpu.tensor(), .weight = products});
  cpu_->run(ops::Linear{.out = out.cpu.tensor(), .inp = inp.cpu.tensor(), .weight = w.cpu.tensor()});
  EXPECT_LT(measured("out", out.error()), tol());
}

TEST_P(CudaKernels, CastBetweenFp32AndBf16) {
  const int64_t N = 1001;
  std::vector<float> values = random_floats(N, 44, 100.0f);
  values[0] = 1.0f + 0x1p-8f;  // a tie, to even
  values[1] = -0.0f;
  auto f = fp32({N}, values);
  DeviceTensor b_gpu(*gpu_, DType::kBF16, {N}), b_cpu(*cpu_, DType::kBF16, {N});
  gpu_->run(ops::Cast{.out = b_gpu.tensor(), .inp = f.gpu.tensor()});
  cpu_->run(ops::Cast{.out = b_cpu.tensor(), .inp = f.cpu.tensor()});
  EXPECT_EQ(b_gpu.read(), b_cpu.read());
  auto back = fp32({N}, std::vector<float>(N));
  gpu_->run(ops::Cast{.out = back.gpu.tensor(), .inp = b_gpu.tensor()});
  EXPECT_EQ(back.gpu.read(), b_cpu.read());
  gpu_->run(ops::Cast{.out = back.gpu.tensor(), .inp = f.gpu.tensor()});  // same dtype: a copy
  EXPECT_EQ(back.gpu.read(), values);
}

// The attention record differs between backends (probabilities on the CPU, row statistics here),
// so each keeps its own and only out and dqkv are compared.
void check_attention(Backend& gpu, Backend& cpu, int B, int T, int C, int NH, double tol) {
  SCOPED_TRACE(testing::Message() << "B " << B << " T " << T << " C " << C << " NH " << NH);
  const int64_t N = static_cast<int64_t>(B) * T;
  const ops::AttentionSpec spec = mha(C, NH);
  const DType act = gpu.precision().activations;
  auto qkv = Pair(gpu, cpu, act, {N, 3 * C}, random_floats(N * 3 * C, 50, 2.0f));
  auto out = Pair(gpu, cpu, act, {N, C}, std::vector<float>(N * C, 5.0f));
  DeviceTensor att_g(gpu, DType::kF32,
                     {static_cast<int64_t>(gpu.attention_record_floats(spec, B, T))});
  DeviceTensor att_c(cpu, DType::kF32,
                     {static_cast<int64_t>(cpu.attention_record_floats(spec, B, T))});
  auto forward = [&](Backend& k, const DeviceTensor& o, const DeviceTensor& att,
                     const DeviceTensor& x) {
    const QkvViews v = qkv_views(x.tensor(), C, NH);
    k.run(ops::Attention{.out = o.tensor(), .record = att.tensor(), .q = v.q, .k = v.k, .v = v.v,
                         .batch = B, .seq = T, .spec = spec});
  };
  forward(gpu, out.gpu, att_g, qkv.gpu);
  forward(cpu, out.cpu, att_c, qkv.cpu);
  EXPECT_LT(measured("out", out.error()), tol);

  auto dout = Pair(gpu, cpu, act, {N, C}, random_floats(N * C, 51));
  auto dqkv = Pair(gpu, cpu, act, {N, 3 * C}, random_floats(N * 3 * C, 52));
  DeviceTensor scratch_g(gpu, DType::kF32,
                         {static_cast<int64_t>(gpu.attention_scratch_floats(spec, B, T))});
  DeviceTensor scratch_c(cpu, DType::kF32,
                         {static_cast<int64_t>(cpu.attention_scratch_floats(spec, B, T))});
  auto backward = [&](Backend& k, const DeviceTensor& dx, const DeviceTensor& scratch,
                      const DeviceTensor& d, const DeviceTensor& o, const DeviceTensor& att,
                      const DeviceTensor& x) {
    const QkvViews v = qkv_views(x.tensor(), C, NH), dv = qkv_views(dx.tensor(), C, NH);
    k.run(ops::AttentionBackward{.dq = dv.q, .dk = dv.k, .dv = dv.v, .scratch = scratch.tensor(),
                                 .dout = d.tensor(), .out = o.tensor(), .record = att.tensor(),
                                 .q = v.q, .k = v.k, .v = v.v, .batch = B, .seq = T,
                                 .spec = spec});
  };
  backward(gpu, dqkv.gpu, scratch_g, dout.gpu, out.gpu, att_g, qkv.gpu);
  backward(cpu, dqkv.cpu, scratch_c, dout.cpu, out.cpu, att_c, qkv.cpu);
  EXPECT_LT(measured("dqkv", dqkv.error()), tol);
}

TEST_P(CudaKernels, AttentionForwardAndBackward) {
  check_attention(*gpu_, *cpu_, 2, 13, 54, 3, tol());    // head size 18
  check_attention(*gpu_, *cpu_, 1, 1, 54, 3, tol());     // a single position
  check_attention(*gpu_, *cpu_, 2, 131, 128, 2, tol());  // head size 64, several tiles
  check_attention(*gpu_, *cpu_, 1, 67, 384, 3, tol());   // head size 128
}

TEST_P(CudaKernels, AttentionDecodeReproducesTheForwardPass) {
  const int B = 2, T = 37, C = 128, NH = 2, max_T = 45, hs = C / NH;
  const ops::AttentionSpec spec = mha(C, NH);
  const std::vector<float> qkv_h = random_floats(size_t(B) * T * 3 * C, 60, 2.0f);
  auto qkv = act({B * T, 3 * C}, qkv_h);
  auto full = act({B * T, C}, std::vector<float>(size_t(B) * T * C));
  DeviceTensor att(*cpu_, DType::kF32,
                   {static_cast<int64_t>(cpu_->attention_record_floats(spec, B, T))});
  const QkvViews all = qkv_views(qkv.cpu.tensor(), C, NH);
  cpu_->run(ops::Attention{.out = full.cpu.tensor(), .record = att.tensor(), .q = all.q,
                           .k = all.k, .v = all.v, .batch = B, .seq = T, .spec = spec});
  const std::vector<float> expected = full.cpu.read();
  const std::vector<float> zeros(size_t(B) * NH * max_T * hs);
  DeviceTensor k_cache(*gpu_, act_dtype(), {B, NH, max_T, hs}, zeros),
      v_cache(*gpu_, act_dtype(), {B, NH, max_T, hs}, zeros);
  for (int pos = 0; pos < T; ++pos) {
    std::vector<float> step(size_t(B) * 3 * C), want(size_t(B) * C);
    for (int b = 0; b < B; ++b) {
      std::copy_n(qkv_h.begin() + (size_t(b) * T + pos) * 3 * C, 3 * C, step.begin() + b * 3 * C);
      std::copy_n(expected.begin() + (size_t(b) * T + pos) * C, C, want.begin() + b * C);
    }
    DeviceTensor step_g(*gpu_, act_dtype(), {B, 3 * C}, step), out_g(*gpu_, act_dtype(), {B, C});
    const QkvViews v = qkv_views(step_g.tensor(), C, NH);
    gpu_->run(ops::AttentionDecode{.out = out_g.tensor(), .q = v.q, .k = v.k, .v = v.v,
                                   .k_cache = k_cache.tensor(), .v_cache = v_cache.tensor(),
                                   .pos = pos, .spec = spec});
    EXPECT_LT(relative_error(out_g.read(), want), tol()) << "position " << pos;
  }
}

// The paged cache against the CPU reference: three sequences (a whole prompt, one decode step, a
// chunk of a prompt) whose blocks are scattered through the cache, with grouped-query heads, and
// with and without a window and sinks.
TEST_P(CudaKernels, PagedCacheWriteAndAttention) {
  const int H = 6, KV = 2, hd = 40, bs = 5, blocks = 23;
  const std::vector<int> context = {37, 5, 18}, rows = {37, 1, 6};
  const int S = static_cast<int>(context.size()), max_blocks = 8;
  // Each sequence's blocks, drawn without repeats from a shuffled pool.
  std::vector<int32_t> pool(blocks);
  std::iota(pool.begin(), pool.end(), 0);
  Rng rng(70);
  for (int i = blocks - 1; i > 0; --i) std::swap(pool[i], pool[rng.next_u64() % (i + 1)]);
  std::vector<int32_t> tables(S * max_blocks, -1), slots, query_start = {0};
  size_t next = 0;
  for (int s = 0; s < S; ++s) {
    for (int blk = 0; blk * bs < context[s]; ++blk) tables[s * max_blocks + blk] = pool[next++];
    for (int p = 0; p < context[s]; ++p) {
      slots.push_back(tables[s * max_blocks + p / bs] * bs + p % bs);
    }
    query_start.push_back(query_start.back() + rows[s]);
  }
  slots.push_back(-1);  // a row that is not stored
  const int64_t W = int64_t{KV} * hd, P = int64_t{H + 2 * KV} * hd;  // a row of the cache, of qkv
  const int64_t written = static_cast<int64_t>(slots.size());
  const std::vector<float> cache_zeros(size_t(blocks) * bs * W);
  auto k_cache = act({blocks, bs, KV, hd}, cache_zeros), v_cache = act({blocks, bs, KV, hd}, cache_zeros);
  // The keys and values come from a packed projection (q | k | v per row): strided rows.
  auto kv_source = act({written, P}, random_floats(written * P, 71));
  auto slot_ids = ids(slots);
  run_both([&](auto on) {
    return ops::KvCacheWrite{.k_cache = on(k_cache), .v_cache = on(v_cache),
                             .k = heads_view(on(kv_source), int64_t{H} * hd, KV, hd),
                             .v = heads_view(on(kv_source), int64_t{H + KV} * hd, KV, hd),
                             .slots = on(slot_ids)};
  });
  EXPECT_EQ(k_cache.gpu.read(), k_cache.cpu.read());
  EXPECT_EQ(v_cache.gpu.read(), v_cache.cpu.read());

  const int64_t N = query_start.back();
  auto q_source = act({N, P}, random_floats(N * P, 72, 2.0f));
  auto table_ids = Pair(*gpu_, *cpu_, tables), starts = ids(query_start), lengths = ids(
      std::vector<int32_t>(context.begin(), context.end()));
  auto sinks = fp32({H}, random_floats(H, 73));
  auto out = act({N, int64_t{H} * hd}, std::vector<float>(N * H * hd, 9.0f));
  for (const auto [window, with_sinks] : {std::pair{0, false}, std::pair{7, true}}) {
    SCOPED_TRACE(testing::Message() << "window " << window << (with_sinks ? ", sinks" : ""));
    run_both([&](auto on) {
      ops::PagedAttention op{.out = on(out), .q = heads_view(on(q_source), 0, H, hd),
                             .k_cache = on(k_cache), .v_cache = on(v_cache),
                             .block_tables = on(table_ids), .query_start = on(starts),
                             .context_len = on(lengths), .max_query_len = 37,
                             .max_context_len = 37,
                             .spec = {.heads = H, .kv_heads = KV, .head_dim = hd, .window = window}};
      op.block_tables = op.block_tables.reshape({S, max_blocks});
      if (with_sinks) op.sinks = on(sinks);
      return op;
    });
    EXPECT_LT(measured("out", out.error()), tol());
  }
}

TEST_P(CudaKernels, ElementwiseKernels) {
  const int64_t N = 1000003;
  auto x = act({N}, random_floats(N, 70, 4.0f)), y = act({N}, random_floats(N, 71));
  auto out = act({N}, std::vector<float>(N));
  run_both([&](auto on) { return ops::Gelu{.out = on(out), .inp = on(x)}; });
  EXPECT_LT(measured("out", out.error()), tol());
  auto dinp = act({N}, random_floats(N, 72));  // accumulates
  run_both([&](auto on) { return ops::GeluBackward{.dinp = on(dinp), .inp = on(x), .dout = on(y)}; });
  EXPECT_LT(measured("dinp", dinp.error()), tol());
  run_both([&](auto on) { return ops::Add{.out = on(out), .a = on(x), .b = on(y)}; });
  EXPECT_LT(measured("out", out.error()), tol());
  run_both([&](auto on) { return ops::Accumulate{.dst = on(out), .src = on(y)}; });
  EXPECT_LT(measured("out", out.error()), tol());
}

TEST_P(CudaKernels, CrossEntropyForwardAndBackwardInPlace) {
  for (const auto [N, V] : {std::array{13, 211}, std::array{5, 50257}, std::array{3, 1}}) {
    SCOPED_TRACE(testing::Message() << "N " << N << " V " << V);
    auto targets = ids(random_tokens(N, V, 80));
    auto logits = act({N, V}, random_floats(size_t(N) * V, 81, 8.0f));
    auto losses = fp32({N}, std::vector<float>(N));
    run_both([&](auto on) {
      return ops::CrossEntropy{.losses = on(losses), .logits = on(logits), .targets = on(targets)};
    });
    EXPECT_LT(measured("losses", losses.error()), bf16() ? 1e-2 : 1e-6);
    // dlogits overwrite the logits, as the model runs it.
    run_both([&](auto on) {
      return ops::CrossEntropyBackward{.dlogits = on(logits), .logits = on(logits),
                                       .targets = on(targets), .dloss = 0.25f};
    });
    EXPECT_LT(measured("logits", logits.error()), tol());
  }
}

TEST_P(CudaKernels, SumOfSquaresAndAdamW) {
  const int64_t N = 3000017;
  auto p = fp32({N}, random_floats(N, 90)), g = fp32({N}, random_floats(N, 91, 3.0f));
  auto total = Pair(*gpu_, *cpu_, DType::kF64, {1});
  run_both([&](auto on) { return ops::SumOfSquares{.total = on(total), .x = on(g)}; });
  const double want = total.cpu.read_f64();
  EXPECT_NEAR(total.gpu.read_f64(), want, 1e-9 * want);
  // A micro-batch's loss added to the step's total, on the device.
  run_both([&](auto on) { return ops::AccumulateSum{.total = on(total), .x = on(p), .scale = 0.5}; });
  EXPECT_NEAR(total.gpu.read_f64(), total.cpu.read_f64(), 1e-9 * want);

  auto m = fp32({N}, std::vector<float>(N)), v = fp32({N}, std::vector<float>(N));
  backend::AdamWStep step;
  step.learning_rate = 1e-3f;
  step.weight_decay = 0.1f;
  step.grad_scale = 0.5f;
  for (step.step = 1; step.step <= 3; ++step.step) {
    run_both([&](auto on) {
      return ops::AdamW{.params = on(p), .grads = on(g), .m = on(m), .v = on(v), .step = step};
    });
  }
  // Master weights and moments are fp32 in both modes.
  EXPECT_LT(measured("p", p.error()), 1e-6);
  EXPECT_LT(measured("m", m.error()), 1e-6);
  EXPECT_LT(measured("v", v.error()), 1e-6);
  // Clipped by the norm of the gradients' sum of squares, which stays on the device.
  run_both([&](auto on) { return ops::SumOfSquares{.total = on(total), .x = on(g)}; });
  run_both([&](auto on) {
    return ops::AdamW{.params = on(p), .grads = on(g), .m = on(m), .v = on(v),
                      .grad_sum_of_squares = on(total), .step = step, .clip = 1.0f};
  });
  EXPECT_LT(measured("p", p.error()), 1e-6);
  EXPECT_LT(measured("m", m.error()), 1e-6);
}

TEST_P(CudaKernels, BackwardKernelsAreDeterministic) {
  const int B = 2, T = 131, C = 128, NH = 2, V = 211;
  const int64_t N = B * T;
  const ops::AttentionSpec spec = mha(C, NH);
  std::vector<int32_t> positions(N);
  for (int64_t n = 0; n < N; ++n) positions[n] = static_cast<int32_t>(n % T);
  DeviceTensor tok(*gpu_, random_tokens(N, 11, 100)), pos(*gpu_, positions);  // many repeats
  const DType a = act_dtype();
  DeviceTensor qkv(*gpu_, a, {N, 3 * C}, random_floats(N * 3 * C, 101)), out(*gpu_, a, {N, C}),
      dout(*gpu_, a, {N, C}, random_floats(N * C, 102));
  DeviceTensor att(*gpu_, DType::kF32,
                   {static_cast<int64_t>(gpu_->attention_record_floats(spec, B, T))});
  DeviceTensor scratch(*gpu_, DType::kF32,
                       {static_cast<int64_t>(gpu_->attention_scratch_floats(spec, B, T))});
  const QkvViews v = qkv_views(qkv.tensor(), C, NH);
  gpu_->run(ops::Attention{.out = out.tensor(), .record = att.tensor(), .q = v.q, .k = v.k,
                           .v = v.v, .batch = B, .seq = T, .spec = spec});
  std::vector<float> first_dqkv, first_dwte, first_dw;
  for (int run = 0; run < 2; ++run) {
    DeviceTensor dqkv(*gpu_, a, {N, 3 * C}, std::vector<float>(N * 3 * C));
    const QkvViews dv = qkv_views(dqkv.tensor(), C, NH);
    gpu_->run(ops::AttentionBackward{.dq = dv.q, .dk = dv.k, .dv = dv.v,
                                     .scratch = scratch.tensor(), .dout = dout.tensor(),
                                     .out = out.tensor(), .record = att.tensor(), .q = v.q,
                                     .k = v.k, .v = v.v, .batch = B, .seq = T, .spec = spec});
    DeviceTensor dwte(*gpu_, DType::kF32, {V, C}, std::vector<float>(V * C)),
        dwpe(*gpu_, DType::kF32, {T, C}, std::vector<float>(T * C));
    gpu_->run(ops::EmbeddingBackward{.dtable = dwte.tensor(), .dposition_table = dwpe.tensor(),
                                     .dout = dout.tensor(), .ids = tok.tensor(),
                                     .position_ids = pos.tensor()});
    DeviceTensor dw(*gpu_, DType::kF32, {C}, std::vector<float>(C)),
        db(*gpu_, DType::kF32, {C}, std::vector<float>(C)),
        dinp(*gpu_, a, {N, C}, std::vector<float>(N * C)),
        w(*gpu_, DType::kF32, {C}, std::vector<float>(C, 1.0f)),
        mean(*gpu_, DType::kF32, {N}, std::vector<float>(N)),
        rstd(*gpu_, DType::kF32, {N}, std::vector<float>(N, 1.0f));
    gpu_->run(ops::LayerNormBackward{.dinp = dinp.tensor(), .dweight = dw.tensor(),
                                     .dbias = db.tensor(), .dout = dout.tensor(),
                                     .inp = out.tensor(), .weight = w.tensor(),
                                     .mean = mean.tensor(), .rstd = rstd.tensor()});
    if (run == 0) {
      first_dqkv = dqkv.read();
      first_dwte = dwte.read();
      first_dw = dw.read();
    } else {
      EXPECT_EQ(dqkv.read(), first_dqkv);
      EXPECT_EQ(dwte.read(), first_dwte);
      EXPECT_EQ(dw.read(), first_dw);
    }
  }
}

// Forms the kernels do not handle run the CPU reference on the host (through copies), with the
// CPU's numbers: a head size above the kernels' 128. (Grouped-query attention with windows and
// sinks runs natively: cuda_gpt_oss_test.cc.)
TEST_P(CudaKernels, FormsTheKernelsLackRunOnTheHost) {
  const int B = 1, T = 3, C = 258, NH = 1;
  const ops::AttentionSpec spec = mha(C, NH);
  auto qkv = act({B * T, 3 * C}, random_floats(B * T * 3 * C, 114));
  auto out = act({B * T, C}, std::vector<float>(B * T * C));
  const int64_t record = static_cast<int64_t>(gpu_->attention_record_floats(spec, B, T));
  EXPECT_EQ(record, static_cast<int64_t>(cpu_->attention_record_floats(spec, B, T)));
  auto att = fp32({record}, std::vector<float>(record));
  run_both([&](auto on) {
    const QkvViews v = qkv_views(on(qkv), C, NH);
    return ops::Attention{.out = on(out), .record = on(att), .q = v.q, .k = v.k, .v = v.v,
                          .batch = B, .seq = T, .spec = spec};
  });
  EXPECT_LT(measured("out", out.error()), tol());
}

// Linear weights of the other float dtype than the products read (a frozen checkpoint's bf16 in
// fp32 mode, fp32 in bf16 mode) are converted on the device a slice of rows at a time: a layer
// small enough for one slice, and one of two slices.
TEST_P(CudaKernels, LinearWeightsOfTheOtherFloatDtypeAreConverted) {
  const DType other = bf16() ? DType::kF32 : DType::kBF16;
  for (const auto [N, C, OC] : {std::array{7, 30, 11}, std::array{3, 1000, 4500}}) {
    SCOPED_TRACE(testing::Message() << "N " << N << " C " << C << " OC " << OC);
    auto inp = act({N, C}, random_floats(N * C, 115));
    auto w = Pair(*gpu_, *cpu_, other, {OC, C}, random_floats(int64_t{OC} * C, 116, 0.1f));
    auto bias = fp32({OC}, random_floats(OC, 117));
    auto out = act({N, OC}, std::vector<float>(N * OC));
    const ops::Linear gpu_op{.out = out.gpu.tensor(), .inp = inp.gpu.tensor(),
                             .weight = w.gpu.tensor(), .bias = bias.gpu.tensor()};
    EXPECT_TRUE(gpu_->supports(gpu_op));
    run_both([&](auto on) {
      return ops::Linear{.out = on(out), .inp = on(inp), .weight = on(w), .bias = on(bias)};
    });
    EXPECT_LT(measured("out", out.error()), tol());
    run_both([&](auto on) { return ops::Linear{.out = on(out), .inp = on(inp), .weight = on(w)}; });
    EXPECT_LT(measured("out", out.error()), tol());
  }
}

TEST_P(CudaKernels, SaysWhichOpsRunNatively) {
  const DType a = act_dtype(), other = bf16() ? DType::kF32 : DType::kBF16;
  auto t = [](DType dtype) { Tensor x; x.dtype = dtype; return x; };
  const Tensor f32 = t(DType::kF32), i32 = t(DType::kI32), f64 = t(DType::kF64);
  EXPECT_TRUE(gpu_->supports(ops::Linear{.out = t(a), .inp = t(a), .weight = t(a), .bias = f32}));
  EXPECT_TRUE(gpu_->supports(ops::Embedding{.out = t(a), .ids = i32, .table = f32}));
  EXPECT_TRUE(gpu_->supports(ops::Gelu{.out = t(a), .inp = t(a)}));
  EXPECT_FALSE(gpu_->supports(ops::Gelu{.out = t(other), .inp = t(other)}));
  EXPECT_TRUE(gpu_->supports(ops::Cast{.out = t(DType::kBF16), .inp = f32}));
  EXPECT_TRUE(gpu_->supports(ops::AdamW{.params = f32, .grads = f32, .m = f32, .v = f32,
                                        .grad_sum_of_squares = f64,
                                        .params_copy = t(DType::kBF16)}));
  EXPECT_TRUE(gpu_->supports(ops::PagedAttention{.out = t(a), .q = t(a), .k_cache = t(a),
                                                 .v_cache = t(a), .block_tables = i32,
                                                 .query_start = i32, .context_len = i32}));
  EXPECT_FALSE(gpu_->supports(ops::Cast{.out = t(DType::kF8E4M3), .inp = f32}));
}

TEST_P(CudaKernels, ClearErrors) {
  expect_error([&] { gpu_->allocate(size_t{1} << 52); }, {"out of GPU memory", "GiB"});
  // Activations must be of the device's activation dtype.
  const DType other = bf16() ? DType::kF32 : DType::kBF16;
  DeviceTensor x(*gpu_, other, {3, 258});
  expect_error([&] { gpu_->run(ops::Gelu{.out = x.tensor(), .inp = x.tensor()}); },
               {"cuda gelu", "out", dtype_name(act_dtype())});
  // An attention record smaller than attention_record_floats says.
  const ops::AttentionSpec spec = mha(54, 3);
  DeviceTensor qkv(*gpu_, act_dtype(), {4, 3 * 54}), out(*gpu_, act_dtype(), {4, 54}),
      record(*gpu_, DType::kF32, {5});
  const QkvViews v = qkv_views(qkv.tensor(), 54, 3);
  expect_error([&] {
    gpu_->run(ops::Attention{.out = out.tensor(), .record = record.tensor(), .q = v.q, .k = v.k,
                             .v = v.v, .batch = 2, .seq = 2, .spec = spec});
  }, {"cuda attention", "record"});
  float host = 0;
  expect_error([&] { gpu_->fill_zero(&host, sizeof(host)); }, {"not in memory this device"});
}

// ---- the whole model ----

model::ModelConfig small_config() {
  model::ModelConfig c;
  c.num_layers = 2;
  c.num_heads = 3;
  c.channels = 96;
  c.vocab_size = 301;
  c.max_seq_len = 67;
  return c;
}

// T = 67: more than one attention tile, and not a multiple of any tile size.
TrainingRun run_steps(const std::string& device) {
  TrainingPlan plan;
  plan.config = small_config();
  plan.B = 3;
  plan.T = 67;
  plan.adamw_steps = 5;
  plan.decode_positions = 6;
  return run_training(device, plan);
}

double worst_relative(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i)
    worst = std::max(worst, std::abs(double(got[i]) - want[i]) / std::abs(double(want[i])));
  return worst;
}

// Whether v is a bf16 value: its low 16 bits are zero.
bool is_bf16(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return (bits & 0xffffu) == 0;
}

size_t count_bf16(const std::vector<float>& values) {
  return static_cast<size_t>(std::count_if(values.begin(), values.end(), is_bf16));
}

TEST_P(CudaKernels, TrainingStepsMatchTheCpuBackendAndRepeatExactly) {
  const TrainingRun cpu = run_steps("cpu");
  const TrainingRun gpu = run_steps(GetParam());
  const double loss = std::abs(double(gpu.loss) - cpu.loss) / std::abs(double(cpu.loss));
  const double logits = relative_error(gpu.logits, cpu.logits);
  const double grads = relative_error(gpu.grads, cpu.grads);
  const double later_losses = worst_relative(gpu.later_losses, cpu.later_losses);
  const double step_losses = relative_error(gpu.step_losses, cpu.step_losses);
  const double step_norms = relative_error(gpu.step_norms, cpu.step_norms);
  const double decode_logits = relative_error(gpu.decode_logits, cpu.decode_logits);
  std::printf("%s vs cpu: loss %.2e, logits %.2e, gradients %.2e, AdamW losses %.2e, step losses "
              "%.2e, step norms %.2e, decode logits %.2e\n",
              GetParam().c_str(), loss, logits, grads, later_losses, step_losses, step_norms,
              decode_logits);
  // The bars the backend was built to: bf16 within 2e-2 (losses 1e-2), fp32 within 1e-4.
  const double tol = bf16() ? 2e-2 : 1e-4;
  const double loss_tol = bf16() ? 1e-2 : 1e-4;
  EXPECT_LT(loss, loss_tol);
  EXPECT_LT(logits, tol);
  EXPECT_LT(grads, tol);
  EXPECT_LT(later_losses, loss_tol);
  EXPECT_LT(step_losses, loss_tol);
  EXPECT_LT(step_norms, tol);
  EXPECT_LT(decode_logits, tol);
  if (bf16()) {
    // bf16 really is in use: logits are bf16 activations, so every one is a bf16 value (the CPU
    // backend's fp32 logits almost never are), and they are further from the fp32 logits than
    // rounding those to bf16 alone would put them.
    EXPECT_EQ(count_bf16(gpu.logits), gpu.logits.size());
    EXPECT_EQ(count_bf16(gpu.decode_logits), gpu.decode_logits.size());
    EXPECT_LT(count_bf16(cpu.logits), cpu.logits.size() / 100);
    std::vector<float> rounded(cpu.logits.size());
    for (size_t i = 0; i < cpu.logits.size(); ++i)
      rounded[i] = bf16_to_float(float_to_bf16(cpu.logits[i]));
    EXPECT_GT(logits, relative_error(rounded, cpu.logits));
  }
  // Deterministic: a second run gives the same bits.
  const TrainingRun again = run_steps(GetParam());
  EXPECT_EQ(again.loss, gpu.loss);
  EXPECT_EQ(again.later_losses, gpu.later_losses);
  EXPECT_EQ(again.grads, gpu.grads);
  EXPECT_EQ(again.step_losses, gpu.step_losses);
  EXPECT_EQ(again.step_norms, gpu.step_norms);
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaKernels, ::testing::Values("cuda-fp32", "cuda"),
                         [](const auto& info) {
                           return info.param == "cuda" ? std::string("bf16") : std::string("fp32");
                         });

}  // namespace
}  // namespace switchyard
