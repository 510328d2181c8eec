#include "backend/neuron/cross_entropy_kernel.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "backend/neuron/fill_kernel.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

// Vocabulary chunk width: 32 KiB of fp32 per partition, so a chunk DMA is 4 MiB and each
// instruction streams thousands of elements per partition.
constexpr int64_t kMaxChunkCols = 8192;
// The forward pass streams each chunk once: a few chunk buffers keep the loads ahead.
constexpr int kForwardBuffers = 4;
// Element indices (row * V + target) pass through fp32 on the engines: exact below 2^24.
constexpr int64_t kExactIntegers = int64_t{1} << 24;
constexpr int64_t kAllocationSlack = 64 * 48;  // alignment of every tile, generously
constexpr int64_t kNoUse = std::numeric_limits<int64_t>::max();

int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Logits-shaped operand: HBM [N, V] with contiguous rows.
void check_matrix(const char* kernel, const char* name, const View& view, int N, int V) {
  require(view.memory() == Memory::kHbm && view.partitions() == N && view.free_size() == V &&
              (view.dtype() == DType::kF32 || view.dtype() == DType::kBF16),
          "{}: {} must be an fp32 or bf16 HBM tensor [N = {}, V = {}], got {}", kernel, name, N, V,
          view.describe());
  contiguous_elements(view, kernel, name);
}

// N contiguous elements ([N, 1] or [1, N]) seen as a column: row n is element n.
View as_column(const char* kernel, const char* name, const View& view, int N) {
  const int64_t n = contiguous_elements(view, kernel, name);
  require(n == N, "{}: {} has {} elements, expected N = {}", kernel, name, n, N);
  return view.pattern(0, Dim{N, 1}, {Dim{1, 1}});
}

// One step of the program: a vocabulary chunk of a row tile, in the statistics pass (max and
// sum of exp) or the output pass (backward only), and the SBUF chunk buffer ("slot") it uses.
struct Step {
  int64_t tile = 0;
  int64_t chunk = 0;
  bool output = false;
  bool load = false;  // the chunk is read from HBM into the slot first
  int slot = -1;
  int64_t after = -1;  // the load waits until this step (last user of the slot) is issued
};

// Steps in program order, with slots assigned so that the output pass finds as many chunks as
// possible still in SBUF: the output pass walks the chunks backwards (the most recently loaded
// first), and a load evicts the slot whose chunk is needed again latest, or never (Belady).
std::vector<Step> plan_steps(int64_t tiles, int64_t chunks, bool backward, int slots) {
  std::vector<Step> steps;
  for (int64_t t = 0; t < tiles; ++t) {
    for (int64_t j = 0; j < chunks; ++j) steps.push_back({t, j, false});
    if (backward)
      for (int64_t j = chunks - 1; j >= 0; --j) steps.push_back({t, j, true});
  }
  const int64_t count = static_cast<int64_t>(steps.size());
  auto tag = [&](int64_t i) { return steps[i].tile * chunks + steps[i].chunk; };
  std::vector<int64_t> next_use(steps.size(), kNoUse);
  std::vector<int64_t> seen(static_cast<size_t>(tiles * chunks), kNoUse);
  for (int64_t i = count - 1; i >= 0; --i) {
    next_use[i] = seen[tag(i)];
    seen[tag(i)] = i;
  }
  struct Slot {
    int64_t tag = -1;
    int64_t last_use = -1;
  };
  std::vector<Slot> slot(static_cast<size_t>(slots));
  for (int64_t i = 0; i < count; ++i) {
    Step& s = steps[i];
    int chosen = -1;
    for (int k = 0; k < slots; ++k)
      if (slot[k].tag == tag(i)) chosen = k;
    if (chosen < 0) {
      // Evict: a slot whose chunk is never needed again (the one free soonest), else the one
      // needed latest.
      auto next = [&](int k) { return slot[k].tag < 0 ? kNoUse : next_use[slot[k].last_use]; };
      chosen = 0;
      for (int k = 1; k < slots; ++k) {
        const bool better = next(k) == next(chosen) ? slot[k].last_use < slot[chosen].last_use
                                                    : next(k) > next(chosen);
        if (better) chosen = k;
      }
      s.load = true;
      s.after = slot[chosen].last_use;
      slot[chosen].tag = tag(i);
    }
    s.slot = chosen;
    slot[chosen].last_use = i;
  }
  return steps;
}

struct Outputs {
  const View* losses = nullptr;   // forward
  const View* dlogits = nullptr;  // backward
  float dloss = 0;
};

void cross_entropy(NeuronCore& core, const char* kernel, const Outputs& out, const View& logits,
                   const View& targets, int N, int V, DType compute) {
  const bool backward = out.dlogits != nullptr;
  require(N >= 0 && V >= 1, "{}: needs N >= 0 and V >= 1, got N = {} and V = {}", kernel, N, V);
  require(compute == DType::kF32 || compute == DType::kBF16,
          "{}: compute dtype must be float32 or bfloat16, got {}", kernel, nki_dtype_name(compute));
  check_matrix(kernel, "logits", logits, N, V);
  require(targets.dtype() == DType::kI32, "{}: targets must be int32, got {} ({})", kernel,
          nki_dtype_name(targets.dtype()), targets.describe());
  const View target_col = as_column(kernel, "targets", targets, N);
  View loss_col;
  if (backward) {
    check_matrix(kernel, "dlogits", *out.dlogits, N, V);
  } else {
    require(is_float(out.losses->dtype()), "{}: losses must be a float tensor, got {}", kernel,
            nki_dtype_name(out.losses->dtype()));
    loss_col = as_column(kernel, "losses", *out.losses, N);
  }
  // Rows whose element indices (row * V + target) stay exact in fp32, gathered per group.
  int64_t group = kPartitions;
  while (group > 32 && group * V > kExactIntegers) group /= 2;
  require(group * V <= kExactIntegers,
          "{}: V = {} is too large (row * V + target must stay below 2^24 for 32 rows)", kernel, V);
  if (N == 0) return;
  // The targets are checked on the host (the backend would check token ids when it uploads them);
  // an index outside [0, V) would otherwise pick another row's logit.
  const std::vector<float> target_values = core.read(target_col);
  for (int n = 0; n < N; ++n) {
    const float t = target_values[static_cast<size_t>(n)];
    require(t >= 0 && t < static_cast<float>(V),
            "{}: target {} of row {} is outside the vocabulary [0, V = {})", kernel,
            static_cast<int64_t>(t), n, V);
  }

  KernelScope scope(core, kernel);
  TilePool pool(core);
  const int64_t chunks = ceil_div(V, kMaxChunkCols);
  const int64_t width = ceil_div(V, chunks);  // even chunks; the last may be narrower
  const int64_t tiles = ceil_div(N, kPartitions);

  // SBUF: chunk buffers take what the fixed tiles leave, up to every chunk of a row tile and one
  // more (backward: the next tile's first chunk loads while the output pass runs).
  const int64_t chunk_bytes = round_up(width * dtype_bytes(compute), 64);
  const int64_t scratch_bytes = round_up(width * dtype_bytes(DType::kBF16), 64);
  const int64_t small_bytes = 2 * 4 * round_up(chunks * 4, 64) + 2 * 12 * 64;
  const int64_t room =
      core.sbuf_largest_free() - 2 * scratch_bytes - small_bytes - kAllocationSlack;
  const int64_t wanted = backward ? chunks + 1 : kForwardBuffers;
  const int slots = static_cast<int>(std::min<int64_t>(wanted, room / chunk_bytes));
  require(slots >= 2,
          "{}: two vocabulary chunks of {} elements and their scratch need {} bytes of SBUF per "
          "partition, {} are free",
          kernel, width, 2 * chunk_bytes + 2 * scratch_bytes + small_bytes,
          core.sbuf_largest_free());

  std::vector<View> chunk_buf;
  for (int i = 0; i < slots; ++i)
    chunk_buf.push_back(pool.sbuf(kPartitions, {width}, compute, fmt::format("ce.chunk{}", i)));
  // ScalarE's exp output in the statistics pass is not needed, only its fused row sum.
  std::array<View, 2> scratch;
  for (int i = 0; i < 2; ++i)
    scratch[i] = pool.sbuf(kPartitions, {width}, DType::kBF16, fmt::format("ce.exp{}", i));
  // Per-tile statistics, double-buffered so a tile's merge overlaps the next tile's chunks.
  struct TileState {
    View chunk_max, neg_chunk_max, chunk_sum, weights;                     // [128, chunks]
    View row_max, neg_row_max, sum, lse, target_i, index, picked, result;  // [128, 1]
  };
  std::array<TileState, 2> state;
  for (int i = 0; i < 2; ++i) {
    auto wide = [&](const char* name) {
      return pool.sbuf(kPartitions, {chunks}, DType::kF32, fmt::format("ce.{}{}", name, i));
    };
    auto column = [&](const char* name, DType dtype = DType::kF32) {
      return pool.sbuf(kPartitions, {1}, dtype, fmt::format("ce.{}{}", name, i));
    };
    TileState& s = state[i];
    s.chunk_max = wide("chunk_max");
    s.neg_chunk_max = wide("neg_chunk_max");
    s.chunk_sum = wide("chunk_sum");
    s.weights = wide("weights");
    s.row_max = column("row_max");
    s.neg_row_max = column("neg_row_max");
    s.sum = column("sum");
    s.lse = column("lse");
    s.target_i = column("target", DType::kI32);
    s.index = column("index", DType::kI32);
    s.picked = column("picked");
    s.result = column("result");  // forward: the losses; backward: the exp bias
  }
  // (p - group start) * V for every partition, once: added to the targets it gives each row's
  // element index within its group's rows of logits.
  const View row_base = pool.sbuf(kPartitions, {1}, DType::kF32, "ce.row_base");
  for (int64_t g0 = 0; g0 < kPartitions; g0 += group)
    core.iota(row_base.rows(g0, group), 0.0f, static_cast<float>(V), {0.0f});
  View neg_dloss;
  if (backward) {
    neg_dloss = pool.sbuf(kPartitions, {1}, DType::kF32, "ce.neg_dloss");
    core.memset(neg_dloss, -out.dloss, Engine::kGpSimd);
  }

  // Chunk loads and stores share all queues but one: the traffic of a pass is all loads (the
  // statistics pass) or mostly stores (the output pass), and either needs every queue to reach
  // the core's HBM bandwidth. Issue order keeps a store from delaying a load much: loads run a few
  // steps ahead. The small transfers (targets, gathers, losses, scatters) get the last queue, so
  // they never wait behind megabytes of chunks.
  const int queues = core.config().dma_queues;
  DmaSpreader loads(core, 0, std::max(1, queues - 1));
  DmaSpreader& stores = loads;
  DmaSpreader small(core, queues - 1, 1);

  auto rows_of = [&](int64_t t) { return std::min<int64_t>(kPartitions, N - t * kPartitions); };
  auto cols_of = [&](int64_t j) { return std::min(width, V - j * width); };
  auto hbm_chunk = [&](const View& matrix, int64_t t, int64_t j) {
    return matrix.rows(t * kPartitions, rows_of(t)).cols(j * width, cols_of(j));
  };
  // Rows [g0, g0 + rows) of tile t as a table of single elements (indirect DMA target).
  auto element_table = [&](const View& matrix, int64_t t, int64_t g0, int64_t rows) {
    return matrix.rows(t * kPartitions + g0, rows).pattern(0, Dim{rows * V, 1}, {Dim{1, 1}});
  };

  const std::vector<Step> steps = plan_steps(tiles, chunks, backward, slots);
  std::vector<int64_t> load_steps;
  for (int64_t i = 0; i < static_cast<int64_t>(steps.size()); ++i)
    if (steps[i].load) load_steps.push_back(i);
  auto x_of = [&](const Step& s) {
    return chunk_buf[s.slot].rows(0, rows_of(s.tile)).cols(0, cols_of(s.chunk));
  };

  // Targets into SBUF well before they are needed (a tile ahead) ...
  auto load_targets = [&](int64_t t) {
    const int64_t rows = rows_of(t);
    core.dma_copy(state[t % 2].target_i.rows(0, rows), target_col.rows(t * kPartitions, rows),
                  small.next_queue());
  };
  // ... then element indices and (forward) the target logits by gather, issued where the engine
  // running them is not waiting for anything else.
  auto pick_targets = [&](int64_t t) {
    const TileState& s = state[t % 2];
    const int64_t rows = rows_of(t);
    core.tensor_tensor(s.index.rows(0, rows), row_base.rows(0, rows), AluOp::kAdd,
                       s.target_i.rows(0, rows), Engine::kGpSimd);
    if (backward) return;
    for (int64_t g0 = 0; g0 < rows; g0 += group) {
      const int64_t g = std::min(group, rows - g0);
      core.dma_gather(s.picked.rows(g0, g), element_table(logits, t, g0, g), s.index.rows(g0, g),
                      small.next_queue());
    }
  };
  // Merges the chunks' maxima and sums into lse = log(sum_j sum_j' * exp(max_j - max)) + max.
  auto finish_statistics = [&](int64_t t) {
    const TileState& s = state[t % 2];
    const int64_t rows = rows_of(t);
    auto r = [&](const View& v) { return v.rows(0, rows); };
    core.tensor_reduce(r(s.row_max), AluOp::kMax, r(s.chunk_max));
    core.tensor_scalar(r(s.neg_row_max), r(s.row_max), AluOp::kMultiply, -1.0f);
    core.activation(r(s.weights), Activation::kExp, r(s.chunk_max), 1.0f, r(s.neg_row_max));
    core.tensor_tensor(r(s.weights), r(s.weights), AluOp::kMultiply, r(s.chunk_sum));
    core.tensor_reduce(r(s.sum), AluOp::kAdd, r(s.weights));
    core.activation(r(s.lse), Activation::kLog, r(s.sum));
    core.tensor_tensor(r(s.lse), r(s.lse), AluOp::kAdd, r(s.row_max));
    if (backward) {
      // exp(x - lse + log|dloss|) = softmax * |dloss| in one ScalarE pass per chunk.
      core.tensor_scalar(r(s.result), r(s.lse), AluOp::kMultiply, -1.0f, AluOp::kAdd,
                         std::log(std::fabs(out.dloss)));
    } else {
      core.tensor_tensor(r(s.result), r(s.lse), AluOp::kSubtract, r(s.picked));
      core.dma_copy(loss_col.rows(t * kPartitions, rows), r(s.result), small.next_queue());
    }
  };
  // The one-hot term: dlogits[n, target] -= dloss, once every chunk of the tile is stored.
  auto finish_output = [&](int64_t t) {
    const TileState& s = state[t % 2];
    for (int64_t g0 = 0; g0 < rows_of(t); g0 += group) {
      const int64_t g = std::min(group, rows_of(t) - g0);
      core.dma_scatter(element_table(*out.dlogits, t, g0, g), neg_dloss.rows(g0, g),
                       s.index.rows(g0, g), true, small.next_queue());
    }
  };

  load_targets(0);
  pick_targets(0);
  size_t next_load = 0;
  int64_t statistics_steps = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(steps.size()); ++i) {
    // Issue every load whose slot is no longer needed by anything issued after it, up to one
    // round of slots ahead.
    while (next_load < load_steps.size()) {
      const Step& l = steps[load_steps[next_load]];
      if (load_steps[next_load] > i + slots || l.after >= i) break;
      loads.copy(x_of(l), hbm_chunk(logits, l.tile, l.chunk));
      ++next_load;
    }
    const Step& s = steps[i];
    const TileState& st = state[s.tile % 2];
    const int64_t rows = rows_of(s.tile);
    const View x = x_of(s);
    if (!s.output) {
      if (s.chunk == 0 && s.tile + 1 < tiles) load_targets(s.tile + 1);
      // Chunk maxima alternate between VectorE and GpSimd; ScalarE does every exp.
      const Engine engine = statistics_steps % 2 == 0 ? Engine::kVector : Engine::kGpSimd;
      const View max_j = st.chunk_max.rows(0, rows).cols(s.chunk, 1);
      const View neg_max_j = st.neg_chunk_max.rows(0, rows).cols(s.chunk, 1);
      core.tensor_reduce(max_j, AluOp::kMax, x, ::switchyard::neuron::kMaxFreeDims, engine);
      core.tensor_scalar(neg_max_j, max_j, AluOp::kMultiply, -1.0f, AluOp::kBypass, 0.0f, engine);
      core.activation_reduce(scratch[statistics_steps % 2].rows(0, rows).cols(0, cols_of(s.chunk)),
                             Activation::kExp, x, st.chunk_sum.rows(0, rows).cols(s.chunk, 1), 1.0f,
                             neg_max_j);
      ++statistics_steps;
      if (s.chunk == chunks - 1) {
        finish_statistics(s.tile);
        if (s.tile + 1 < tiles) pick_targets(s.tile + 1);
      }
    } else {
      core.activation(x, Activation::kExp, x, 1.0f, st.result.rows(0, rows));
      if (out.dloss < 0) core.tensor_scalar(x, x, AluOp::kMultiply, -1.0f);
      stores.copy(hbm_chunk(*out.dlogits, s.tile, s.chunk), x);
      if (s.chunk == 0) finish_output(s.tile);
    }
  }
}

}  // namespace

void cross_entropy_forward(NeuronCore& core, const View& losses, const View& logits,
                           const View& targets, int N, int V, DType compute) {
  Outputs out;
  out.losses = &losses;
  cross_entropy(core, "cross_entropy_forward", out, logits, targets, N, V, compute);
}

void cross_entropy_backward(NeuronCore& core, const View& dlogits, const View& logits,
                            const View& targets, float dloss, int N, int V, DType compute) {
  Outputs out;
  out.dlogits = &dlogits;
  out.dloss = dloss;
  cross_entropy(core, "cross_entropy_backward", out, logits, targets, N, V, compute);
}

}  // namespace switchyard::backend::neuron
