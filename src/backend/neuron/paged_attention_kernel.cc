#include "backend/neuron/paged_attention_kernel.h"

#include <algorithm>
#include <string>
#include <vector>

#include "backend/neuron/dma_queues.h"
#include "backend/neuron/kernel_support.h"
#include "backend/neuron/paged_attention_gather.h"
#include "backend/neuron/paged_attention_plan.h"
#include "backend/neuron/paged_attention_rows.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

constexpr float kMaskFill = -1e30f;  // added to masked scores: exp(scale * (s + fill) + nb) = 0

// The loop issues, in iteration t, stage k of step t - k: scores (0), softmax (1), P^T (2) and
// P V (3), plus the next step's K^T. Engines run their instructions in issue order, so each
// stage's inputs come from earlier iterations and are ready (or nearly) when its instructions
// reach the head of their queues; no engine idles behind a step's long dependent chain while
// other steps' work waits behind it. Tiles live from the stage that writes them to the last
// that reads them: scores 0-1, P 1-2, P^T 2-3, the softmax columns (the correction) 1-3, a
// unit's state from its first step's softmax to its last step's P V.
constexpr size_t kSoftmaxStage = 1, kProbStage = 2, kValueStage = kPagedValueLag;
constexpr size_t kColumnBuffers = kValueStage - kSoftmaxStage + 1;
// Scores are read by the softmax's exp, the last instruction of its chain: one more buffer lets
// the scores two steps on start before it finishes.
constexpr size_t kScoreBuffers = kSoftmaxStage + 2;
// A unit's first softmax is issued at least kValueStage + 1 iterations after the last P V of
// the unit kValueStage units before it.
constexpr size_t kUnitBuffers = kValueStage;
// K^T tiles, reused round-robin: a set reads at most kPagedMaxLanes of them and the set before
// it as many, so a tile is never overwritten while a set that needs it is still to be issued.
constexpr int64_t kKeyTiles = 2 * kPagedMaxLanes;
constexpr int64_t kAllocations = 96;  // an upper bound on the tiles the program allocates
constexpr int64_t kSlack = kAllocations * 64;  // per-partition alignment slack of the pool

// Whether a tile of `rows` partitions may start at partition `start`.
bool aligned(int64_t start, int64_t rows) {
  return rows <= 32 ? start % 32 == 0 : rows <= 64 ? start % 64 == 0 : start == 0;
}

class PagedAttentionProgram {
 public:
  PagedAttentionProgram(NeuronCore& core, const View& out, const View& q, const View& k_cache,
                        const View& v_cache, const View& block_tables, const View& sinks,
                        std::span<const PagedSequence> sequences, const PagedAttentionShape& shape,
                        int64_t key_block, DType compute)
      : core_(core), pool_(core), out_(out), q_(q), k_cache_(k_cache), v_cache_(v_cache),
        tables_(block_tables), sinks_(sinks), sequences_(sequences), shape_(shape),
        compute_(compute), H_(shape.heads), KV_(shape.kv_heads), hd_(shape.head_dim),
        W_(int64_t{shape.kv_heads} * shape.head_dim), key_block_(key_block), tiles_(shape),
        queues_(core, 0.25) {}

  // SBUF bytes per partition the program's tiles take with key blocks of `key_block` positions.
  static int64_t sbuf_bytes(const PagedAttentionShape& shape, DType compute, int64_t key_block) {
    const int64_t e = dtype_bytes(compute), H = shape.heads, hd = shape.head_dim;
    const int64_t W = int64_t{shape.kv_heads} * hd;
    const int64_t state = H * hd * 4 + 3 * H * 4;                   // o, l, nb x2
    const int64_t pairs = key_block * (4 + e + e);                  // mask, p, pT
    // The output's dtype is not known here: fp32 is the wider.
    return PagedKeyBlockGatherer::sbuf_bytes(key_block, shape.block_size, W, compute) +
           PagedRowTransfers::sbuf_bytes(shape, compute, DType::kF32) +
           kKeyTiles * key_block * e + static_cast<int64_t>(kUnitBuffers) * state +
           static_cast<int64_t>(kColumnBuffers) * 3 * 4 +
           static_cast<int64_t>(kScoreBuffers) * key_block * 4 + 2 * pairs + kSlack;
  }

  void run() {
    plan_ = plan_paged_attention(sequences_, shape_, key_block_);
    const size_t n = plan_.steps.size();
    if (n == 0) return;
    PagedRowTransfers rows(core_, pool_, queues_, q_, out_, sinks_, sequences_, plan_, tiles_,
                           shape_, compute_);
    rows_ = &rows;
    rows.load_queries(0);  // first on its DMA queue: the first scores wait for it
    allocate();
    PagedKeyBlockGatherer blocks(core_, pool_, queues_, k_cache_, v_cache_, tables_, plan_.blocks,
                                 key_block_, shape_.block_size, compute_);
    blocks_ = &blocks;
    blocks.begin();
    transpose_keys(0);
    for (size_t t = 0; t < n + kValueStage; ++t) {
      if (t < n && starts_block(t)) {
        blocks.ahead_of(steps()[t].block);
        build_mask(t);
      }
      if (t < n) scores(t);
      if (t >= kSoftmaxStage && t - kSoftmaxStage < n) softmax_max(t - kSoftmaxStage);
      if (t >= kProbStage && t - kProbStage < n) transpose_probs(t - kProbStage);
      if (t + 1 < n) transpose_keys(t + 1);
      if (t >= kValueStage && t - kValueStage < n) multiply_values(t - kValueStage);
      if (t >= kSoftmaxStage && t - kSoftmaxStage < n) softmax_exp(t - kSoftmaxStage);
      // The Q^T buffer of the group before step t's is free once step t's scores are issued.
      if (t < n && starts_group(t)) rows.load_queries(group_of(t) + 1);
    }
  }

 private:
  // A unit's running output, sum and nb (ping-pong by key block) per set (a column or head_dim
  // columns each).
  struct State {
    View o, l;
    View nb[2];
  };

  int64_t group() const { return H_ / KV_; }
  const std::vector<PagedStep>& steps() const { return plan_.steps; }
  const PagedStep& step(size_t t) const { return plan_.steps[t]; }
  const PagedUnit& unit_of(size_t t) const { return plan_.units[step(t).unit]; }
  const PagedKeyBlock& block_of(size_t t) const { return plan_.blocks[step(t).block]; }
  const PagedRowLayout& layout_of(const PagedUnit& u) const { return plan_.layouts[u.layout]; }
  bool starts_block(size_t t) const { return t == 0 || step(t).block != step(t - 1).block; }
  size_t group_of(size_t t) const { return unit_of(t).group; }
  bool starts_group(size_t t) const { return t == 0 || group_of(t) != group_of(t - 1); }
  bool last_block(const PagedStep& st) const {
    return st.kb + 1 == static_cast<int64_t>(plan_.units[st.unit].blocks);
  }
  bool has_state(const PagedStep& st) const { return st.kb > 0 || present(sinks_); }
  int64_t kv_head(const PagedRowLayout& l, int64_t set, int64_t lane) const {
    return l.kv_head(set, lane, group());
  }
  // Whether some row of unit u must not see some key of block kb: the block crosses the
  // diagonal, or the window's start of the unit's last row.
  bool future(const PagedUnit& u, const PagedKeyBlock& kb) const {
    return kb.k0 + kb.nk - 1 > u.pos0;
  }
  bool past(const PagedUnit& u, const PagedKeyBlock& kb) const {
    return shape_.window > 0 && kb.k0 <= u.pos0 + u.mq - 1 - shape_.window;
  }
  // Step t's rows: partitions [0, partitions(t)).
  int64_t partitions(size_t t) const { return layout_of(unit_of(t)).partitions(step(t).set); }

  void allocate() {
    for (int64_t i = 0; i < kKeyTiles; ++i)
      kt_[i] = pool_.sbuf(kPartitions, {key_block_}, compute_, "paged.kT" + std::to_string(i));
    kt_slot_.assign(static_cast<size_t>(tiles_.tiles()), -1);
    for (size_t i = 0; i < kUnitBuffers; ++i) {
      const std::string n = "paged.unit" + std::to_string(i);
      state_[i] = {pool_.sbuf(kPartitions, {H_ * hd_}, DType::kF32, n + ".o"),
                   pool_.sbuf(kPartitions, {H_}, DType::kF32, n + ".l"),
                   {pool_.sbuf(kPartitions, {H_}, DType::kF32, n + ".nb0"),
                    pool_.sbuf(kPartitions, {H_}, DType::kF32, n + ".nb1")}};
    }
    for (size_t i = 0; i < kColumnBuffers; ++i)
      cols_[i] = pool_.sbuf(kPartitions, {3}, DType::kF32, "paged.cols" + std::to_string(i));
    for (size_t i = 0; i < kScoreBuffers; ++i) {
      const std::string n = "paged.scores" + std::to_string(i);
      s_ps_[i] = pool_.psum(kPartitions, {key_block_}, DType::kF32, n + ".ps");
      s_[i] = pool_.sbuf(kPartitions, {key_block_}, DType::kF32, n);
    }
    for (int i = 0; i < 2; ++i) {
      const std::string n = "paged." + std::to_string(i);
      mask_[i] = pool_.sbuf(kPartitions, {key_block_}, DType::kF32, n + ".mask");
      p_[i] = pool_.sbuf(kPartitions, {key_block_}, compute_, n + ".p");
      pt_ps_[i] = pool_.psum(kPartitions, {key_block_}, compute_, n + ".ps.pT");
      pt_[i] = pool_.sbuf(kPartitions, {key_block_}, compute_, n + ".pT");
      o_ps_[i] = pool_.psum(kPartitions, {hd_}, DType::kF32, n + ".ps.o");
      kt_ps_[i] = pool_.psum(kPartitions, {key_block_}, compute_, n + ".ps.kT");
      // Rows between the heads of a key tile are never written by transposes: keep them finite.
      if (hd_ < tiles_.slot && tiles_.heads > 1) core_.memset(kt_ps_[i], 0.0f);
    }
  }

  // The 0 / -1e30 mask of a unit's rows over key block t's block, built once per block for its
  // first set, the widest (every set of a unit has the same lanes, rows and positions).
  void build_mask(size_t t) {
    const PagedUnit& u = unit_of(t);
    const PagedKeyBlock& kb = block_of(t);
    const bool fut = future(u, kb), pst = past(u, kb);
    if (!fut && !pst) return;
    const PagedRowLayout& l = layout_of(u);
    const View mask = mask_[step(t).block % 2].cols(0, kb.nk);
    core_.memset(mask.rows(0, l.partitions(0)), 0.0f, Engine::kGpSimd);
    // Row r of a one-head lane sits at pos0 + r; all rows of a many-head lane at pos0.
    const float ps = l.heads_per_lane == 1 ? 1.0f : 0.0f;
    for (int64_t lane = 0; lane < l.lanes_in(0); ++lane) {
      const View m = mask.rows(lane * l.stride, l.computed_rows(0, lane));
      if (fut) {  // keep key k0 + j for row r where pos0 + r - (k0 + j) >= 0
        core_.affine_select(m, m, static_cast<float>(u.pos0 - kb.k0), ps, {-1.0f},
                            AluOp::kIsGreaterEqual, kMaskFill);
      }
      if (pst) {  // keep where (k0 + j) - (pos0 + r) + window - 1 >= 0
        core_.affine_select(m, m, static_cast<float>(kb.k0 - u.pos0 + shape_.window - 1), -ps,
                            {1.0f}, AluOp::kIsGreaterEqual, kMaskFill);
      }
    }
  }

  // Step 2: the key tiles step t's set reads, unless already made for its key block.
  void transpose_keys(size_t t) {
    if (step(t).block != kt_block_) {
      std::fill(kt_slot_.begin(), kt_slot_.end(), -1);
      kt_block_ = step(t).block;
    }
    const PagedRowLayout& l = layout_of(unit_of(t));
    for (int64_t lane = 0; lane < l.lanes_in(step(t).set); ++lane) {
      const int64_t tile = tiles_.tile_of(kv_head(l, step(t).set, lane));
      if (kt_slot_[tile] < 0) make_key_tile(step(t).block, tile);
    }
  }

  void make_key_tile(size_t block, int64_t tile) {
    const PagedKeyBlock& kb = plan_.blocks[block];
    const View keys = blocks_->k(block);
    const View ps = kt_ps_[kt_next_ % 2];
    const int64_t first = tile * tiles_.heads, n = tiles_.heads_in(tile);
    for (int64_t c = 0; c < kb.chunks(); ++c) {
      const int64_t ck = kb.chunk_rows(c);
      const View k = keys.rows(0, ck).cols(c * W_ + first * hd_, n * hd_);
      if (hd_ == tiles_.slot) {  // the heads' columns land on their rows in one transpose
        core_.transpose(ps.rows(0, n * hd_).cols(c * kPartitions, ck), k);
        continue;
      }
      for (int64_t j = 0; j < n; ++j) {
        core_.transpose(ps.rows(j * tiles_.slot, hd_).cols(c * kPartitions, ck),
                        k.cols(j * hd_, hd_));
      }
    }
    kt_slot_[tile] = kt_next_ % kKeyTiles;
    const int64_t rows = tiles_.rows(tile);
    core_.tensor_copy(kt_[kt_slot_[tile]].rows(0, rows).cols(0, kb.nk),
                      ps.rows(0, rows).cols(0, kb.nk), Engine::kScalar);
    ++kt_next_;
  }

  // Step 3: S = Q K^T, a matmul per run of lanes whose kv heads share a key tile, masked where
  // some row must not see some key.
  void scores(size_t t) {
    const PagedUnit& u = unit_of(t);
    const PagedKeyBlock& kb = block_of(t);
    const PagedRowLayout& l = layout_of(u);
    const int64_t set = step(t).set, n = l.lanes_in(set);
    for (int64_t a = 0, b = 0; a < n; a = b) {
      const int64_t tile = tiles_.tile_of(kv_head(l, set, a));
      int64_t k_rows = 0;
      for (b = a; b < n && tiles_.tile_of(kv_head(l, set, b)) == tile; ++b)
        k_rows = std::max(k_rows, tiles_.row_of(kv_head(l, set, b)) + hd_);
      const int64_t start = a * l.stride;
      const int64_t rows = (b - 1 - a) * l.stride + l.computed_rows(set, b - 1);
      if (aligned(start, rows)) {
        score_rows(t, start, rows, k_rows, kt_[kt_slot_[tile]]);
        continue;
      }
      for (int64_t lane = a; lane < b; ++lane) {  // one lane at a time is always aligned
        score_rows(t, lane * l.stride, l.computed_rows(set, lane),
                   tiles_.row_of(kv_head(l, set, lane)) + hd_, kt_[kt_slot_[tile]]);
      }
    }
    const int64_t P = l.partitions(set);
    const View s_ps = s_ps_[t % kScoreBuffers].rows(0, P).cols(0, kb.nk);
    scores_[t % kScoreBuffers] = s_ps;
    if (!future(u, kb) && !past(u, kb)) return;
    const View s = s_[t % kScoreBuffers].rows(0, P).cols(0, kb.nk);
    core_.tensor_tensor(s, s_ps, AluOp::kAdd, mask_[step(t).block % 2].rows(0, P).cols(0, kb.nk));
    scores_[t % kScoreBuffers] = s;
  }

  // Scores of step t's rows [start, start + rows) against key tile kt, contracting over its
  // first k_rows partitions.
  void score_rows(size_t t, int64_t start, int64_t rows, int64_t k_rows, const View& kt) {
    const PagedUnit& u = unit_of(t);
    const int64_t nk = block_of(t).nk;
    core_.matmul(s_ps_[t % kScoreBuffers].rows(start, rows).cols(0, nk),
                 rows_->queries(u.group, u, step(t).set).rows(0, k_rows).slice(1, start, rows),
                 kt.rows(0, k_rows).cols(0, nk), true, true);
  }

  // Step 4 (the online softmax), first half: the block max and nb.
  void softmax_max(size_t t) {
    const PagedStep& st = step(t);
    const int64_t P = partitions(t);
    const View cols = cols_[t % kColumnBuffers].rows(0, P);
    const State& state = state_[st.unit % kUnitBuffers];
    const View block_max = cols.cols(0, 1);
    const View nb = state.nb[st.kb % 2].rows(0, P).cols(st.set, 1);
    core_.tensor_reduce(block_max, AluOp::kMax, scores_[t % kScoreBuffers]);
    if (!has_state(st)) {
      core_.tensor_scalar(nb, block_max, AluOp::kMultiply, -shape_.scale);
      return;
    }
    core_.tensor_scalar(nb, block_max, AluOp::kMultiply, -shape_.scale, AluOp::kMin,
                        old_nb(t));
  }

  // nb before step t's block: the previous block's, or -sink (with l = 1) before the first.
  View old_nb(size_t t) const {
    const PagedStep& st = step(t);
    const int64_t P = partitions(t);
    if (st.kb > 0) return state_[st.unit % kUnitBuffers].nb[(st.kb - 1) % 2].rows(0, P).cols(st.set, 1);
    return rows_->negative_sinks(unit_of(t), st.set, P);
  }

  // Second half: P = exp(scale S + nb) with its row sum, the correction and l.
  void softmax_exp(size_t t) {
    const PagedStep& st = step(t);
    const int64_t P = partitions(t);
    const View cols = cols_[t % kColumnBuffers].rows(0, P);
    const View corr = cols.cols(1, 1), sum = cols.cols(2, 1);
    const State& state = state_[st.unit % kUnitBuffers];
    const View l = state.l.rows(0, P).cols(st.set, 1);
    const View nb = state.nb[st.kb % 2].rows(0, P).cols(st.set, 1);
    const View p = p_[t % 2].rows(0, P).cols(0, block_of(t).nk);
    if (!has_state(st)) {
      core_.activation_reduce(p, Activation::kExp, scores_[t % kScoreBuffers], l, shape_.scale, nb);
      return;
    }
    core_.activation_reduce(p, Activation::kExp, scores_[t % kScoreBuffers], sum, shape_.scale, nb);
    core_.activation(corr, Activation::kExp, old_nb(t), -1.0f, nb);
    if (st.kb == 0) {
      core_.tensor_scalar(l, corr, AluOp::kAdd, sum);  // the sink's l = 1, rescaled
    } else {
      core_.tensor_scalar(l, l, AluOp::kMultiply, corr, AluOp::kAdd, sum);
    }
  }

  // Step 5, first half: P^T per 128-key chunk through TensorE, for all of the set's lanes.
  void transpose_probs(size_t t) {
    const PagedKeyBlock& kb = block_of(t);
    const int64_t P = partitions(t), nc = kb.chunks(), full = kb.nk / kPartitions;
    const View p = p_[t % 2].rows(0, P);
    const View pt_ps = pt_ps_[t % 2], pt = pt_[t % 2];
    for (int64_t c = 0; c < nc; ++c) {
      core_.transpose(pt_ps.rows(0, kb.chunk_rows(c)).cols(c * P, P),
                      p.cols(c * kPartitions, kb.chunk_rows(c)));
    }
    if (full > 0) core_.tensor_copy(pt.cols(0, full * P), pt_ps.cols(0, full * P));
    if (full < nc) {
      const int64_t ck = kb.chunk_rows(full);
      core_.tensor_copy(pt.rows(0, ck).cols(full * P, P), pt_ps.rows(0, ck).cols(full * P, P));
    }
  }

  // Second half: per lane O_block = P V of its kv head, O = O * corr + O_block; after the
  // unit's last block, out = O / l.
  void multiply_values(size_t t) {
    const PagedStep& st = step(t);
    const PagedUnit& u = unit_of(t);
    const PagedKeyBlock& kb = block_of(t);
    const PagedRowLayout& l = layout_of(u);
    const State& state = state_[st.unit % kUnitBuffers];
    const View values = blocks_->v(st.block), pt = pt_[t % 2], o_ps = o_ps_[t % 2];
    const int64_t P = l.partitions(st.set), nc = kb.chunks();
    for (int64_t lane = 0; lane < l.lanes_in(st.set); ++lane) {
      const int64_t off = lane * l.stride, rows = l.computed_rows(st.set, lane);
      const int64_t kvh = kv_head(l, st.set, lane);
      for (int64_t c = 0; c < nc; ++c) {
        const int64_t ck = kb.chunk_rows(c);
        core_.matmul(o_ps.rows(off, rows), pt.rows(0, ck).cols(c * P + off, rows),
                     values.rows(0, ck).cols(c * W_ + kvh * hd_, hd_), c == 0, c + 1 == nc);
      }
    }
    const View o = state.o.rows(0, P).cols(st.set * hd_, hd_);
    if (st.kb == 0) {
      core_.tensor_copy(o, o_ps.rows(0, P), Engine::kScalar);
    } else {
      core_.tensor_scalar(o, o, AluOp::kMultiply, cols_[t % kColumnBuffers].rows(0, P).cols(1, 1),
                          AluOp::kBypass, 0.0f, Engine::kGpSimd);
      core_.tensor_tensor(o, o, AluOp::kAdd, o_ps.rows(0, P));
    }
    if (!last_block(st)) return;
    const View out = rows_->staged(u.group);
    core_.tensor_scalar(out.rows(0, P).cols((u.member * l.sets() + st.set) * hd_, hd_), o,
                        AluOp::kDivide, state.l.rows(0, P).cols(st.set, 1));
    const PagedUnitGroup& g = plan_.groups[u.group];
    if (st.unit + 1 == g.first_unit + g.units && st.set + 1 == l.sets())
      rows_->store_outputs(u.group);
  }

  NeuronCore& core_;
  TilePool pool_;
  View out_, q_, k_cache_, v_cache_, tables_, sinks_;
  std::span<const PagedSequence> sequences_;
  PagedAttentionShape shape_;
  DType compute_;
  int64_t H_, KV_, hd_, W_;
  int64_t key_block_;
  PagedKeyTiles tiles_;
  DmaQueues queues_;
  PagedAttentionPlan plan_;
  PagedRowTransfers* rows_ = nullptr;
  PagedKeyBlockGatherer* blocks_ = nullptr;
  // By block: mask. By step: scores (PSUM, masked in SBUF, and whichever softmax reads), P, P^T
  // (PSUM, SBUF), P V (PSUM); K^T transposes.
  View mask_[2], p_[2], pt_ps_[2], pt_[2], o_ps_[2], kt_ps_[2];
  View s_ps_[kScoreBuffers], s_[kScoreBuffers], scores_[kScoreBuffers];
  View cols_[kColumnBuffers];
  View kt_[kKeyTiles];
  State state_[kUnitBuffers];
  std::vector<int64_t> kt_slot_;      // key tile -> its buffer for key block kt_block_, or -1
  size_t kt_block_ = SIZE_MAX;
  int64_t kt_next_ = 0;
};

}  // namespace

int64_t paged_attention_sbuf_bytes(const PagedAttentionShape& shape, DType compute) {
  return PagedAttentionProgram::sbuf_bytes(shape, compute, kPagedMinKeyBlock);
}

void paged_attention(NeuronCore& core, const View& out, const View& q, const View& k_cache,
                     const View& v_cache, const View& block_tables, const View& sinks,
                     std::span<const PagedSequence> sequences, const PagedAttentionShape& shape,
                     DType compute) {
  const char* name = "paged_attention";
  require_compute(name, compute);
  require(shape.heads > 0 && shape.kv_heads > 0 && shape.heads % shape.kv_heads == 0 &&
              shape.head_dim > 0 && shape.head_dim <= kPartitions && shape.block_size > 0 &&
              shape.window >= 0 && shape.scale > 0.0f,
          "{}: heads {} must be a multiple of kv_heads {}, head_dim {} in [1, {}], block_size {} "
          "positive, window {} >= 0 and scale {} > 0",
          name, shape.heads, shape.kv_heads, shape.head_dim, kPartitions, shape.block_size,
          shape.window, shape.scale);
  const int64_t width = int64_t{shape.heads} * shape.head_dim;
  const int64_t W = int64_t{shape.kv_heads} * shape.head_dim;
  require_rows(name, "q", q, q.partitions(), width);
  require_rows(name, "out", out, q.partitions(), width);
  require_rows(name, "k_cache", k_cache, k_cache.partitions(), W);
  require_rows(name, "v_cache", v_cache, k_cache.partitions(), W);
  require(block_tables.memory() == Memory::kHbm && block_tables.dtype() == DType::kI32 &&
              block_tables.free_dims() == 1 && block_tables.free_dim(0).stride == 1 &&
              (block_tables.partitions() == 1 ||
               block_tables.partition_stride() == block_tables.free_size()),
          "{}: block_tables must be a dense HBM int32 [S, max_blocks] tensor, got {}", name,
          block_tables.describe());
  if (present(sinks)) {
    require(sinks.memory() == Memory::kHbm && sinks.dtype() == DType::kF32 &&
                sinks.partitions() == 1 && sinks.free_size() == shape.heads,
            "{}: sinks must be one HBM fp32 row of {} values, got {}", name, shape.heads,
            sinks.describe());
  }
  for (const PagedSequence& s : sequences) {
    require(s.rows >= 0 && s.context >= s.rows && s.first_row >= 0 &&
                s.first_row + s.rows <= q.partitions(),
            "{}: a sequence of {} rows from row {} with a context of {} does not fit {} rows",
            name, s.rows, s.first_row, s.context, q.partitions());
  }
  KernelScope scope(core, name);
  const int64_t need = paged_attention_sbuf_bytes(shape, compute), free = core.sbuf_largest_free();
  require(need <= free,
          "{}: {} heads of {} and {} kv heads need {} bytes per SBUF partition and {} are free",
          name, shape.heads, shape.head_dim, shape.kv_heads, need, free);
  // The longest key blocks whose tiles fit: fewer, longer steps.
  int64_t key_block = kPagedMaxKeyBlock;
  while (key_block > kPagedMinKeyBlock &&
         PagedAttentionProgram::sbuf_bytes(shape, compute, key_block) > free)
    key_block /= 2;
  PagedAttentionProgram(core, out, q, k_cache, v_cache, block_tables, sinks, sequences, shape,
                        key_block, compute)
      .run();
}

}  // namespace switchyard::backend::neuron
