// Timing-only execution: the same kernels run in functional and in timing-only mode give the same
// simulated times, engine busy times, instruction counts, HBM traffic, FLOPs and trace, on the
// simulated core directly (GEMM, instructions with every engine) and through the trn*-sim backend
// (linear, layernorm, attention prefill, grouped-query training attention, KV-cache write and
// paged decode attention, and a whole small model: training step, prefill and decode).
// Timing-only mode keeps the rules and does no arithmetic: it leaves outputs alone, and what the
// host reads back is defined (zeros).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/generator.h"
#include "model/gpt2.h"
#include "neuron/gemm_kernel.h"
#include "neuron/neuron_core.h"
#include "random_data.h"

namespace switchyard {
namespace {

using neuron::ExecutionMode;
namespace ops = backend::ops;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::filesystem::path temp_path(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         (name + "." + std::to_string(::getpid()) + ".json");
}

// ---- The simulated core directly.

struct CoreRun {
  neuron::RunStats stats;
  std::string trace;
};

CoreRun run_on_core(const neuron::CoreConfig& config, ExecutionMode mode,
                    const std::function<void(neuron::NeuronCore&)>& kernel) {
  neuron::NeuronCore core(config, mode);
  core.record_trace(true);
  kernel(core);
  CoreRun run{core.stats(), ""};
  const std::filesystem::path path = temp_path("timing_only_core");
  core.write_trace(path.string());
  run.trace = read_file(path);
  std::filesystem::remove(path);
  return run;
}

void expect_same_stats(const neuron::RunStats& timing, const neuron::RunStats& functional) {
  EXPECT_GT(functional.total_ns, 0.0);
  EXPECT_EQ(timing.total_ns, functional.total_ns);
  EXPECT_EQ(timing.instructions, functional.instructions);
  EXPECT_EQ(timing.hbm_read_bytes, functional.hbm_read_bytes);
  EXPECT_EQ(timing.hbm_write_bytes, functional.hbm_write_bytes);
  EXPECT_EQ(timing.matmul_flops, functional.matmul_flops);
  EXPECT_EQ(timing.sbuf_high_water_bytes, functional.sbuf_high_water_bytes);
  EXPECT_EQ(timing.psum_high_water_bytes, functional.psum_high_water_bytes);
  EXPECT_EQ(timing.hbm_high_water_bytes, functional.hbm_high_water_bytes);
  ASSERT_EQ(timing.engines.size(), functional.engines.size());
  for (size_t e = 0; e < functional.engines.size(); ++e) {
    EXPECT_EQ(timing.engines[e].busy_ns, functional.engines[e].busy_ns) << functional.engines[e].name;
    EXPECT_EQ(timing.engines[e].busy_cycles, functional.engines[e].busy_cycles);
    EXPECT_EQ(timing.engines[e].instructions, functional.engines[e].instructions);
  }
}

void expect_same_on_core(const neuron::CoreConfig& config,
                         const std::function<void(neuron::NeuronCore&)>& kernel) {
  const CoreRun functional = run_on_core(config, ExecutionMode::kFunctional, kernel);
  const CoreRun timing = run_on_core(config, ExecutionMode::kTimingOnly, kernel);
  expect_same_stats(timing.stats, functional.stats);
  EXPECT_GT(functional.trace.size(), 1000u);
  EXPECT_EQ(timing.trace, functional.trace);
}

void fill_random(neuron::NeuronCore& core, const neuron::View& v, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> values(static_cast<size_t>(v.elements()));
  for (float& x : values) x = rng.normal();
  core.write(v, values);
}

TEST(NeuronTimingOnly, GemmTimesAsFunctional) {
  for (const neuron::CoreConfig& config : {neuron::trn1_config(), neuron::trn2_config()}) {
    expect_same_on_core(config, [](neuron::NeuronCore& core) {
      const neuron::View a = core.hbm_alloc({300, 200}, DType::kBF16, "A");
      const neuron::View b = core.hbm_alloc({200, 700}, DType::kBF16, "B");
      const neuron::View c = core.hbm_alloc({300, 700}, DType::kF32, "C");
      fill_random(core, a, 1);
      fill_random(core, b, 2);
      neuron::gemm(core, c, a, b);
    });
  }
}

// Every instruction kind on every engine that runs it, with dependencies between them, v2 port
// conflicts (trn1), an indirect gather, an accumulating scatter and MXFP4 decodes.
void every_instruction(neuron::NeuronCore& core) {
  using neuron::Activation;
  using neuron::AluOp;
  using neuron::Engine;
  const neuron::View table = core.hbm_alloc({64, 96}, DType::kBF16, "table");
  const neuron::View ids = core.hbm_alloc({128, 1}, DType::kI32, "ids");
  fill_random(core, table, 3);
  std::vector<float> id_values(128);
  for (int i = 0; i < 128; ++i) id_values[i] = static_cast<float>((i * 7) % 64);
  core.write(ids, id_values);
  const neuron::View idx = core.sbuf_alloc(128, {1}, DType::kI32, "idx");
  const neuron::View x = core.sbuf_alloc(128, {96}, DType::kBF16, "x");
  const neuron::View y = core.sbuf_alloc(128, {96}, DType::kF32, "y");
  const neuron::View col = core.sbuf_alloc(128, {1}, DType::kF32, "col");
  const neuron::View xt = core.psum_alloc(96, {128}, DType::kF32, "xT");
  const neuron::View acc = core.psum_alloc(96, {96}, DType::kF32, "acc");
  const neuron::View xt_sb = core.sbuf_alloc(96, {128}, DType::kBF16, "xT_sb");
  core.dma_copy(idx, ids, 0);
  core.dma_gather(x, table, idx, 1);
  core.transpose(xt, x);
  core.tensor_copy(xt_sb, xt, Engine::kScalar);
  core.matmul(acc, x, x.cols(0, 96), true, false);
  core.matmul(acc, x, x.cols(0, 96), false, true);
  core.activation_reduce(y, Activation::kExp, x, col, 0.5f, 0.0f);
  core.tensor_reduce(col, AluOp::kMax, y);
  core.tensor_scalar(y, y, AluOp::kSubtract, col, AluOp::kMultiply, 2.0f);
  core.tensor_tensor(y, y, AluOp::kAdd, y, Engine::kGpSimd);
  core.reciprocal(y, y);
  core.memset(col, 1.0f, Engine::kGpSimd);
  core.select(y, y, y, y);
  core.iota(y.cols(0, 8), 0.0f, 1.0f, {0.5f});
  core.affine_select(y, y, 0.0f, 1.0f, {-1.0f}, AluOp::kIsGreaterEqual, -1e30f);
  const neuron::View codes = core.sbuf_alloc(128, {48}, DType::kU8, "codes");
  const neuron::View scales = core.sbuf_alloc(128, {3}, DType::kU8, "scales");
  core.memset(codes, 0x5A, Engine::kGpSimd);
  core.memset(scales, 127.0f);
  core.mxfp4_decode(x, codes, scales, Engine::kGpSimd);
  core.mxfp4_decode(x, codes, scales);
  core.tensor_copy(x, y);
  core.activation(x, Activation::kGeluTanh, x, col, 0.0f);
  core.fence();
  core.dma_scatter(table, x, idx, /*accumulate=*/true, neuron::kAnyQueue);
  core.dma_scatter(table, x, idx, /*accumulate=*/false, 2, neuron::NegativeIndex::kSkip);
}

TEST(NeuronTimingOnly, EveryInstructionTimesAsFunctional) {
  expect_same_on_core(neuron::trn1_config(), every_instruction);
  expect_same_on_core(neuron::trn2_config(), every_instruction);
}

TEST(NeuronTimingOnly, HoldsNoValuesButReadsAttachedMemory) {
  neuron::NeuronCore core(neuron::trn2_config(), ExecutionMode::kTimingOnly);
  EXPECT_EQ(core.mode(), ExecutionMode::kTimingOnly);
  const neuron::View own = core.hbm_alloc({4, 8}, DType::kF32, "own");
  core.write(own, std::vector<float>(32, 3.0f));
  EXPECT_EQ(core.read(own), std::vector<float>(32, 0.0f));  // dropped: no values held

  std::vector<float> host(32, 2.5f);
  const neuron::View attached = core.hbm_attach(host.data(), {4, 8}, DType::kF32, "attached");
  EXPECT_EQ(core.read(attached), host);
  const neuron::View tile = core.sbuf_alloc(4, {8}, DType::kF32, "tile");
  core.dma_copy(tile, attached);
  core.tensor_scalar(tile, tile, neuron::AluOp::kMultiply, 10.0f);
  core.dma_copy(attached, tile);
  EXPECT_EQ(host, std::vector<float>(32, 2.5f));  // kernels write nothing
  EXPECT_EQ(core.read(tile), std::vector<float>(32, 0.0f));
  core.write(attached, std::vector<float>(32, -1.0f));  // the host writes the caller's memory
  EXPECT_EQ(host, std::vector<float>(32, -1.0f));
  EXPECT_EQ(core.stats().instructions, 3);
  EXPECT_GT(core.now_ns(), 0.0);
}

TEST(NeuronTimingOnly, KeepsTheRules) {
  neuron::NeuronCore core(neuron::trn1_config(), ExecutionMode::kTimingOnly);
  const neuron::View st = core.sbuf_alloc(128, {128}, DType::kBF16, "st");
  const neuron::View mv = core.sbuf_alloc(128, {512}, DType::kBF16, "mv");
  const neuron::View acc = core.psum_alloc(128, {512}, DType::kF32, "acc");
  const neuron::View hbm = core.hbm_alloc({128, 512}, DType::kBF16, "hbm");
  // Accumulating into a group never opened.
  EXPECT_THROW(core.matmul(acc, st, mv, false, true), Error);
  core.matmul(acc, st, mv, true, false);
  // Reading an open group; engines reading HBM; a DMA into PSUM.
  EXPECT_THROW(core.tensor_copy(mv, acc), Error);
  EXPECT_THROW(core.tensor_copy(mv, hbm), Error);
  EXPECT_THROW(core.dma_copy(acc, hbm), Error);
  core.matmul(acc, st, mv, false, true);
  core.tensor_copy(mv, acc);
  // Capacity is still the hardware's.
  EXPECT_THROW(core.sbuf_alloc(128, {1 << 20}, DType::kF32, "too big"), Error);
}

// ---- Through the trn*-sim backend.

// A backend and the device tensors made on it (released with it).
class Device {
 public:
  explicit Device(const std::string& name) : backend_(backend::create_backend(name)) {}
  ~Device() {
    for (void* p : allocations_) backend_->release(p);
  }
  backend::Backend& operator*() { return *backend_; }
  backend::Backend* operator->() { return backend_.get(); }
  Tensor random(DType dtype, std::initializer_list<int64_t> shape, uint64_t seed) {
    Tensor t = allocate(dtype, shape);
    const std::vector<float> values = random_floats(static_cast<size_t>(t.numel()), seed);
    backend::from_host_f32(*backend_, t, values.data());
    return t;
  }
  Tensor ids(std::initializer_list<int64_t> shape, const std::vector<int32_t>& values) {
    Tensor t = allocate(DType::kI32, shape);
    backend_->copy_to_device(t.data, values.data(), values.size() * sizeof(int32_t));
    return t;
  }
  Tensor allocate(DType dtype, std::initializer_list<int64_t> shape) {
    Tensor t = Tensor::dense(static_cast<void*>(nullptr), dtype, shape);
    t.data = backend_->allocate(std::max<size_t>(t.bytes(), 1));
    allocations_.push_back(t.data);
    return t;
  }

 private:
  std::unique_ptr<backend::Backend> backend_;
  std::vector<void*> allocations_;
};

// [rows, heads, head_dim] view of columns [col, col + heads * head_dim) of a dense [rows, width]
// projection.
Tensor heads_view(const Tensor& projection, int64_t col, int heads, int head_dim) {
  Tensor t = Tensor::dense(projection.data, projection.dtype,
                           {projection.shape[0], int64_t{heads}, int64_t{head_dim}});
  t.strides[0] = projection.shape[1];
  t.data = static_cast<char*>(projection.data) + col * dtype_bytes(projection.dtype);
  return t;
}

struct BackendRun {
  backend::SimulationReport report;
  std::string trace;
  std::vector<float> outputs;  // what the host read back at the end
};

BackendRun run_on_backend(const std::string& device,
                          const std::function<std::vector<float>(Device&)>& work) {
  Device d(device);
  backend::SimulatorBackend& sim = backend::require_simulator(*d, "the test");
  sim.start_trace();
  BackendRun run;
  run.outputs = work(d);
  const std::filesystem::path path = temp_path("timing_only_backend");
  sim.finish_trace(path.string());
  run.trace = read_file(path);
  std::filesystem::remove(path);
  run.report = *backend::simulation_report(*d);
  return run;
}

// Runs `work` on `device` and on `device`:timing; the simulated reports and traces must agree,
// and the timing-only run's outputs must be finite.
void expect_same_on_backend(const std::string& device,
                            const std::function<std::vector<float>(Device&)>& work) {
  const BackendRun functional = run_on_backend(device, work);
  const BackendRun timing = run_on_backend(device + ":timing", work);
  const backend::SimulationReport& f = functional.report;
  const backend::SimulationReport& t = timing.report;
  EXPECT_GT(f.total_ns, 0.0);
  EXPECT_EQ(t.total_ns, f.total_ns);
  EXPECT_EQ(t.instructions, f.instructions);
  EXPECT_EQ(t.hbm_bytes, f.hbm_bytes);
  EXPECT_EQ(t.matmul_flops, f.matmul_flops);
  EXPECT_EQ(t.unsimulated_ops, f.unsimulated_ops);
  ASSERT_EQ(t.engines.size(), f.engines.size());
  for (size_t e = 0; e < f.engines.size(); ++e) {
    EXPECT_EQ(t.engines[e].name, f.engines[e].name);
    EXPECT_EQ(t.engines[e].busy_ns, f.engines[e].busy_ns) << f.engines[e].name;
  }
  EXPECT_GT(functional.trace.size(), 1000u);
  EXPECT_EQ(timing.trace, functional.trace);
  ASSERT_EQ(timing.outputs.size(), functional.outputs.size());
  for (float x : timing.outputs) ASSERT_TRUE(std::isfinite(x));
}

TEST(NeuronTimingOnly, LinearAndLayerNormTimeAsFunctional) {
  expect_same_on_backend("trn2-sim", [](Device& d) {
    const DType act = d->precision().activations;
    const int N = 200, C = 96, OC = 300;
    const Tensor inp = d.random(act, {N, C}, 1), out = d.allocate(act, {N, OC});
    const Tensor weight = d.random(DType::kF32, {OC, C}, 2), bias = d.random(DType::kF32, {OC}, 3);
    d->run(ops::Linear{.out = out, .inp = inp, .weight = weight, .bias = bias});
    const Tensor normed = d.allocate(act, {N, OC}), mean = d.allocate(DType::kF32, {N}),
                 rstd = d.allocate(DType::kF32, {N});
    const Tensor gamma = d.random(DType::kF32, {OC}, 4), beta = d.random(DType::kF32, {OC}, 5);
    d->run(ops::LayerNorm{.out = normed, .mean = mean, .rstd = rstd, .inp = out,
                          .weight = gamma, .bias = beta});
    return backend::to_host_f32(*d, normed);
  });
}

TEST(NeuronTimingOnly, AttentionPrefillTimesAsFunctional) {
  for (const char* device : {"trn2-sim", "trn1-sim-fp32"}) {
    expect_same_on_backend(device, [](Device& d) {
      const DType act = d->precision().activations;
      const int B = 2, T = 70, NH = 4, hs = 16, C = NH * hs;
      const ops::AttentionSpec spec{.heads = NH, .kv_heads = NH, .head_dim = hs};
      const Tensor qkv = d.random(act, {B * T, 3 * C}, 6);
      const Tensor out = d.allocate(act, {B * T, C});
      const size_t record = d->attention_record_floats(spec, B, T);
      const Tensor rec = d.allocate(DType::kF32, {static_cast<int64_t>(record)});
      d->run(ops::Attention{.out = out, .record = rec, .q = heads_view(qkv, 0, NH, hs),
                            .k = heads_view(qkv, C, NH, hs), .v = heads_view(qkv, 2 * C, NH, hs),
                            .sinks = Tensor{}, .batch = B, .seq = T, .spec = spec});
      return backend::to_host_f32(*d, out);
    });
  }
}

TEST(NeuronTimingOnly, GroupedQueryTrainingAttentionTimesAsFunctional) {
  // gpt-oss's form: 4 query heads over 2 kv heads in one packed projection, sinks, a window;
  // forward and backward.
  expect_same_on_backend("trn2-sim", [](Device& d) {
    const DType act = d->precision().activations;
    const int B = 2, T = 70, H = 4, KV = 2, hd = 16, C = H * hd, width = (H + 2 * KV) * hd;
    const ops::AttentionSpec spec{.heads = H, .kv_heads = KV, .head_dim = hd, .window = 24};
    const Tensor qkv = d.random(act, {B * T, width}, 11), dqkv = d.random(act, {B * T, width}, 12);
    const Tensor out = d.allocate(act, {B * T, C}), dout = d.random(act, {B * T, C}, 13);
    const Tensor sinks = d.random(DType::kF32, {H}, 14), dsinks = d.random(DType::kF32, {H}, 15);
    const size_t record = d->attention_record_floats(spec, B, T);
    const Tensor rec = d.allocate(DType::kF32, {static_cast<int64_t>(record)});
    auto q = [&](const Tensor& t) { return heads_view(t, 0, H, hd); };
    auto k = [&](const Tensor& t) { return heads_view(t, C, KV, hd); };
    auto v = [&](const Tensor& t) { return heads_view(t, C + KV * hd, KV, hd); };
    d->run(ops::Attention{.out = out, .record = rec, .q = q(qkv), .k = k(qkv), .v = v(qkv),
                          .sinks = sinks, .batch = B, .seq = T, .spec = spec});
    d->run(ops::AttentionBackward{.dq = q(dqkv), .dk = k(dqkv), .dv = v(dqkv), .dsinks = dsinks,
                                  .scratch = Tensor{}, .dout = dout, .out = out, .record = rec,
                                  .q = q(qkv), .k = k(qkv), .v = v(qkv), .sinks = sinks,
                                  .batch = B, .seq = T, .spec = spec});
    std::vector<float> outputs = backend::to_host_f32(*d, dqkv);
    const std::vector<float> grads = backend::to_host_f32(*d, dsinks);
    outputs.insert(outputs.end(), grads.begin(), grads.end());
    return outputs;
  });
}

TEST(NeuronTimingOnly, KvCacheWriteAndPagedDecodeTimeAsFunctional) {
  expect_same_on_backend("trn2-sim", [](Device& d) {
    const DType act = d->precision().activations;
    // Three sequences decoding one token each over 16-position blocks, grouped-query heads.
    const int H = 8, KV = 2, hd = 32, bs = 16, blocks = 12, width = (H + 2 * KV) * hd;
    const std::vector<int32_t> contexts = {37, 16, 90};
    const int S = 3, max_blocks = 7;
    std::vector<int32_t> tables(S * max_blocks, -1), starts = {0, 1, 2, 3}, slots;
    int next = 0;
    for (int s = 0; s < S; ++s) {
      for (int b = 0; b * bs < contexts[s]; ++b) tables[s * max_blocks + b] = (next++ * 5) % blocks;
      const int pos = contexts[s] - 1;
      slots.push_back(tables[s * max_blocks + pos / bs] * bs + pos % bs);
    }
    const Tensor kc = d.random(act, {blocks, bs, KV, hd}, 7), vc = d.random(act, {blocks, bs, KV, hd}, 8);
    const Tensor proj = d.random(act, {S, width}, 9), out = d.allocate(act, {S, H * hd});
    d->run(ops::KvCacheWrite{.k_cache = kc, .v_cache = vc, .k = heads_view(proj, H * hd, KV, hd),
                             .v = heads_view(proj, (H + KV) * hd, KV, hd),
                             .slots = d.ids({S}, slots)});
    d->run(ops::PagedAttention{.out = out, .q = heads_view(proj, 0, H, hd), .k_cache = kc,
                               .v_cache = vc, .block_tables = d.ids({S, max_blocks}, tables),
                               .query_start = d.ids({S + 1}, starts),
                               .context_len = d.ids({S}, contexts), .sinks = Tensor{},
                               .max_query_len = 1,
                               .max_context_len = 90,
                               .spec = {.heads = H, .kv_heads = KV, .head_dim = hd}});
    return backend::to_host_f32(*d, out);
  });
}

model::ModelConfig small_model() {
  model::ModelConfig c;
  c.num_layers = 2;
  c.num_heads = 4;
  c.channels = 64;
  c.vocab_size = 300;
  c.max_seq_len = 48;
  return c;
}

TEST(NeuronTimingOnly, ModelPrefillAndDecodeTimeAsFunctional) {
  expect_same_on_backend("trn2-sim", [](Device& d) {
    model::Gpt2 gpt(*d, small_model());
    gpt.init_random(5);
    model::Generator generator(gpt, 2, 40);
    // A prompt in one pass, then decode steps of two sequences at once; the tokens fed are fixed
    // (timing-only logits carry no information to pick them by).
    auto [first, logits] = generator.start({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17});
    auto [second, more] = generator.start({20, 21, 22});
    std::vector<float> outputs = logits;
    for (int step = 0; step < 3; ++step) {
      for (const std::vector<float>& l :
           generator.run({{.sequence = first, .tokens = {30 + step}},
                          {.sequence = second, .tokens = {40 + step}}}))
        outputs.insert(outputs.end(), l.begin(), l.end());
    }
    return outputs;
  });
}

TEST(NeuronTimingOnly, ModelTrainingStepTimesAsFunctional) {
  expect_same_on_backend("trn2-sim", [](Device& d) {
    const model::ModelConfig config = small_model();
    const int B = 2, T = 24;
    model::Gpt2 gpt(*d, config);
    gpt.init_random(21);
    const size_t n = static_cast<size_t>(B) * T;
    const std::vector<int32_t> inputs = random_tokens(n, config.vocab_size, 3),
                               targets = random_tokens(n, config.vocab_size, 4);
    // Forward with the loss, backward, AdamW; then a whole step with its statistics on the device.
    std::vector<float> outputs = {gpt.forward(inputs.data(), targets.data(), B, T)};
    gpt.zero_grad();
    gpt.backward();
    const model::AdamWConfig adamw;
    gpt.adamw_step(adamw, 1e-3f, 1, 1.0f / std::max(1.0f, gpt.gradient_norm()));
    gpt.begin_step();
    gpt.forward_backward(inputs.data(), targets.data(), B, T, 1.0f);
    const model::Model::StepResult step = gpt.finish_step(adamw, 1e-3f, 2, 0.5f);
    outputs.push_back(step.loss);
    outputs.push_back(step.grad_norm);
    return outputs;
  });
}

TEST(NeuronTimingOnly, DeviceNames) {
  auto timing = backend::create_backend("trn2-sim:timing");
  EXPECT_EQ(timing->name(), "trn2-sim:timing");
  EXPECT_NE(timing->description().find("timing only"), std::string::npos) << timing->description();
  EXPECT_EQ(backend::create_backend("trn1-sim-fp32:timing")->name(), "trn1-sim-fp32:timing");
  EXPECT_THROW(backend::create_backend("trn2-sim:fast"), Error);
  bool listed = false;
  for (const backend::BackendInfo& info : backend::list_backends()) {
    if (info.name == "trn2-sim") {
      listed = true;
      EXPECT_NE(info.detail.find("trn2-sim:timing"), std::string::npos) << info.detail;
    }
  }
  EXPECT_TRUE(listed);
}

}  // namespace
}  // namespace switchyard
