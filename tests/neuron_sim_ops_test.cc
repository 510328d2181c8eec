// The trn*-sim backends op by op through the Backend interface: what runs as a tile program and
// what on the host (and that the simulation report says which), activations kept as bf16 in device
// memory, the ops the model's step needs beyond the layers (Cast, AdamW with a parameter copy and
// clipping from the device norm, the step sums), and errors that name the op and the operand.
// Every result is checked against the CPU backend on the same values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/simulated_span.h"
#include "core/dtype.h"
#include "expect_error.h"
#include "random_data.h"
#include "relative_error.h"

namespace switchyard {
namespace {

namespace ops = backend::ops;

// A backend and the device tensors a test makes on it (released with it).
class Device {
 public:
  explicit Device(const std::string& name) : backend_(backend::create_backend(name)) {}
  ~Device() {
    for (void* p : allocations_) backend_->release(p);
  }
  backend::Backend& operator*() { return *backend_; }
  backend::Backend* operator->() { return backend_.get(); }

  // `values` as a dense tensor of `dtype` (rounded to nearest even when bf16).
  Tensor floats(DType dtype, std::initializer_list<int64_t> shape,
                const std::vector<float>& values) {
    Tensor t = allocate(dtype, shape);
    EXPECT_EQ(static_cast<size_t>(t.numel()), values.size());
    backend::from_host_f32(*backend_, t, values.data());
    return t;
  }
  Tensor ids(std::initializer_list<int64_t> shape, const std::vector<int32_t>& values) {
    Tensor t = allocate(DType::kI32, shape);
    EXPECT_EQ(static_cast<size_t>(t.numel()), values.size());
    backend_->copy_to_device(t.data, values.data(), values.size() * sizeof(int32_t));
    return t;
  }
  Tensor scalar(double value) {
    Tensor t = allocate(DType::kF64, {1});
    backend_->copy_to_device(t.data, &value, sizeof(double));
    return t;
  }
  std::vector<float> read(const Tensor& t) { return backend::to_host_f32(*backend_, t); }
  double read_scalar(const Tensor& t) {
    double value = 0;
    backend_->copy_to_host(&value, t.data, sizeof(double));
    return value;
  }
  backend::SimulationReport report() { return *backend::simulation_report(*backend_); }

 private:
  Tensor allocate(DType dtype, std::initializer_list<int64_t> shape) {
    Tensor t = Tensor::dense(static_cast<void*>(nullptr), dtype, shape);
    t.data = backend_->allocate(std::max<size_t>(t.bytes(), 1));
    allocations_.push_back(t.data);
    return t;
  }
  std::unique_ptr<backend::Backend> backend_;
  std::vector<void*> allocations_;
};

// Values as bf16 holds them.
std::vector<float> rounded_to_bf16(std::vector<float> values) {
  for (float& v : values) v = bf16_to_float(float_to_bf16(v));
  return values;
}

// q, k, v of a packed [N, 3C] projection as [N, heads, head_dim] views.
std::vector<Tensor> qkv_views(const Tensor& qkv, int heads, int head_dim) {
  std::vector<Tensor> views;
  const int64_t N = qkv.shape[0], C = int64_t{heads} * head_dim;
  for (int i = 0; i < 3; ++i) {
    Tensor t = Tensor::dense(qkv.data, qkv.dtype, {N, heads, head_dim});
    t.strides[0] = 3 * C;
    t.data = static_cast<char*>(qkv.data) + i * C * dtype_bytes(qkv.dtype);
    views.push_back(t);
  }
  return views;
}

TEST(NeuronSimOps, PrecisionOfEachMode) {
  for (const char* name : {"trn1-sim", "trn2-sim"}) {
    const backend::Precision p = backend::create_backend(name)->precision();
    EXPECT_EQ(p.activations, DType::kBF16) << name;
    EXPECT_EQ(p.matmul_weights, DType::kF32) << name;  // master weights, rounded on the chip
  }
  for (const char* name : {"trn1-sim-fp32", "trn2-sim-fp32"}) {
    const backend::Precision p = backend::create_backend(name)->precision();
    EXPECT_EQ(p.activations, DType::kF32) << name;
    EXPECT_EQ(p.matmul_weights, DType::kF32) << name;
  }
}

TEST(NeuronSimOps, SupportsSaysWhatRunsAsATileProgram) {
  auto sim = backend::create_backend("trn2-sim");
  const Tensor bf16 = Tensor::dense(static_cast<void*>(nullptr), DType::kBF16, {4, 8});
  const Tensor f32 = Tensor::dense(static_cast<void*>(nullptr), DType::kF32, {4, 8});
  const Tensor i32 = Tensor::dense(static_cast<void*>(nullptr), DType::kI32, {4, 8});
  EXPECT_TRUE(sim->supports(ops::Linear{.out = bf16, .inp = bf16, .weight = f32, .bias = {}}));
  EXPECT_TRUE(sim->supports(ops::Linear{.out = f32, .inp = f32, .weight = bf16, .bias = f32}));
  EXPECT_FALSE(sim->supports(ops::Linear{.out = bf16, .inp = i32, .weight = f32, .bias = {}}));
  EXPECT_TRUE(sim->supports(ops::Cast{.out = bf16, .inp = f32}));
  EXPECT_TRUE(sim->supports(ops::LayerNormBackward{.dinp = bf16, .dweight = f32, .dbias = f32,
                                                   .dout = bf16, .inp = bf16, .weight = f32,
                                                   .mean = f32, .rstd = f32}));
  // Statistics and parameter gradients are fp32 only.
  EXPECT_FALSE(sim->supports(ops::LayerNormBackward{.dinp = bf16, .dweight = bf16, .dbias = f32,
                                                    .dout = bf16, .inp = bf16, .weight = f32,
                                                    .mean = f32, .rstd = f32}));
  // The paged cache ops are tile programs, for float caches and int32 slots.
  EXPECT_TRUE(sim->supports(ops::KvCacheWrite{.k_cache = bf16, .v_cache = bf16, .k = bf16,
                                              .v = bf16, .slots = i32}));
  EXPECT_FALSE(sim->supports(ops::KvCacheWrite{.k_cache = bf16, .v_cache = bf16, .k = bf16,
                                               .v = bf16, .slots = f32}));
  EXPECT_TRUE(sim->supports(ops::PagedAttention{.out = bf16, .q = bf16, .k_cache = bf16,
                                                .v_cache = bf16, .block_tables = i32,
                                                .query_start = i32, .context_len = i32,
                                                .sinks = f32}));
  // No tile program of its own: the composites compose ops that have one.
  EXPECT_FALSE(sim->supports(ops::AddLayerNorm{.residual = bf16, .out = bf16, .mean = f32,
                                               .rstd = f32, .a = bf16, .b = bf16, .weight = f32,
                                               .bias = f32}));
}

TEST(NeuronSimOps, PagedCacheFormsWithoutATileProgramRunOnTheHostAndAreReported) {
  // A prefill chunk of 3 rows (positions 4..6) of one sequence over a paged cache of 4-position
  // blocks, grouped-query (4 heads over 2 key-value heads), with heads of 160 dimensions: more
  // than the PE array's 128 rows, which no tile program takes.
  const int H = 4, KV = 2, hd = 160, bs = 4, blocks = 6, ctx = 7, rows = 3;
  const std::vector<float> k = rounded_to_bf16(random_floats(ctx * KV * hd, 1));
  const std::vector<float> v = rounded_to_bf16(random_floats(ctx * KV * hd, 2));
  const std::vector<float> q = rounded_to_bf16(random_floats(rows * H * hd, 3));
  const std::vector<int32_t> table = {3, 1};
  std::vector<int32_t> slots(ctx);
  for (int p = 0; p < ctx; ++p) slots[p] = table[p / bs] * bs + p % bs;
  const std::vector<float> zeros(blocks * bs * KV * hd, 0.0f);

  auto run = [&](Device& d, DType act, std::vector<float>& out_values) {
    const Tensor k_cache = d.floats(act, {blocks, bs, KV, hd}, zeros);
    const Tensor v_cache = d.floats(act, {blocks, bs, KV, hd}, zeros);
    const Tensor kt = d.floats(act, {ctx, KV, hd}, k), vt = d.floats(act, {ctx, KV, hd}, v);
    const Tensor qt = d.floats(act, {rows, H, hd}, q);
    const Tensor out = d.floats(act, {rows, H * hd}, std::vector<float>(rows * H * hd, 0.0f));
    const Tensor slot_t = d.ids({ctx}, slots), table_t = d.ids({1, 2}, table);
    const Tensor starts = d.ids({2}, {0, rows}), lengths = d.ids({1}, {ctx});
    d->run(ops::KvCacheWrite{.k_cache = k_cache, .v_cache = v_cache, .k = kt, .v = vt,
                             .slots = slot_t});
    d->run(ops::PagedAttention{.out = out, .q = qt, .k_cache = k_cache, .v_cache = v_cache,
                               .block_tables = table_t, .query_start = starts,
                               .context_len = lengths, .sinks = {}, .max_query_len = rows,
                               .max_context_len = ctx,
                               .spec = {.heads = H, .kv_heads = KV, .head_dim = hd}});
    out_values = d.read(out);
  };
  Device cpu("cpu");
  std::vector<float> want, got;
  run(cpu, DType::kF32, want);
  Device sim("trn2-sim");
  const backend::SimulationReport before = sim.report();
  run(sim, DType::kBF16, got);
  const backend::SimulationReport after = sim.report();
  // The cache write (a tile program: bf16 rows copied exactly) fed the reference, which ran on
  // the bf16 values widened; its result was rounded on the way back.
  EXPECT_EQ(got, rounded_to_bf16(want));
  EXPECT_GT(after.total_ns, before.total_ns);  // the write's time; the attention costs none
  using Calls = std::vector<std::pair<std::string, int64_t>>;
  EXPECT_EQ(after.unsimulated_ops, (Calls{{"paged_attention", 1}}));
  const backend::SimulatedSpan span = backend::simulated_span(before, after, rows);
  EXPECT_EQ(span.unsimulated_ops, (Calls{{"paged_attention", 1}}));
  const std::string line = backend::describe_span(span, after, "chunk");
  EXPECT_NE(line.find("not simulated (ran on the host): paged_attention x1"), std::string::npos)
      << line;
}

TEST(NeuronSimOps, AttentionRunsNativelyOnPackedProjections) {
  const int B = 2, T = 5, H = 4, hd = 8, C = H * hd, N = B * T;
  const std::vector<float> qkv_values = random_floats(N * 3 * C, 7);
  const ops::AttentionSpec gpt2{.heads = H, .kv_heads = H, .head_dim = hd};
  const ops::AttentionSpec grouped{.heads = H, .kv_heads = 2, .head_dim = hd};

  // GPT-2's packed q | k | v: a tile program, on the simulated clock.
  auto packed = [&](Device& d, std::vector<float>& out_values) {
    const Tensor qkv = d.floats(DType::kF32, {N, 3 * C}, qkv_values);
    const std::vector<Tensor> v = qkv_views(qkv, H, hd);
    const Tensor out = d.floats(DType::kF32, {N, C}, std::vector<float>(N * C, 0.0f));
    const size_t record = d->attention_record_floats(gpt2, B, T);
    const Tensor rec = d.floats(DType::kF32, {static_cast<int64_t>(record)},
                                std::vector<float>(record, 0.0f));
    d->run(ops::Attention{.out = out, .record = rec, .q = v[0], .k = v[1], .v = v[2], .sinks = {},
                          .batch = B, .seq = T, .spec = gpt2});
    out_values = d.read(out);
  };
  // Grouped-query heads in separate q, k, v tensors: the host.
  auto separate = [&](Device& d, std::vector<float>& out_values) {
    const Tensor q = d.floats(DType::kF32, {N, H, hd}, random_floats(N * C, 8));
    const Tensor k = d.floats(DType::kF32, {N, 2, hd}, random_floats(N * 2 * hd, 9));
    const Tensor v = d.floats(DType::kF32, {N, 2, hd}, random_floats(N * 2 * hd, 10));
    const Tensor out = d.floats(DType::kF32, {N, C}, std::vector<float>(N * C, 0.0f));
    const size_t record = d->attention_record_floats(grouped, B, T);
    const Tensor rec = d.floats(DType::kF32, {static_cast<int64_t>(record)},
                                std::vector<float>(record, 0.0f));
    d->run(ops::Attention{.out = out, .record = rec, .q = q, .k = k, .v = v, .sinks = {},
                          .batch = B, .seq = T, .spec = grouped});
    out_values = d.read(out);
  };
  Device cpu("cpu"), sim("trn2-sim-fp32");
  std::vector<float> want, got;
  packed(cpu, want);
  backend::SimulationReport before = sim.report();
  packed(sim, got);
  backend::SimulationReport after = sim.report();
  EXPECT_LT(relative_error(got, want), 1e-5);
  EXPECT_GT(after.total_ns, before.total_ns);
  EXPECT_TRUE(after.unsimulated_ops.empty());

  separate(cpu, want);
  before = after;
  separate(sim, got);
  after = sim.report();
  EXPECT_EQ(got, want);  // the CPU reference itself, in place on fp32 tensors
  EXPECT_EQ(after.total_ns, before.total_ns);
  EXPECT_EQ(after.unsimulated_ops,
            (std::vector<std::pair<std::string, int64_t>>{{"attention", 1}}));
}

TEST(NeuronSimOps, ActivationsStayBf16InDeviceMemory) {
  // An embedding of tokens at scattered positions (a flat batch), then gelu, all bf16 in place.
  const int N = 150, C = 24, V = 40, P = 64;
  std::vector<int32_t> ids(N), positions(N);
  for (int i = 0; i < N; ++i) {
    ids[i] = (i * 7) % V;
    positions[i] = (i * 13 + 5) % P;
  }
  const std::vector<float> wte = random_floats(V * C, 11), wpe = random_floats(P * C, 12);
  auto run = [&](Device& d, DType act, std::vector<float>& x, std::vector<float>& y) {
    const Tensor out = d.floats(act, {N, C}, std::vector<float>(N * C, 0.0f));
    const Tensor gelu = d.floats(act, {N, C}, std::vector<float>(N * C, 0.0f));
    d->run(ops::Embedding{.out = out, .ids = d.ids({N}, ids),
                          .table = d.floats(DType::kF32, {V, C}, wte),
                          .position_ids = d.ids({N}, positions),
                          .position_table = d.floats(DType::kF32, {P, C}, wpe)});
    d->run(ops::Gelu{.out = gelu, .inp = out});
    x = d.read(out);
    y = d.read(gelu);
  };
  Device cpu("cpu"), sim("trn1-sim");
  std::vector<float> want_x, want_y, got_x, got_y;
  run(cpu, DType::kF32, want_x, want_y);
  run(sim, DType::kBF16, got_x, got_y);
  EXPECT_LT(relative_error(got_x, want_x), 1e-2);
  EXPECT_LT(relative_error(got_y, want_y), 1e-2);
  EXPECT_EQ(got_x, rounded_to_bf16(got_x));  // what was stored is bf16
  EXPECT_GT(relative_error(got_x, want_x), 0.0);
  EXPECT_TRUE(sim.report().unsimulated_ops.empty());
}

TEST(NeuronSimOps, CastIsATileProgramThatRoundsToNearestEven) {
  Device sim("trn2-sim");
  // Ties between bf16 neighbours (1 + 2^-8 and 1 + 3 * 2^-8), values beyond, and a NaN.
  std::vector<float> values = {1.0f + 1.0f / 256, 1.0f + 3.0f / 256, -2.5e-3f, 3.0e38f, 1e-40f,
                               std::nanf("")};
  const std::vector<float> more = random_floats(1000, 13, 100.0f);
  values.insert(values.end(), more.begin(), more.end());
  const int64_t n = static_cast<int64_t>(values.size());
  const Tensor f32 = sim.floats(DType::kF32, {n}, values);
  const Tensor bf16 = sim.floats(DType::kBF16, {n}, std::vector<float>(values.size(), 0.0f));
  const Tensor back = sim.floats(DType::kF32, {n}, std::vector<float>(values.size(), 0.0f));
  const double before = sim.report().total_ns;
  sim->run(ops::Cast{.out = bf16, .inp = f32});
  sim->run(ops::Cast{.out = back, .inp = bf16});
  EXPECT_GT(sim.report().total_ns, before);
  EXPECT_TRUE(sim.report().unsimulated_ops.empty());
  std::vector<uint16_t> bits(values.size());
  sim->copy_to_host(bits.data(), bf16.data, bits.size() * sizeof(uint16_t));
  const std::vector<float> widened = sim.read(back);
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(bits[i], float_to_bf16(values[i])) << "value " << values[i];
    const float want = bf16_to_float(float_to_bf16(values[i]));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(widened[i]));
    } else {
      EXPECT_EQ(widened[i], want) << "value " << values[i];
    }
  }
}

TEST(NeuronSimOps, AdamWClipsFromTheDeviceNormAndWritesTheParameterCopy) {
  const int64_t n = 5000;
  const std::vector<float> params = random_floats(n, 21), grads = random_floats(n, 22, 0.1f);
  const std::vector<float> m = random_floats(n, 23, 0.01f), v = random_floats(n, 24, 0.01f, 0.02f);
  ops::AdamWStep step{.learning_rate = 1e-2f, .weight_decay = 0.1f, .step = 3};
  auto run = [&](Device& d, std::vector<float>& p, std::vector<float>& copy, double& norm) {
    const Tensor pt = d.floats(DType::kF32, {n}, params), gt = d.floats(DType::kF32, {n}, grads);
    const Tensor mt = d.floats(DType::kF32, {n}, m), vt = d.floats(DType::kF32, {n}, v);
    const Tensor sum = d.scalar(-1.0);
    d->run(ops::SumOfSquares{.total = sum, .x = gt});
    norm = d.read_scalar(sum);
    const Tensor copy_t = d.floats(DType::kBF16, {n}, std::vector<float>(n, 0.0f));
    d->run(ops::AdamW{.params = pt, .grads = gt, .m = mt, .v = vt, .grad_sum_of_squares = sum,
                      .params_copy = copy_t, .step = step, .clip = 1.0f});
    p = d.read(pt);
    copy = d.read(copy_t);
  };
  Device cpu("cpu"), sim("trn2-sim-fp32");
  std::vector<float> want_p, want_copy, got_p, got_copy;
  double want_sum = 0, got_sum = 0;
  run(cpu, want_p, want_copy, want_sum);
  run(sim, got_p, got_copy, got_sum);
  // The norm (sqrt(5000 * 0.01 / 3) ~ 4) is clipped to 1: the gradients are scaled by ~1/4.
  EXPECT_GT(std::sqrt(want_sum), 2.0);
  EXPECT_NEAR(got_sum, want_sum, 1e-6 * want_sum);
  EXPECT_LT(relative_error(got_p, want_p), 1e-6);
  EXPECT_EQ(got_copy, rounded_to_bf16(got_p));
  EXPECT_TRUE(sim.report().unsimulated_ops.empty());
}

TEST(NeuronSimOps, StepSumsRunOnTheChip) {
  Device sim("trn2-sim");
  const std::vector<float> losses = random_floats(300, 31, 1.0f, 10.0f);
  const Tensor x = sim.floats(DType::kF32, {300}, losses);
  const Tensor total = sim.scalar(0.0);
  const double before = sim.report().total_ns;
  sim->run(ops::AccumulateSum{.total = total, .x = x, .scale = 0.5});
  sim->run(ops::AccumulateSum{.total = total, .x = x, .scale = 0.25});
  EXPECT_GT(sim.report().total_ns, before);
  double sum = 0;
  for (float value : losses) sum += value;
  EXPECT_NEAR(sim.read_scalar(total), 0.75 * sum, 1e-6 * sum);
  EXPECT_TRUE(sim.report().unsimulated_ops.empty());
}

TEST(NeuronSimOps, ErrorsNameTheOpAndTheOperand) {
  Device sim("trn2-sim");
  const Tensor x = sim.floats(DType::kBF16, {4, 8}, random_floats(32, 41));
  const Tensor stats = sim.floats(DType::kF32, {4}, random_floats(4, 42));
  const Tensor w = sim.floats(DType::kF32, {8}, random_floats(8, 43));
  const Tensor int_w = sim.ids({8}, std::vector<int32_t>(8, 1));
  expect_error(
      [&] {
        sim->run(ops::LayerNorm{.out = x, .mean = stats, .rstd = stats, .inp = x,
                                .weight = int_w, .bias = w});
      },
      {"trn2-sim layernorm", "weight", "fp32", "int32"});
  const Tensor weight = sim.floats(DType::kF32, {6, 5}, random_floats(30, 44));
  expect_error([&] { sim->run(ops::Linear{.out = x, .inp = x, .weight = weight, .bias = {}}); },
               {"trn2-sim linear", "inp", "[*, 5]"});
  expect_error([&] { sim->run(ops::Gelu{.out = {}, .inp = x}); },
               {"trn2-sim gelu", "out", "missing"});
  const Tensor table = sim.floats(DType::kF32, {3, 8}, random_floats(24, 45));
  expect_error(
      [&] {
        sim->run(ops::Embedding{.out = x, .ids = sim.ids({4}, {0, 1, 7, 2}), .table = table,
                                .position_ids = {}, .position_table = {}});
      },
      {"trn2-sim embedding", "ids", "7", "row 2"});
}

}  // namespace
}  // namespace switchyard
