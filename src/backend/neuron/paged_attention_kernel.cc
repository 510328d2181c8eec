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
// Key blocks are gathered kGatherAhead blocks ahead of the one being read, so that their gathers
// (a few DMA latencies in a row) overlap the steps of the blocks before. The buffers also hold
// the blocks whose values are still to be issued, so that a gather never overwrites them. Block table entries are loaded one block further ahead still, so that the
// instructions computing a block's cache rows never wait in an engine's in-order queue for them.
constexpr size_t kGatherAhead = 3;
// A step's values are issued kValuesLag steps after its scores and softmax, so that the engines
// have the next steps' independent work queued ahead of each P V (which waits for the whole
// softmax chain). Tiles a step's values read live that much longer: a step's P and statistics,
// a unit's state, a block's V.
constexpr size_t kValuesLag = 1;
constexpr size_t kStepBuffers = kValuesLag + 1;
constexpr size_t kUnitBuffers = kValuesLag + 1;
constexpr size_t kBlockBuffers = kGatherAhead + 1 + kValuesLag;
constexpr size_t kLocateAhead = kGatherAhead + 1;
constexpr size_t kTableBuffers = kLocateAhead + 1;
// K^T tiles, reused round-robin: a set reads at most kPagedMaxLanes of them and the set before
// it as many, so a tile is never overwritten while a set that needs it is still to be issued.
constexpr int64_t kKeyTiles = 2 * kPagedMaxLanes;

// Partitions a head's K^T (and Q^T) rows take in a key tile: its head_dim, aligned.
int64_t head_slot(int64_t head_dim) { return head_dim <= 32 ? 32 : head_dim <= 64 ? 64 : 128; }

// Whether a tile of `rows` partitions may start at partition `start`.
bool aligned(int64_t start, int64_t rows) {
  return rows <= 32 ? start % 32 == 0 : rows <= 64 ? start % 64 == 0 : start == 0;
}
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
        slot_(head_slot(shape.head_dim)),
        tile_heads_(std::min<int64_t>(kPartitions / slot_, shape.kv_heads)),
        queues_(core, 0.25) {}

  void run() {
    plan_ = plan_paged_attention(sequences_, shape_);
    const std::vector<PagedStep>& steps = plan_.steps;
    if (steps.empty()) return;
    allocate();
    for (size_t b = 0; b < kLocateAhead; ++b) locate_block(b);
    for (size_t b = 0; b < kGatherAhead; ++b) gather_block(b);
    load_queries(0);
    transpose_keys(steps[0]);
    for (size_t i = 0; i < steps.size() + kValuesLag; ++i) {
      const bool new_block = i < steps.size() && starts_block(i);
      if (new_block) {
        locate_block(steps[i].block + kLocateAhead);
        gather_block(steps[i].block + kGatherAhead);
        build_mask(steps[i]);
      }
      // Engines run their instructions in issue order, so each goes in after the work that will
      // be ready before it: the next step's K^T (its gathers are long done), an earlier step's
      // values and later blocks' gathers before this step's softmax, whose every stage waits
      // for the one before.
      if (i < steps.size()) {
        scores(i);
        if (i + 1 < steps.size()) transpose_keys(steps[i + 1]);
      }
      if (i >= kValuesLag) values(i - kValuesLag);
      if (i < steps.size()) softmax(i);
      // The Q^T buffer of the unit before step i's is free once step i's scores are issued.
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
  // A step's scores (in PSUM, and masked in SBUF), read by its softmax.
  struct ScoreTiles {
    View s_ps, s;
  };
  // A step's P and columns (block max, correction, block sum), read by its values.
  struct ProbTiles {
    View p, cols;
  };
  // Working tiles of one step's values: P^T (PSUM, SBUF) and P V.
  struct ValueTiles {
    View pt_ps, pt, o_ps;
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
  // A key tile holds the K^T of tile_heads_ consecutive kv heads, each at a multiple of slot_
  // partitions, so that one matmul scores lanes of several kv heads (their Q^T columns zero
  // outside their own head's partitions) and one copy moves several heads' K^T.
  int64_t key_tile(int64_t kvh) const { return kvh / tile_heads_; }
  int64_t key_row(int64_t kvh) const { return kvh % tile_heads_ * slot_; }
  int64_t tile_heads(int64_t tile) const { return std::min(tile_heads_, KV_ - tile * tile_heads_); }
  int64_t tile_rows(int64_t tile) const { return (tile_heads(tile) - 1) * slot_ + hd_; }
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
      kt_[i] = pool_.sbuf(kPartitions, {kKeyBlock}, compute_, "paged.kT" + std::to_string(i));
    kt_slot_.assign(static_cast<size_t>(ceil_div(KV_, tile_heads_)), -1);
    for (size_t i = 0; i < kUnitBuffers; ++i) {
      const std::string n = "paged.unit" + std::to_string(i);
      state_[i] = {pool_.sbuf(kPartitions, {H_ * hd_}, DType::kF32, n + ".o"),
                   pool_.sbuf(kPartitions, {H_}, DType::kF32, n + ".l"),
                   {pool_.sbuf(kPartitions, {H_}, DType::kF32, n + ".nb0"),
                    pool_.sbuf(kPartitions, {H_}, DType::kF32, n + ".nb1")},
                   pool_.sbuf(kPartitions, {H_ * hd_}, out_.dtype(), n + ".out")};
    }
    for (size_t i = 0; i < kStepBuffers; ++i) {
      const std::string n = "paged.step" + std::to_string(i);
      probs_[i] = {pool_.sbuf(kPartitions, {kKeyBlock}, compute_, n + ".p"),
                   pool_.sbuf(kPartitions, {3}, DType::kF32, n + ".cols")};
    }
    for (int i = 0; i < 2; ++i) {
      const std::string n = "paged." + std::to_string(i);
      qt_[i] = pool_.sbuf(kPartitions, {H_, kPartitions}, compute_, n + ".qT");
      mask_[i] = pool_.sbuf(kPartitions, {kKeyBlock}, DType::kF32, n + ".mask");
      score_tiles_[i] = {pool_.psum(kPartitions, {kKeyBlock}, DType::kF32, n + ".ps.s"),
                         pool_.sbuf(kPartitions, {kKeyBlock}, DType::kF32, n + ".s")};
      value_tiles_[i] = {pool_.psum(kPartitions, {kChunks * kPartitions}, compute_, n + ".ps.pT"),
                         pool_.sbuf(kPartitions, {kChunks * kPartitions}, compute_, n + ".pT"),
                         pool_.psum(kPartitions, {hd_}, DType::kF32, n + ".ps.o")};
      kt_ps_[i] = pool_.psum(kPartitions, {kKeyBlock}, compute_, n + ".ps.kT");
      // Rows between the heads of a key tile are never written by transposes: keep them finite.
      if (hd_ < slot_ && tile_heads_ > 1) core_.memset(kt_ps_[i], 0.0f);
    }
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

  // Q^T of unit u: set s's lane l in columns [l * stride, (l + 1) * stride) of qT[:, s], on the
  // partitions of its kv head in a key tile; zero elsewhere, including the padding columns of
  // lanes that compute a whole stride (so that their rows stay finite). The zeros are written
  // when a buffer first holds a layout; loads of that layout write only the same Q^T places.
  void load_queries(size_t u) {
    if (u >= plan_.units.size()) return;
    const PagedUnit& un = plan_.units[u];
    const PagedRowLayout& l = layout_of(un);
    const View qt = qt_[u % 2];
    if (qt_layout_[u % 2] != un.layout) {
      core_.memset(qt.slice(0, 0, l.sets()), 0.0f, Engine::kGpSimd);
      qt_layout_[u % 2] = un.layout;
    }
    for (int64_t set = 0; set < l.sets(); ++set) {
      // One DMA per run of lanes at one key row, evenly spaced (a decode set alternates rows).
      std::vector<bool> loaded(static_cast<size_t>(l.lanes_in(set)), false);
      for (int64_t a = 0; a < l.lanes_in(set); ++a) {
        if (loaded[a]) continue;
        const int64_t row = key_row(kv_head(l, set, a));
        int64_t step = 0, count = 1;
        for (int64_t b = a + 1; b < l.lanes_in(set); ++b) {
          if (loaded[b] || key_row(kv_head(l, set, b)) != row) continue;
          if (step == 0) step = b - a;
          if (b != a + count * step) break;
          ++count;
        }
        for (int64_t k = 0; k < count; ++k) loaded[a + k * std::max<int64_t>(step, 1)] = true;
        load_query_lanes(un, set, a, count, std::max<int64_t>(step, 1), row, qt);
      }
    }
  }

  // Lanes first, first + step, ... (count of them) of a set of unit un, at partition `row`.
  void load_query_lanes(const PagedUnit& un, int64_t set, int64_t first, int64_t count,
                        int64_t step, int64_t row, const View& qt) {
    const PagedRowLayout& l = layout_of(un);
    const View dst = qt.rows(row, hd_)
                         .slice(0, set, 1)
                         .split(1, l.stride)
                         .slice(1, first, count, step)
                         .slice(2, 0, l.lane_rows())
                         .split(2, un.mq);
    const int64_t q_row = sequences_[un.sequence].first_row + un.row0;
    const int64_t ldq = q_.partition_stride();
    core_.dma_copy(dst,
                   q_.pattern(q_row * ldq + l.first_head(set, first) * hd_, Dim{hd_, 1},
                              {Dim{count, step * l.heads_per_lane * hd_},
                               Dim{l.heads_per_lane, hd_}, Dim{un.mq, ldq}}),
                   queues_.load());
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

  // Step 2: the key tiles step st's set reads, unless already made for its key block.
  void transpose_keys(const PagedStep& st) {
    if (st.block != kt_block_) {
      std::fill(kt_slot_.begin(), kt_slot_.end(), -1);
      kt_block_ = st.block;
    }
    const PagedRowLayout& l = layout_of(plan_.units[st.unit]);
    for (int64_t lane = 0; lane < l.lanes_in(st.set); ++lane) {
      const int64_t tile = key_tile(kv_head(l, st.set, lane));
      if (kt_slot_[tile] < 0) make_key_tile(st.block, tile);
    }
  }

  void make_key_tile(size_t block, int64_t tile) {
    const PagedKeyBlock& kb = plan_.blocks[block];
    const Rows& r = rows_[block % kBlockBuffers];
    const View ps = kt_ps_[kt_next_ % 2];
    const int64_t first = tile * tile_heads_, n = tile_heads(tile);
    for (int64_t c = 0; c < kb.chunks(); ++c) {
      const int64_t ck = kb.chunk_rows(c);
      const View k = r.k.rows(0, ck).cols(c * W_ + first * hd_, n * hd_);
      if (hd_ == slot_) {  // the heads' columns land on their rows in one transpose
        core_.transpose(ps.rows(0, n * hd_).cols(c * kPartitions, ck), k);
        continue;
      }
      for (int64_t j = 0; j < n; ++j) {
        core_.transpose(ps.rows(j * slot_, hd_).cols(c * kPartitions, ck),
                        k.cols(j * hd_, hd_));
      }
    }
    kt_slot_[tile] = kt_next_ % kKeyTiles;
    const int64_t rows = tile_rows(tile);
    core_.tensor_copy(kt_[kt_slot_[tile]].rows(0, rows).cols(0, kb.nk),
                      ps.rows(0, rows).cols(0, kb.nk), Engine::kScalar);
    ++kt_next_;
  }

  // Step 3: S = Q K^T, a matmul per run of lanes whose kv heads share a key tile, masked where
  // some row must not see some key.
  void scores(size_t i) {
    const PagedStep& st = steps()[i];
    const PagedUnit& u = plan_.units[st.unit];
    const PagedKeyBlock& kb = plan_.blocks[st.block];
    const PagedRowLayout& l = layout_of(u);
    const ScoreTiles& w = score_tiles_[i % 2];
    const int64_t n = l.lanes_in(st.set);
    for (int64_t a = 0, b = 0; a < n; a = b) {
      const int64_t tile = key_tile(kv_head(l, st.set, a));
      int64_t k_rows = 0;
      for (b = a; b < n && key_tile(kv_head(l, st.set, b)) == tile; ++b)
        k_rows = std::max(k_rows, key_row(kv_head(l, st.set, b)) + hd_);
      const int64_t start = a * l.stride;
      const int64_t rows = (b - 1 - a) * l.stride + l.computed_rows(st.set, b - 1);
      if (aligned(start, rows)) {
        score_rows(w, st, start, rows, k_rows, kt_[kt_slot_[tile]], kb.nk);
        continue;
      }
      for (int64_t lane = a; lane < b; ++lane) {  // one lane at a time is always aligned
        score_rows(w, st, lane * l.stride, l.computed_rows(st.set, lane),
                   key_row(kv_head(l, st.set, lane)) + hd_, kt_[kt_slot_[tile]], kb.nk);
      }
    }
    const int64_t P = l.partitions(st.set);
    const View s_ps = w.s_ps.rows(0, P).cols(0, kb.nk);
    scores_[i % 2] = s_ps;
    if (!future(u, kb) && !past(u, kb)) return;
    const View s = w.s.rows(0, P).cols(0, kb.nk);
    core_.tensor_tensor(s, s_ps, AluOp::kAdd, mask_[st.block % 2].rows(0, P).cols(0, kb.nk));
    scores_[i % 2] = s;
  }

  // Scores of a set's rows [start, start + rows) against key tile kt, contracting over its
  // first k_rows partitions.
  void score_rows(const ScoreTiles& w, const PagedStep& st, int64_t start, int64_t rows,
                  int64_t k_rows, const View& kt, int64_t nk) {
    core_.matmul(w.s_ps.rows(start, rows).cols(0, nk),
                 qt_[st.unit % 2].rows(0, k_rows).slice(0, st.set, 1).slice(1, start, rows),
                 kt.rows(0, k_rows).cols(0, nk), true, true);
  }

  // Step 4: the online softmax's statistics and P for step i's rows.
  void softmax(size_t i) {
    const PagedStep& st = steps()[i];
    const PagedUnit& u = plan_.units[st.unit];
    const PagedKeyBlock& kb = plan_.blocks[st.block];
    const int64_t P = layout_of(u).partitions(st.set);
    const ProbTiles& w = probs_[i % kStepBuffers];
    const State& state = state_[st.unit % kUnitBuffers];
    auto col = [&](const View& tile, int64_t c) { return tile.rows(0, P).cols(c, 1); };
    const View block_max = col(w.cols, 0), corr = col(w.cols, 1), sum = col(w.cols, 2);
    const View l = col(state.l, st.set);
    const View nb = col(state.nb[st.kb % 2], st.set);
    const View src = scores_[i % 2];  // the step's scores, as scores() left them
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
    const ProbTiles& pr = probs_[i % kStepBuffers];
    const ValueTiles& w = value_tiles_[i % 2];
    const State& state = state_[st.unit % kUnitBuffers];
    const Rows& r = rows_[st.block % kBlockBuffers];
    const int64_t P = l.partitions(st.set), nc = kb.chunks(), full = kb.nk / kPartitions;
    const View p = pr.p.rows(0, P);
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
      core_.tensor_scalar(o, o, AluOp::kMultiply, pr.cols.rows(0, P).cols(1, 1), AluOp::kBypass,
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
  int64_t slot_, tile_heads_;  // partitions per head in a key tile, kv heads per key tile
  DmaQueues queues_;
  PagedAttentionPlan plan_;
  View nsinks_, slots_ps_, slot_weights_;
  View located_[kTableBuffers];
  View qt_[2], scores_[2], mask_[2], kt_ps_[2];
  ScoreTiles score_tiles_[2];
  ValueTiles value_tiles_[2];
  ProbTiles probs_[kStepBuffers];
  View kt_[kKeyTiles];
  Rows rows_[kBlockBuffers];
  State state_[kUnitBuffers];
  std::vector<int64_t> sink_column_;  // layout -> its first column of nsinks_
  std::vector<int64_t> kt_slot_;  // key tile -> its buffer for key block kt_block_, or -1
  size_t qt_layout_[2] = {SIZE_MAX, SIZE_MAX};  // the layout each Q^T buffer was zeroed for
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
  const int64_t state = H * hd * 4 + 3 * H * 4 + H * hd * 4;        // o, l, nb x2, out
  const int64_t probs = kKeyBlock * e + 3 * 4;                         // p, cols
  const int64_t pairs = H * kPartitions * e + kKeyBlock * 4 * 2 + kChunks * kPartitions * e;
  return static_cast<int64_t>(kTableBuffers) * table * bs * 4 + 4 + sinks +
         static_cast<int64_t>(kBlockBuffers) * block + key_tiles +
         static_cast<int64_t>(kUnitBuffers) * state + static_cast<int64_t>(kStepBuffers) * probs +
         2 * pairs + kSlack;
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
