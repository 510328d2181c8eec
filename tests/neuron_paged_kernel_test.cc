// The paged KV cache ops (KvCacheWrite, PagedAttention) as tile programs on trn*-sim, through the
// Backend interface, against the CPU reference kernels in double on the stored values: block
// sizes 1, 4, 5 and 16, ragged sequences over scattered blocks, grouped-query heads (groups of 1,
// 3, 4, 8 and 48 heads), decode and prefill rows in one launch, sliding windows, sinks, bf16 and
// fp32 tiles; the simulated clock sees them and longer contexts cost more. The plan that lays rows
// out on partitions is checked on its own at the end.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/neuron/paged_attention_plan.h"
#include "backend/cpu/attention_kernels.h"
#include "core/rng.h"
#include "random_data.h"
#include "relative_error.h"

namespace switchyard {
namespace {

namespace ops = backend::ops;
namespace cpu = backend::cpu;

struct Sequence {
  int rows, context;
};

struct Case {
  std::string device;  // "trn2-sim", "trn2-sim-fp32", ...
  int H, KV, hd, bs, window;
  bool sinks;
  std::vector<Sequence> sequences;
};

struct Outcome {
  double out_error = 0;         // relative to the reference in double
  bool caches_equal = false;    // every cache element as the reference wrote it
  double write_ns = 0;          // simulated time of the KvCacheWrite of the new rows
  double attention_ns = 0;      // simulated time of PagedAttention
  std::vector<std::pair<std::string, int64_t>> unsimulated;
};

// A backend and the device tensors made on it (released with it).
class Device {
 public:
  explicit Device(const std::string& name) : backend_(backend::create_backend(name)) {}
  ~Device() {
    for (void* p : allocations_) backend_->release(p);
  }
  backend::Backend* operator->() { return backend_.get(); }
  // `values` stored in `dtype`; `values` becomes what was stored (rounded).
  Tensor floats(DType dtype, std::initializer_list<int64_t> shape, std::vector<float>& values) {
    Tensor t = allocate(dtype, shape);
    backend::from_host_f32(*backend_, t, values.data());
    values = backend::to_host_f32(*backend_, t);
    return t;
  }
  Tensor ids(std::initializer_list<int64_t> shape, const std::vector<int32_t>& values) {
    Tensor t = allocate(DType::kI32, shape);
    backend_->copy_to_device(t.data, values.data(), values.size() * sizeof(int32_t));
    return t;
  }
  std::vector<float> read(const Tensor& t) { return backend::to_host_f32(*backend_, t); }
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

// [rows, heads, head_dim] view of columns [col, col + heads * head_dim) of a dense [rows, width]
// projection: rows strided by the projection's width.
Tensor heads_view(const Tensor& projection, int64_t col, int heads, int head_dim) {
  Tensor t = Tensor::dense(projection.data, projection.dtype,
                           {projection.shape[0], int64_t{heads}, int64_t{head_dim}});
  t.strides[0] = projection.shape[1];
  t.data = static_cast<char*>(projection.data) + col * dtype_bytes(projection.dtype);
  return t;
}

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Writes every sequence's earlier positions (history) and then its new rows into a paged cache of
// scattered blocks, attends, and compares everything with the CPU kernels in double.
Outcome run_case(const Case& c) {
  Device d(c.device);
  const DType act = d->precision().activations;
  const int S = static_cast<int>(c.sequences.size()), W = c.KV * c.hd, width = (c.H + 2 * c.KV) * c.hd;
  int N = 0, max_blocks = 0, used = 0;
  for (const Sequence& s : c.sequences) {
    N += s.rows;
    max_blocks = std::max(max_blocks, (s.context + c.bs - 1) / c.bs + 1);  // a spare column
    used += (s.context + c.bs - 1) / c.bs;
  }
  const int blocks = used + 3;
  // Blocks handed out in a shuffled order; blocks before the window's reach stay -1.
  std::vector<int32_t> order(blocks);
  std::iota(order.begin(), order.end(), 0);
  Rng rng(static_cast<uint64_t>(blocks * 31 + c.bs));
  for (int i = blocks - 1; i > 0; --i) std::swap(order[i], order[rng.next_u64() % (i + 1)]);
  std::vector<int32_t> tables(static_cast<size_t>(S) * max_blocks, -1), starts(S + 1, 0), contexts(S);
  std::vector<int32_t> history_slots, new_slots;
  int next_block = 0;
  for (int s = 0; s < S; ++s) {
    const Sequence& seq = c.sequences[s];
    starts[s + 1] = starts[s] + seq.rows;
    contexts[s] = seq.context;
    const int first = seq.context - seq.rows;
    const int lo = c.window > 0 ? std::max(0, first - c.window + 1) : 0;
    for (int b = lo / c.bs; b * c.bs < seq.context; ++b) tables[s * max_blocks + b] = order[next_block++];
    for (int p = 0; p < seq.context; ++p) {
      const int32_t id = tables[s * max_blocks + p / c.bs];
      (p < first ? history_slots : new_slots).push_back(id < 0 ? -1 : id * c.bs + p % c.bs);
    }
  }
  const int Nh = static_cast<int>(history_slots.size());

  std::vector<float> k_cache = random_floats(size_t(blocks) * c.bs * W, 1);
  std::vector<float> v_cache = random_floats(size_t(blocks) * c.bs * W, 2);
  std::vector<float> history_k = random_floats(size_t(std::max(Nh, 1)) * W, 3);
  std::vector<float> history_v = random_floats(size_t(std::max(Nh, 1)) * W, 4);
  std::vector<float> projection = random_floats(size_t(N) * width, 5);
  std::vector<float> sinks = random_floats(c.H, 6, 1.0f, 0.5f);
  std::vector<float> out(size_t(N) * c.H * c.hd, 0.0f);
  const Tensor kc = d.floats(act, {blocks, c.bs, c.KV, c.hd}, k_cache);
  const Tensor vc = d.floats(act, {blocks, c.bs, c.KV, c.hd}, v_cache);
  const Tensor hk = d.floats(act, {std::max(Nh, 1), c.KV, c.hd}, history_k);
  const Tensor hv = d.floats(act, {std::max(Nh, 1), c.KV, c.hd}, history_v);
  const Tensor proj = d.floats(act, {N, width}, projection);
  const Tensor sink_t = d.floats(DType::kF32, {c.H}, sinks);
  const Tensor out_t = d.floats(act, {N, c.H * c.hd}, out);
  const Tensor q = heads_view(proj, 0, c.H, c.hd);
  const Tensor k = heads_view(proj, c.H * c.hd, c.KV, c.hd);
  const Tensor v = heads_view(proj, (c.H + c.KV) * c.hd, c.KV, c.hd);

  Outcome result;
  if (Nh > 0) {
    Tensor hk_n = hk, hv_n = hv;
    d->run(ops::KvCacheWrite{.k_cache = kc, .v_cache = vc, .k = hk_n, .v = hv_n,
                             .slots = d.ids({Nh}, history_slots)});
  }
  const Tensor new_slot_t = d.ids({N}, new_slots);
  double t0 = d.report().total_ns;
  d->run(ops::KvCacheWrite{.k_cache = kc, .v_cache = vc, .k = k, .v = v, .slots = new_slot_t});
  double t1 = d.report().total_ns;
  result.write_ns = t1 - t0;
  const ops::AttentionSpec spec{.heads = c.H, .kv_heads = c.KV, .head_dim = c.hd,
                                .window = c.window};
  int max_rows = 0, max_context = 0;
  for (const Sequence& s : c.sequences) {
    max_rows = std::max(max_rows, s.rows);
    max_context = std::max(max_context, s.context);
  }
  d->run(ops::PagedAttention{.out = out_t, .q = q, .k_cache = kc, .v_cache = vc,
                             .block_tables = d.ids({S, max_blocks}, tables),
                             .query_start = d.ids({S + 1}, starts),
                             .context_len = d.ids({S}, contexts),
                             .sinks = c.sinks ? sink_t : Tensor{}, .max_query_len = max_rows,
                             .max_context_len = max_context, .spec = spec});
  const backend::SimulationReport after = d.report();
  result.attention_ns = after.total_ns - t1;
  result.unsimulated = after.unsimulated_ops;

  // The reference in double, on the values as stored.
  std::vector<double> rk = to_double(k_cache), rv = to_double(v_cache);
  const std::vector<double> dp = to_double(projection);
  const std::vector<double> dhk = to_double(history_k), dhv = to_double(history_v);
  if (Nh > 0) cpu::kv_cache_write<double>(rk.data(), rv.data(), dhk.data(), W, dhv.data(), W,
                                          history_slots.data(), Nh, c.KV, c.hd);
  cpu::kv_cache_write<double>(rk.data(), rv.data(), dp.data() + c.H * c.hd, width,
                              dp.data() + (c.H + c.KV) * c.hd, width, new_slots.data(), N, c.KV,
                              c.hd);
  cpu::PagedGeometry g;
  g.heads = c.H;
  g.kv_heads = c.KV;
  g.head_dim = c.hd;
  g.window = c.window;
  g.block_size = c.bs;
  g.sequences = S;
  g.max_blocks = max_blocks;
  g.ldq = width;
  g.ldo = int64_t{c.H} * c.hd;
  std::vector<double> ref(out.size());
  cpu::paged_attention<double>(ref.data(), dp.data(), rk.data(), rv.data(), tables.data(),
                               starts.data(), contexts.data(), c.sinks ? sinks.data() : nullptr, g,
                               1.0 / std::sqrt(static_cast<double>(c.hd)));
  result.out_error = relative_error(d.read(out_t), ref);
  result.caches_equal = to_double(d.read(kc)) == rk && to_double(d.read(vc)) == rv;
  return result;
}

std::string describe(const Case& c) {
  std::string s = c.device + " H=" + std::to_string(c.H) + " KV=" + std::to_string(c.KV) +
                  " hd=" + std::to_string(c.hd) + " bs=" + std::to_string(c.bs) +
                  " window=" + std::to_string(c.window) + (c.sinks ? " sinks" : "") + " seqs";
  for (const Sequence& q : c.sequences)
    s += " " + std::to_string(q.rows) + "/" + std::to_string(q.context);
  return s;
}

using Calls = std::vector<std::pair<std::string, int64_t>>;

// Bounds: about 10x the errors measured 2026-12 (fp32 tiles 0.7-1.7e-7, bf16 tiles 2.0-2.3e-3).
constexpr double kFp32Bound = 2e-6, kBf16Bound = 2.5e-2;

void expect_case(const Case& c, double bound) {
  const Outcome r = run_case(c);
  std::printf("  %s: out error %.2e, write %.2f us, attention %.2f us\n", describe(c).c_str(),
              r.out_error, r.write_ns / 1e3, r.attention_ns / 1e3);
  EXPECT_LT(r.out_error, bound) << describe(c);
  EXPECT_TRUE(r.caches_equal) << describe(c);
  EXPECT_GT(r.write_ns, 0.0) << describe(c);
  EXPECT_GT(r.attention_ns, 0.0) << describe(c);
  EXPECT_EQ(r.unsimulated, Calls{}) << describe(c);
}

TEST(NeuronPagedKernels, DecodeStepsOverSixteenPositionBlocks) {
  expect_case({"trn2-sim", 4, 4, 32, 16, 0, false, {{1, 37}, {1, 16}, {1, 90}}}, kBf16Bound);
  expect_case({"trn2-sim-fp32", 4, 4, 32, 16, 0, false, {{1, 37}, {1, 16}, {1, 90}}}, kFp32Bound);
}

TEST(NeuronPagedKernels, RaggedPrefillChunksGroupedQueryBlocksOfFive) {
  // 130 rows: two query tiles of one sequence; 600 positions: two key blocks.
  expect_case({"trn2-sim-fp32", 6, 2, 16, 5, 0, false, {{7, 19}, {1, 3}, {130, 140}, {4, 600}}},
              2e-6);
  expect_case({"trn1-sim", 6, 2, 16, 5, 0, false, {{7, 19}, {1, 3}, {130, 140}, {4, 600}}}, kBf16Bound);
}

TEST(NeuronPagedKernels, SlidingWindowAndSinksOverSinglePositionBlocks) {
  expect_case({"trn1-sim", 4, 1, 24, 1, 6, true, {{9, 30}, {1, 12}, {3, 3}}}, kBf16Bound);
  expect_case({"trn2-sim-fp32", 4, 1, 24, 1, 6, true, {{9, 30}, {1, 12}, {3, 3}}}, kFp32Bound);
}

TEST(NeuronPagedKernels, LongContextWithWindowSinksAndGroupedQuery) {
  expect_case({"trn2-sim-fp32", 8, 2, 64, 16, 40, true, {{20, 700}, {1, 41}}}, kFp32Bound);
  expect_case({"trn2-sim-fp32", 8, 2, 64, 16, 0, true, {{3, 1100}, {150, 150}}}, kFp32Bound);
  expect_case({"trn2-sim", 8, 2, 64, 16, 0, true, {{3, 1100}, {150, 150}}}, kBf16Bound);
}

TEST(NeuronPagedKernels, LongerContextsCostMoreSimulatedTime) {
  double previous = 0;
  for (int context : {64, 512, 2048}) {
    const Outcome r = run_case({"trn2-sim", 4, 4, 64, 16, 0, false, {{1, context}, {1, context}}});
    std::printf("  decode of 2 sequences at context %d: attention %.2f us\n", context,
                r.attention_ns / 1e3);
    EXPECT_GT(r.attention_ns, previous) << "context " << context;
    previous = r.attention_ns;
  }
}

TEST(NeuronPagedKernels, DecodeRowsPackEightHeadsOfAKvHeadOntoPartitions) {
  // G = 8: one decode row's 32 heads are one set of four 8-row lanes; ragged contexts, one of
  // them a single position and one past a 512-key block.
  const std::vector<Sequence> batch{{1, 1}, {1, 530}, {1, 77}, {1, 1025}, {1, 16}};
  expect_case({"trn2-sim-fp32", 32, 4, 64, 16, 0, true, batch}, kFp32Bound);
  expect_case({"trn2-sim", 32, 4, 64, 16, 0, true, batch}, kBf16Bound);
  expect_case({"trn2-sim-fp32", 32, 4, 64, 16, 128, true, batch}, kFp32Bound);
  // G = 8 with two sets of four kv heads each, no sinks, a window smaller than a table block.
  expect_case({"trn2-sim-fp32", 64, 8, 32, 16, 5, false, {{1, 40}, {1, 3}, {1, 600}}}, kFp32Bound);
}

TEST(NeuronPagedKernels, DecodeRowsWithoutGroupingAndWithWideGroups) {
  // G = 1: four one-row lanes a set, three sets.
  expect_case({"trn2-sim-fp32", 12, 12, 32, 16, 0, true, {{1, 20}, {1, 513}, {1, 2}}}, kFp32Bound);
  // G = 48: one lane of 48 heads at a stride of 64; G = 3: lanes of 3 heads.
  expect_case({"trn2-sim-fp32", 96, 2, 16, 4, 0, true, {{1, 9}, {1, 130}}}, kFp32Bound);
  expect_case({"trn1-sim", 6, 2, 16, 4, 7, true, {{1, 9}, {1, 130}}}, kBf16Bound);
}

TEST(NeuronPagedKernels, DecodeAndPrefillRowsInOneLaunch) {
  // mq = 1 units (packed heads) next to prefill units of 2, 33 and 130 rows (one head a lane at
  // strides 32, 64 and 128), with windows that cut some prefill rows' keys and not others.
  const std::vector<Sequence> mixed{{1, 300}, {2, 2}, {33, 90}, {1, 5}, {130, 700}, {1, 64}};
  expect_case({"trn2-sim-fp32", 8, 2, 32, 16, 0, true, mixed}, kFp32Bound);
  expect_case({"trn2-sim-fp32", 8, 2, 32, 16, 50, true, mixed}, kFp32Bound);
  expect_case({"trn2-sim", 8, 1, 32, 16, 50, false, mixed}, kBf16Bound);
}

TEST(NeuronPagedKernels, WideHeadsInFp32TakeShorterKeyBlocks) {
  // 12 kv heads of 64 in fp32 tiles: 512-key blocks' buffers do not fit trn1's SBUF, shorter
  // blocks do (the op still runs as a tile program), across several blocks and a window.
  expect_case({"trn1-sim-fp32", 12, 12, 64, 16, 300, true, {{1, 700}, {5, 600}, {1, 40}}},
              kFp32Bound);
}

// One layer of gpt-oss-20b's tensor-parallel shard (32 query heads over 4 kv heads of 64, sinks,
// 16-position blocks), decoding at a context of 1025: full attention and the 128-position window
// of the sliding layers (printed for the record; the results are checked like the other cases).
TEST(NeuronPagedKernels, GptOssShardDecodeLayer) {
  for (int batch : {1, 4}) {
    for (int window : {0, 128}) {
      const Case c{"trn2-sim", 32, 4, 64, 16, window, true,
                   std::vector<Sequence>(batch, Sequence{1, 1025})};
      const Outcome r = run_case(c);
      std::printf("gpt-oss-20b TP=2 shard decode on trn2-sim (batch %d, context 1025, window %d, "
                  "bf16), per layer: paged_attention %.2f us; out error %.2e\n",
                  batch, window, r.attention_ns / 1e3, r.out_error);
      EXPECT_LT(r.out_error, kBf16Bound);
      EXPECT_TRUE(r.caches_equal);
      EXPECT_EQ(r.unsimulated, Calls{});
    }
  }
}

// gpt2-124m's attention in one decode step: batch 8 at context 512, 12 heads of 64, bf16, 16-position
// blocks (printed for the record; the results are checked like the other cases).
TEST(NeuronPagedKernels, Gpt2SizedDecodeStep) {
  for (const char* device : {"trn2-sim", "trn1-sim"}) {
    const Case c{device, 12, 12, 64, 16, 0, false, std::vector<Sequence>(8, Sequence{1, 512})};
    const Outcome r = run_case(c);
    std::printf("gpt2-124m decode step on %s (batch 8, context 512, bf16), per layer: "
                "kv_cache_write %.2f us, paged_attention %.2f us; x12 layers %.1f us; out error "
                "%.2e\n",
                device, r.write_ns / 1e3, r.attention_ns / 1e3,
                12 * (r.write_ns + r.attention_ns) / 1e3, r.out_error);
    EXPECT_LT(r.out_error, kBf16Bound);
    EXPECT_TRUE(r.caches_equal);
    EXPECT_EQ(r.unsimulated, Calls{});
  }
}

namespace kernels = backend::neuron;

TEST(NeuronPagedPlan, DecodeRowsPackAKvHeadsQueryHeadsIntoOneLane) {
  const kernels::PagedAttentionShape gpt_oss_shard{.heads = 32, .kv_heads = 4, .head_dim = 64,
                                                   .block_size = 16};
  const kernels::PagedRowLayout decode = kernels::paged_row_layout(1, gpt_oss_shard);
  EXPECT_EQ(decode.heads_per_lane, 8);
  EXPECT_EQ(decode.stride, 32);
  EXPECT_EQ(decode.lanes, 4);
  EXPECT_EQ(decode.sets(), 1);
  EXPECT_EQ(decode.partitions(0), 3 * 32 + 8);
  EXPECT_EQ(decode.first_head(0, 2), 16);
  // Prefill rows: one head a lane, at the alignment their count needs.
  const kernels::PagedRowLayout chunk = kernels::paged_row_layout(33, gpt_oss_shard);
  EXPECT_EQ(chunk.heads_per_lane, 1);
  EXPECT_EQ(chunk.stride, 64);
  EXPECT_EQ(chunk.sets(), 16);
  EXPECT_EQ(kernels::paged_row_layout(130, gpt_oss_shard).stride, 128);
  EXPECT_TRUE(kernels::paged_row_layout(100, gpt_oss_shard).natural());
  // A group of more than 128 heads splits into lanes of the largest divisor that fits.
  const kernels::PagedAttentionShape wide{.heads = 192, .kv_heads = 1, .head_dim = 64,
                                          .block_size = 16};
  EXPECT_EQ(kernels::paged_row_layout(1, wide).heads_per_lane, 96);
}

TEST(NeuronPagedPlan, UnitsBlocksStepsAndGroups) {
  const kernels::PagedAttentionShape shape{.heads = 32, .kv_heads = 4, .head_dim = 64,
                                           .block_size = 16, .window = 128};
  // Three decode rows on consecutive rows, a prefill chunk of 3, then a decode row.
  const std::vector<kernels::PagedSequence> seqs{{0, 1, 1025}, {1, 1, 40}, {2, 1, 600},
                                                 {3, 3, 700}, {6, 1, 9}};
  const kernels::PagedAttentionPlan plan = kernels::plan_paged_attention(seqs, shape);
  ASSERT_EQ(plan.units.size(), 5u);
  ASSERT_EQ(plan.groups.size(), 3u);
  EXPECT_EQ(plan.groups[0].units, 3u);
  EXPECT_EQ(plan.units[2].member, 2);
  EXPECT_EQ(plan.groups[1].first_unit, 3u);
  EXPECT_EQ(plan.groups[2].units, 1u);
  // The window keeps one 128-key block for each decode row past its first 128 positions; the
  // prefill rows (positions 697..699) see keys from 570 on.
  EXPECT_EQ(plan.blocks[plan.units[0].first_block].k0, 1024 - 127);
  EXPECT_EQ(plan.blocks[plan.units[0].first_block].nk, 128);
  EXPECT_EQ(plan.blocks[plan.units[3].first_block].k0, 697 - 127);
  EXPECT_EQ(plan.blocks[plan.units[3].first_block].nk, 130);
  // Steps: one set for each decode block, 32 / 4 = 8 sets for each prefill block.
  EXPECT_EQ(plan.steps.size(), 4u + 8u);
  EXPECT_EQ(plan.layouts.size(), 2u);
}

}  // namespace
}  // namespace switchyard
