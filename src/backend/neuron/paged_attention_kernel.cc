#include "backend/neuron/paged_attention_kernel.h"

#include <algorithm>
#include <string>
#include <vector>

#include "backend/neuron/dma_queues.h"
#include "backend/neuron/kernel_support.h"
#include "backend/neuron/paged_attention_plan.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

constexpr int64_t kKeyBlock = kPagedKeyBlock;
constexpr int64_t kChunks = kKeyBlock / kPartitions;  // 128-key chunks per block
constexpr float kMaskFill = -1e30f;  // added to masked scores: exp(scale * (s + fill) + nb) = 0
// Key blocks gathered at once: the one being read and those fetched ahead of it, so that a
// block's gathers (two DMA latencies in a row) overlap the steps of the blocks before it. Block
// table entries are loaded one block further ahead, so that the instructions computing a block's
// cache rows never wait on an engine's in-order queue for their DMA.
constexpr size_t kBlockBuffers = 3;
constexpr size_t kTableBuffers = kBlockBuffers + 1;
// K^T tiles, reused round-robin: a set reads at most kPagedMaxLanes kv heads and the set before
// it as many, so a tile is never overwritten while a set that needs it is still to be issued.
constexpr int64_t kKeyTiles = 2 * kPagedMaxLanes;
constexpr int64_t kAllocations = 64;  // an upper bound on the tiles allocate() makes
constexpr int64_t kSlack = kAllocations * 64;  // per-partition alignment slack of the pool

// Table-row slack: a key block of 512 positions starting inside a block spans this many blocks.
int64_t max_table_blocks(int64_t bs) { return ceil_div(kKeyBlock + bs - 1, bs) + 1; }

class PagedAttentionProgram {
 public:
  PagedAttentionProgram(NeuronCore& core, const View& out, const View& q, const View& k_cache,
                        const View& v_cache, const View& block_tables, const View& sinks,
                        std::span<const PagedSequence> sequences, const PagedAttentionShape& shape,
                        DType compute)
      : core_(core), pool_(core), out_(out), q_(q), k_cache_(k_cache), v_cache_(v_cache),
        tables_(block_tables), sinks_(sinks), sequences_(sequences), shape_(shape),
        compute_(compute), H_(shape.heads), KV_(shape.kv_heads), hd_(shape.head_dim),
        bs_(shape.block_size), W_(int64_t{shape.kv_heads} * shape.head_dim),
        queues_(core, 0.25) {}

  void run() {
    plan_ = plan_paged_attention(sequences_, shape_);
    const std::vector<PagedStep>& steps = plan_.steps;
    if (steps.empty()) return;
    allocate();
    for (size_t b = 0; b < kTableBuffers - 1; ++b) locate_block(b);
    for (size_t b = 0; b < kBlockBuffers - 1; ++b) gather_block(b);
    load_queries(0);
    for (size_t i = 0; i <= steps.size(); ++i) {
      if (i < steps.size()) {
        if (starts_block(i)) build_mask(steps[i]);
        transpose_keys(steps[i]);
        scores(i);
        softmax(i);
      }
      if (i >= 1) values(i - 1);
      // Buffers of the block and unit before step i's are free once step i - 1's values are
      // issued: fetch later ones into them.
      if (i < steps.size() && starts_block(i)) {
        locate_block(steps[i].block + kTableBuffers - 1);
        gather_block(steps[i].block + kBlockBuffers - 1);
      }
      if (i < steps.size() && starts_unit(i)) load_queries(steps[i].unit + 1);
    }
  }

 private:
  // Gathered key-block rows: cache rows (one column per 128-key chunk) and K, V rows
  // [128, chunk, kv_heads * head_dim].
  struct Rows {
    View slots, k, v;
  };
  // A unit's running output, sum and nb (ping-pong by key block) per set (a column or head_dim
  // columns each), and its output tile.
  struct State {
    View o, l;
    View nb[2];
    View out;
  };
  // One step's working tiles: scores, P, P^T, columns (block max, correction, block sum).
  struct Slot {
    View s, p, pt, cols, s_ps, pt_ps, o_ps;
  };

  int64_t group() const { return H_ / KV_; }
  const std::vector<PagedStep>& steps() const { return plan_.steps; }
  bool starts_block(size_t i) const {
    return i == 0 || steps()[i].block != steps()[i - 1].block;
  }
  bool starts_unit(size_t i) const { return i == 0 || steps()[i].unit != steps()[i - 1].unit; }
  bool last_block(const PagedStep& st) const {
    return st.kb + 1 == static_cast<int64_t>(plan_.units[st.unit].blocks);
  }
  bool has_state(const PagedStep& st) const { return st.kb > 0 || present(sinks_); }
  const PagedRowLayout& layout_of(const PagedUnit& u) const { return plan_.layouts[u.layout]; }
  int64_t kv_head(const PagedRowLayout& l, int64_t set, int64_t lane) const {
    return l.first_head(set, lane) / group();
  }
  // Whether some row of unit u must not see some key of block kb: the block crosses the
  // diagonal, or the window's start of the unit's last row.
  bool future(const PagedUnit& u, const PagedKeyBlock& kb) const {
    return kb.k0 + kb.nk - 1 > u.pos0;
  }
  bool past(const PagedUnit& u, const PagedKeyBlock& kb) const {
    return shape_.window > 0 && kb.k0 <= u.pos0 + u.mq - 1 - shape_.window;
  }

  void allocate() {
    const int64_t table_cols = max_table_blocks(bs_);
    // Position p of a key block's table blocks: partition 0 its block's table entry (loaded per
    // block), partition 1 p % block_size; slot = (block_size, 1) . column p.
    for (size_t i = 0; i < kTableBuffers; ++i) {
      located_[i] = pool_.sbuf(2, {table_cols * bs_}, DType::kF32,
                               "paged.located" + std::to_string(i));
      core_.iota(located_[i].split(0, bs_), 0.0f, 0.0f, {0.0f, 1.0f});
    }
    slot_weights_ = pool_.sbuf(2, {1}, DType::kF32, "paged.slot_weights");
    core_.memset(slot_weights_, 1.0f);
    core_.memset(slot_weights_.rows(0, 1), static_cast<float>(bs_));
    slots_ps_ = pool_.psum(kPartitions, {kChunks}, DType::kF32, "paged.ps.slots");
    core_.memset(slots_ps_, 0.0f);  // rows past a short chunk's stay finite
    if (present(sinks_)) load_sinks();
    for (size_t i = 0; i < kBlockBuffers; ++i) {
      const std::string n = "paged.block" + std::to_string(i);
      rows_[i] = {pool_.sbuf(kPartitions, {kChunks}, DType::kI32, n + ".slots"),
                  pool_.sbuf(kPartitions, {kChunks * W_}, compute_, n + ".k"),
                  pool_.sbuf(kPartitions, {kChunks * W_}, compute_, n + ".v")};
    }
    for (int64_t i = 0; i < kKeyTiles; ++i)
      kt_[i] = pool_.sbuf(hd_, {kKeyBlock}, compute_, "paged.kT" + std::to_string(i));
    kt_slot_.assign(static_cast<size_t>(KV_), -1);
    for (int i = 0; i < 2; ++i) {
      const std::string n = "paged." + std::to_string(i);
      qt_[i] = pool_.sbuf(hd_, {H_, kPartitions}, compute_, n + ".qT");
      state_[i] = {pool_.sbuf(kPartitions, {H_ * hd_}, DType::kF32, n + ".o"),
                   pool_.sbuf(kPartitions, {H_}, DType::kF32, n + ".l"),
                   {pool_.sbuf(kPartitions, {H_}, DType::kF32, n + ".nb0"),
                    pool_.sbuf(kPartitions, {H_}, DType::kF32, n + ".nb1")},
                   pool_.sbuf(kPartitions, {H_ * hd_}, out_.dtype(), n + ".out")};
      mask_[i] = pool_.sbuf(kPartitions, {kKeyBlock}, DType::kF32, n + ".mask");
      slots_[i] = {pool_.sbuf(kPartitions, {kKeyBlock}, DType::kF32, n + ".s"),
                   pool_.sbuf(kPartitions, {kKeyBlock}, compute_, n + ".p"),
                   pool_.sbuf(kPartitions, {kChunks * kPartitions}, compute_, n + ".pT"),
                   pool_.sbuf(kPartitions, {3}, DType::kF32, n + ".cols"),
                   pool_.psum(kPartitions, {kKeyBlock}, DType::kF32, n + ".ps.s"),
                   pool_.psum(kPartitions, {kChunks * kPartitions}, compute_, n + ".ps.pT"),
                   pool_.psum(kPartitions, {hd_}, DType::kF32, n + ".ps.o")};
      kt_ps_[i] = pool_.psum(hd_, {kKeyBlock}, compute_, n + ".ps.kT");
      zero_query_padding(qt_[i]);
    }
  }

  // Lanes of a multi-lane set compute their padding rows too (a whole stride); their Q^T columns
  // are zeroed once so that those rows stay finite. Loads only ever write real rows' columns.
  void zero_query_padding(const View& qt) {
    int64_t sets = 0;
    for (const PagedRowLayout& l : plan_.layouts) {
      if (l.lanes_per_set > 1) sets = std::max(sets, l.sets());
    }
    if (sets > 0) core_.memset(qt.slice(0, 0, sets), 0.0f, Engine::kGpSimd);
  }

  // -sink of each row's head, a column per set of each arrangement of heads on partitions: a
  // lane of one head has its sink on every row of its stride; a lane of several heads, on each
  // head's row (padding rows 0). Layouts that differ only in rows per head share columns.
  void load_sinks() {
    std::vector<PagedRowLayout> arrangements;
    for (const PagedRowLayout& l : plan_.layouts) {
      PagedRowLayout a = l;
      a.rows = 1;
      auto it = std::find(arrangements.begin(), arrangements.end(), a);
      if (it == arrangements.end()) it = arrangements.insert(arrangements.end(), a);
      sink_column_.push_back((it - arrangements.begin()) * H_);
    }
    nsinks_ = pool_.sbuf(kPartitions, {static_cast<int64_t>(arrangements.size()) * H_},
                         DType::kF32, "paged.nsinks");
    core_.memset(nsinks_, 0.0f, Engine::kGpSimd);
    for (size_t a = 0; a < arrangements.size(); ++a) {
      const PagedRowLayout& l = arrangements[a];
      for (int64_t lane = 0; lane < l.lanes_per_set; ++lane) {
        const int64_t sets = l.sets_with_lane(lane);
        if (sets == 0) continue;
        const bool one_head = l.heads_per_lane == 1;
        const int64_t rows = one_head ? l.stride : l.heads_per_lane;
        core_.dma_copy(nsinks_.rows(lane * l.stride, rows).cols(static_cast<int64_t>(a) * H_, sets),
                       sinks_.pattern(l.first_head(0, lane), Dim{rows, one_head ? 0 : 1},
                                      {Dim{sets, l.lanes_per_set * l.heads_per_lane}}),
                       queues_.load());
      }
    }
    core_.tensor_scalar(nsinks_, nsinks_, AluOp::kMultiply, -1.0f);
  }

  // Step 1a: the block table entry of each position of key block b's table blocks.
  void locate_block(size_t b) {
    if (b >= plan_.blocks.size()) return;
    const PagedKeyBlock& kb = plan_.blocks[b];
    const int64_t b_first = kb.k0 / bs_, nblk = (kb.k0 + kb.nk - 1) / bs_ - b_first + 1;
    const int64_t max_blocks = tables_.free_size();
    core_.dma_copy(located_[b % kTableBuffers].rows(0, 1).cols(0, nblk * bs_),
                   tables_.pattern(kb.sequence * max_blocks + b_first, Dim{1, 1},
                                   {Dim{nblk, 1}, Dim{bs_, 0}}),
                   queues_.load());
  }

  // Step 1b: cache rows of key block b's positions on partitions (a matmul per chunk computes
  // entry * block_size + offset while turning positions onto partitions), then its K and V rows.
  void gather_block(size_t b) {
    if (b >= plan_.blocks.size()) return;
    const PagedKeyBlock& kb = plan_.blocks[b];
    const Rows& r = rows_[b % kBlockBuffers];
    const View located = located_[b % kTableBuffers];
    const int64_t skip = kb.k0 - kb.k0 / bs_ * bs_;
    for (int64_t c = 0; c < kb.chunks(); ++c) {
      core_.matmul(slots_ps_.rows(0, kb.chunk_rows(c)).cols(c, 1),
                   located.cols(skip + c * kPartitions, kb.chunk_rows(c)), slot_weights_, true,
                   true);
    }
    core_.tensor_copy(r.slots.cols(0, kb.chunks()), slots_ps_.cols(0, kb.chunks()));
    for (int64_t c = 0; c < kb.chunks(); ++c) {
      const View ids = r.slots.rows(0, kb.chunk_rows(c)).cols(c, 1);
      auto queue = [&] { return queues_.load(); };
      split_gather(core_, r.k.rows(0, kb.chunk_rows(c)).cols(c * W_, W_), k_cache_, ids,
                   queues_.loads(), queue);
      split_gather(core_, r.v.rows(0, kb.chunk_rows(c)).cols(c * W_, W_), v_cache_, ids,
                   queues_.loads(), queue);
    }
  }

  // Q^T [head_dim, set, lane rows] of unit u: one transposing DMA per lane position, covering
  // that lane of every set (the heads of a set's lanes are consecutive).
  void load_queries(size_t u) {
    if (u >= plan_.units.size()) return;
    const PagedUnit& un = plan_.units[u];
    const PagedRowLayout& l = layout_of(un);
    const int64_t row = sequences_[un.sequence].first_row + un.row0;
    const int64_t ldq = q_.partition_stride();
    for (int64_t lane = 0; lane < l.lanes_per_set; ++lane) {
      const int64_t sets = l.sets_with_lane(lane);
      if (sets == 0) continue;
      const View dst =
          qt_[u % 2].slice(0, 0, sets).slice(1, lane * l.stride, l.lane_rows()).split(1, un.mq);
      core_.dma_copy(dst,
                     q_.pattern(row * ldq + l.first_head(0, lane) * hd_, Dim{hd_, 1},
                                {Dim{sets, l.lanes_per_set * l.heads_per_lane * hd_},
                                 Dim{l.heads_per_lane, hd_}, Dim{un.mq, ldq}}),
                     queues_.load());
    }
  }

  // The 0 / -1e30 mask of a unit's rows over key block st.block, built once per block for its
  // first set, the widest (every set of a unit has the same lanes, rows and positions).
  void build_mask(const PagedStep& st) {
    const PagedUnit& u = plan_.units[st.unit];
    const PagedKeyBlock& kb = plan_.blocks[st.block];
    const bool fut = future(u, kb), pst = past(u, kb);
    if (!fut && !pst) return;
    const PagedRowLayout& l = layout_of(u);
    const View mask = mask_[st.block % 2].cols(0, kb.nk);
    core_.memset(mask.rows(0, l.partitions(0)), 0.0f, Engine::kGpSimd);
    // Row r of a one-head lane sits at pos0 + r; all rows of a many-head lane at pos0.
    const float step = l.heads_per_lane == 1 ? 1.0f : 0.0f;
    for (int64_t lane = 0; lane < l.lanes_in(0); ++lane) {
      const View m = mask.rows(lane * l.stride, l.computed_rows(0, lane));
      if (fut) {  // keep key k0 + j for row r where pos0 + r - (k0 + j) >= 0
        core_.affine_select(m, m, static_cast<float>(u.pos0 - kb.k0), step, {-1.0f},
                            AluOp::kIsGreaterEqual, kMaskFill);
      }
      if (pst) {  // keep where (k0 + j) - (pos0 + r) + window - 1 >= 0
        core_.affine_select(m, m, static_cast<float>(kb.k0 - u.pos0 + shape_.window - 1), -step,
                            {1.0f}, AluOp::kIsGreaterEqual, kMaskFill);
      }
    }
  }

  // Step 2: K^T of each kv head step st's set reads, unless already made for its key block.
  void transpose_keys(const PagedStep& st) {
    if (st.block != kt_block_) {
      std::fill(kt_slot_.begin(), kt_slot_.end(), -1);
      kt_block_ = st.block;
    }
    const PagedRowLayout& l = layout_of(plan_.units[st.unit]);
    const PagedKeyBlock& kb = plan_.blocks[st.block];
    const Rows& r = rows_[st.block % kBlockBuffers];
    for (int64_t lane = 0; lane < l.lanes_in(st.set); ++lane) {
      const int64_t kvh = kv_head(l, st.set, lane);
      if (kt_slot_[kvh] >= 0) continue;
      const View ps = kt_ps_[kt_next_ % 2];
      for (int64_t c = 0; c < kb.chunks(); ++c) {
        const int64_t ck = kb.chunk_rows(c);
        core_.transpose(ps.cols(c * kPartitions, ck), r.k.rows(0, ck).cols(c * W_ + kvh * hd_, hd_));
      }
      kt_slot_[kvh] = kt_next_ % kKeyTiles;
      core_.tensor_copy(kt_[kt_slot_[kvh]].cols(0, kb.nk), ps.cols(0, kb.nk), Engine::kScalar);
      ++kt_next_;
    }
  }

  // Step 3: per lane, S = Q K^T of its kv head, masked where some row must not see some key.
  void scores(size_t i) {
    const PagedStep& st = steps()[i];
    const PagedUnit& u = plan_.units[st.unit];
    const PagedKeyBlock& kb = plan_.blocks[st.block];
    const PagedRowLayout& l = layout_of(u);
    const Slot& w = slots_[i % 2];
    const View qt = qt_[st.unit % 2].slice(0, st.set, 1);
    for (int64_t lane = 0; lane < l.lanes_in(st.set); ++lane) {
      const int64_t off = lane * l.stride, rows = l.computed_rows(st.set, lane);
      core_.matmul(w.s_ps.rows(off, rows).cols(0, kb.nk), qt.slice(1, off, rows),
                   kt_[kt_slot_[kv_head(l, st.set, lane)]].cols(0, kb.nk), true, true);
    }
    const int64_t P = l.partitions(st.set);
    const View s_ps = w.s_ps.rows(0, P).cols(0, kb.nk);
    scores_[i % 2] = s_ps;
    if (!future(u, kb) && !past(u, kb)) return;
    const View s = w.s.rows(0, P).cols(0, kb.nk);
    core_.tensor_tensor(s, s_ps, AluOp::kAdd, mask_[st.block % 2].rows(0, P).cols(0, kb.nk));
    scores_[i % 2] = s;
  }

  // Step 4: the online softmax's statistics and P for step i's rows.
  void softmax(size_t i) {
    const PagedStep& st = steps()[i];
    const PagedUnit& u = plan_.units[st.unit];
    const PagedKeyBlock& kb = plan_.blocks[st.block];
    const int64_t P = layout_of(u).partitions(st.set);
    const Slot& w = slots_[i % 2];
    const State& state = state_[st.unit % 2];
    auto col = [&](const View& tile, int64_t c) { return tile.rows(0, P).cols(c, 1); };
    const View block_max = col(w.cols, 0), corr = col(w.cols, 1), sum = col(w.cols, 2);
    const View l = col(state.l, st.set);
    const View nb = col(state.nb[st.kb % 2], st.set);
    const View src = scores_[i % 2];
    const View p = w.p.rows(0, P).cols(0, kb.nk);
    core_.tensor_reduce(block_max, AluOp::kMax, src);
    const float scale = shape_.scale;
    if (!has_state(st)) {
      core_.tensor_scalar(nb, block_max, AluOp::kMultiply, -scale);
      core_.activation_reduce(p, Activation::kExp, src, l, scale, nb);
      return;
    }
    const View nb_old = st.kb > 0 ? col(state.nb[(st.kb - 1) % 2], st.set)
                                  : col(nsinks_, sink_column_[u.layout] + st.set);
    core_.tensor_scalar(nb, block_max, AluOp::kMultiply, -scale, AluOp::kMin, nb_old);
    core_.activation_reduce(p, Activation::kExp, src, sum, scale, nb);
    core_.activation(corr, Activation::kExp, nb_old, -1.0f, nb);
    if (st.kb == 0) {
      core_.tensor_scalar(l, corr, AluOp::kAdd, sum);  // the sink's l = 1, rescaled
    } else {
      core_.tensor_scalar(l, l, AluOp::kMultiply, corr, AluOp::kAdd, sum);
    }
  }

  // Step 5: O = O * corr + P V for step i; after the unit's last block, out = O / l.
  void values(size_t i) {
    const PagedStep& st = steps()[i];
    const PagedUnit& u = plan_.units[st.unit];
    const PagedKeyBlock& kb = plan_.blocks[st.block];
    const PagedRowLayout& l = layout_of(u);
    const Slot& w = slots_[i % 2];
    const State& state = state_[st.unit % 2];
    const Rows& r = rows_[st.block % kBlockBuffers];
    const int64_t P = l.partitions(st.set), nc = kb.chunks(), full = kb.nk / kPartitions;
    const View p = w.p.rows(0, P);
    for (int64_t c = 0; c < nc; ++c) {
      core_.transpose(w.pt_ps.rows(0, kb.chunk_rows(c)).cols(c * P, P),
                      p.cols(c * kPartitions, kb.chunk_rows(c)));
    }
    if (full > 0) core_.tensor_copy(w.pt.cols(0, full * P), w.pt_ps.cols(0, full * P));
    if (full < nc) {
      const int64_t ck = kb.chunk_rows(full);
      core_.tensor_copy(w.pt.rows(0, ck).cols(full * P, P), w.pt_ps.rows(0, ck).cols(full * P, P));
    }
    for (int64_t lane = 0; lane < l.lanes_in(st.set); ++lane) {
      const int64_t off = lane * l.stride, rows = l.computed_rows(st.set, lane);
      const int64_t kvh = kv_head(l, st.set, lane);
      for (int64_t c = 0; c < nc; ++c) {
        const int64_t ck = kb.chunk_rows(c);
        core_.matmul(w.o_ps.rows(off, rows), w.pt.rows(0, ck).cols(c * P + off, rows),
                     r.v.rows(0, ck).cols(c * W_ + kvh * hd_, hd_), c == 0, c + 1 == nc);
      }
    }
    const View o_ps = w.o_ps.rows(0, P);
    const View o = state.o.rows(0, P).cols(st.set * hd_, hd_);
    if (st.kb == 0) {
      core_.tensor_copy(o, o_ps, Engine::kScalar);
    } else {
      core_.tensor_scalar(o, o, AluOp::kMultiply, w.cols.rows(0, P).cols(1, 1), AluOp::kBypass,
                          0.0f, Engine::kGpSimd);
      core_.tensor_tensor(o, o, AluOp::kAdd, o_ps);
    }
    if (!last_block(st)) return;
    core_.tensor_scalar(state.out.rows(0, P).cols(st.set * hd_, hd_), o, AluOp::kDivide,
                        state.l.rows(0, P).cols(st.set, 1));
    store_output(u, st.set, state);
  }

  // The finished set's rows to `out`: a natural layout's unit all at once after its last set,
  // otherwise each lane's rows (one row's heads, or one head's rows) by themselves.
  void store_output(const PagedUnit& u, int64_t set, const State& state) {
    const PagedRowLayout& l = layout_of(u);
    const int64_t row = sequences_[u.sequence].first_row + u.row0;
    if (l.natural()) {
      if (set + 1 < l.sets()) return;
      split_copy(core_, out_.rows(row, u.mq), state.out.rows(0, u.mq), queues_.stores(),
                 [&] { return queues_.store(); });
      return;
    }
    const int64_t ldo = out_.partition_stride();
    const int64_t row_step = l.heads_per_lane > 1 ? hd_ : ldo;  // next head, or next row
    for (int64_t lane = 0; lane < l.lanes_in(set); ++lane) {
      core_.dma_copy(out_.pattern(row * ldo + l.first_head(set, lane) * hd_,
                                  Dim{l.lane_rows(), row_step}, {Dim{hd_, 1}}),
                     state.out.rows(lane * l.stride, l.lane_rows()).cols(set * hd_, hd_),
                     queues_.store());
    }
  }

  NeuronCore& core_;
  TilePool pool_;
  View out_, q_, k_cache_, v_cache_, tables_, sinks_;
  std::span<const PagedSequence> sequences_;
  PagedAttentionShape shape_;
  DType compute_;
  int64_t H_, KV_, hd_, bs_, W_;
  DmaQueues queues_;
  PagedAttentionPlan plan_;
  View nsinks_, slots_ps_, slot_weights_;
  View located_[kTableBuffers];
  View qt_[2], scores_[2], mask_[2], kt_ps_[2];
  View kt_[kKeyTiles];
  Rows rows_[kBlockBuffers];
  State state_[2];
  Slot slots_[2];
  std::vector<int64_t> sink_column_;  // layout -> its first column of nsinks_
  std::vector<int64_t> kt_slot_;  // kv head -> its K^T tile for key block kt_block_, or -1
  size_t kt_block_ = SIZE_MAX;
  int64_t kt_next_ = 0;
};

}  // namespace

int64_t paged_attention_sbuf_bytes(const PagedAttentionShape& shape, DType compute) {
  const int64_t e = dtype_bytes(compute), H = shape.heads, hd = shape.head_dim;
  const int64_t W = int64_t{shape.kv_heads} * hd, bs = shape.block_size;
  const int64_t table = max_table_blocks(bs);
  // At most four arrangements of sinks: decode rows, and one-head lanes at strides 32, 64, 128.
  const int64_t sinks = 4 * H * 4;
  const int64_t block = kChunks * 4 + 2 * kChunks * W * e;
  const int64_t key_tiles = kKeyTiles * kKeyBlock * e;
  const int64_t per_unit = H * kPartitions * e + H * hd * 4 + 3 * H * 4 + H * hd * 4;
  const int64_t per_step = kKeyBlock * 4 + kKeyBlock * 4 + kKeyBlock * e +
                           kChunks * kPartitions * e + 3 * 4;
  return static_cast<int64_t>(kTableBuffers) * table * bs * 4 + 4 + sinks +
         static_cast<int64_t>(kBlockBuffers) * block + key_tiles +
         2 * per_unit + 2 * per_step + kSlack;
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
  const int64_t need = paged_attention_sbuf_bytes(shape, compute);
  require(need <= core.sbuf_largest_free(),
          "{}: {} heads of {} and {} kv heads need {} bytes per SBUF partition and {} are free",
          name, shape.heads, shape.head_dim, shape.kv_heads, need, core.sbuf_largest_free());
  PagedAttentionProgram(core, out, q, k_cache, v_cache, block_tables, sinks, sequences, shape,
                        compute)
      .run();
}

}  // namespace switchyard::backend::neuron
