#include "backend/neuron/paged_attention_kernel.h"

#include <algorithm>
#include <string>
#include <vector>

#include "backend/neuron/dma_queues.h"
#include "backend/neuron/kernel_support.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

constexpr int64_t kKeyBlock = 512;  // keys per score block: one PSUM bank of fp32
constexpr int64_t kChunks = kKeyBlock / kPartitions;  // 128-key chunks per block
constexpr float kMaskFill = -1e30f;  // added to masked scores: exp(scale * (s + fill) + nb) = 0
constexpr int64_t kSlack = 64 * 64;  // per-partition alignment slack of the pool's allocations

// Positions of one key block: [k0, k0 + nk).
struct KeyBlock {
  int64_t sequence = 0, k0 = 0, nk = 0;
  int64_t chunks() const { return ceil_div(nk, kPartitions); }
  int64_t chunk_rows(int64_t c) const { return std::min(kPartitions, nk - c * kPartitions); }
};

// Up to 128 query rows of one sequence, at positions [pos0, pos0 + mq).
struct Unit {
  int64_t sequence = 0, row0 = 0, mq = 0, pos0 = 0;
  size_t first_block = 0, blocks = 0;  // its key blocks in the kernel's list
};

// One (unit, key block, query head): steps 3-5 of the header.
struct Step {
  size_t unit = 0, block = 0;
  int64_t kb = 0, h = 0;  // block within the unit, query head
};

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
    plan();
    if (steps_.empty()) return;
    allocate();
    prefetch_block(0);
    load_queries(0);
    for (size_t i = 0; i <= steps_.size(); ++i) {
      if (i < steps_.size()) {
        const Step& st = steps_[i];
        if (starts_group(i)) transpose_keys(st.block, st.h / group());
        scores(i);
        softmax(i);
      }
      if (i >= 1) values(i - 1);
      // Buffers of the block and unit before step i's are free once step i - 1's values are
      // issued: fetch the next ones into them.
      if (i < steps_.size() && starts_block(i)) prefetch_block(steps_[i].block + 1);
      if (i < steps_.size() && starts_unit(i)) load_queries(steps_[i].unit + 1);
    }
  }

 private:
  // Gathered key-block rows: block table entries, cache rows (along one partition, then one
  // column per 128-key chunk), and K, V rows [128, chunk, kv_heads * head_dim].
  struct Rows {
    View table, slots_row, slots, k, v;
  };
  // A unit's running output, sum and nb (ping-pong by key block) per head, and its output tile.
  struct State {
    View o, l;
    View nb[2];
    View out;
  };
  // One step's working tiles: scores, mask, P, P^T, columns (block max, correction, block sum).
  struct Slot {
    View s, mask, p, pt, cols, s_ps, pt_ps, o_ps;
  };

  int64_t group() const { return H_ / KV_; }
  bool starts_block(size_t i) const { return i == 0 || steps_[i].block != steps_[i - 1].block; }
  bool starts_unit(size_t i) const { return i == 0 || steps_[i].unit != steps_[i - 1].unit; }
  bool starts_group(size_t i) const { return starts_block(i) || steps_[i].h % group() == 0; }
  bool last_block(const Step& st) const { return st.kb + 1 == int64_t(units_[st.unit].blocks); }
  bool has_state(const Step& st) const { return st.kb > 0 || present(sinks_); }

  // Units, their key blocks and the steps, from the host-side sequence lengths.
  void plan() {
    for (size_t s = 0; s < sequences_.size(); ++s) {
      const PagedSequence& seq = sequences_[s];
      const int64_t first_pos = seq.context - seq.rows;
      for (int64_t r0 = 0; r0 < seq.rows; r0 += kPartitions) {
        Unit u{static_cast<int64_t>(s), r0, std::min(kPartitions, seq.rows - r0), first_pos + r0};
        const int64_t lo = shape_.window > 0 ? std::max<int64_t>(0, u.pos0 - shape_.window + 1) : 0;
        const int64_t hi = u.pos0 + u.mq;
        u.first_block = blocks_.size();
        for (int64_t k0 = lo; k0 < hi; k0 += kKeyBlock)
          blocks_.push_back({u.sequence, k0, std::min(kKeyBlock, hi - k0)});
        u.blocks = blocks_.size() - u.first_block;
        for (size_t b = 0; b < u.blocks; ++b)
          for (int64_t h = 0; h < H_; ++h)
            steps_.push_back({units_.size(), u.first_block + b, static_cast<int64_t>(b), h});
        units_.push_back(u);
      }
    }
  }

  void allocate() {
    const int64_t table_cols = max_table_blocks(bs_);
    offsets_ = pool_.sbuf(1, {table_cols * bs_}, DType::kF32, "paged.offsets");
    core_.iota(offsets_.split(0, bs_), 0.0f, 0.0f, {0.0f, 1.0f});  // position within its block
    if (present(sinks_)) {
      nsinks_ = pool_.sbuf(kPartitions, {H_}, DType::kF32, "paged.nsinks");
      core_.dma_copy(nsinks_, broadcast_rows(sinks_, kPartitions), queues_.load());
      core_.tensor_scalar(nsinks_, nsinks_, AluOp::kMultiply, -1.0f);
    }
    for (int i = 0; i < 2; ++i) {
      const std::string n = "paged." + std::to_string(i);
      rows_[i] = {pool_.sbuf(1, {table_cols}, DType::kF32, n + ".table"),
                  pool_.sbuf(1, {table_cols * bs_}, DType::kF32, n + ".slots_row"),
                  pool_.sbuf(kPartitions, {kChunks}, DType::kI32, n + ".slots"),
                  pool_.sbuf(kPartitions, {kChunks * W_}, compute_, n + ".k"),
                  pool_.sbuf(kPartitions, {kChunks * W_}, compute_, n + ".v")};
      kt_[i] = pool_.sbuf(hd_, {kKeyBlock}, compute_, n + ".kT");
      qt_[i] = pool_.sbuf(hd_, {H_, kPartitions}, compute_, n + ".qT");
      state_[i] = {pool_.sbuf(kPartitions, {H_ * hd_}, DType::kF32, n + ".o"),
                   pool_.sbuf(kPartitions, {H_}, DType::kF32, n + ".l"),
                   {pool_.sbuf(kPartitions, {H_}, DType::kF32, n + ".nb0"),
                    pool_.sbuf(kPartitions, {H_}, DType::kF32, n + ".nb1")},
                   pool_.sbuf(kPartitions, {H_ * hd_}, out_.dtype(), n + ".out")};
      slots_[i] = {pool_.sbuf(kPartitions, {kKeyBlock}, DType::kF32, n + ".s"),
                   pool_.sbuf(kPartitions, {kKeyBlock}, DType::kF32, n + ".mask"),
                   pool_.sbuf(kPartitions, {kKeyBlock}, compute_, n + ".p"),
                   pool_.sbuf(kPartitions, {kChunks * kPartitions}, compute_, n + ".pT"),
                   pool_.sbuf(kPartitions, {3}, DType::kF32, n + ".cols"),
                   pool_.psum(kPartitions, {kKeyBlock}, DType::kF32, n + ".ps.s"),
                   pool_.psum(kPartitions, {kChunks * kPartitions}, compute_, n + ".ps.pT"),
                   pool_.psum(kPartitions, {hd_}, DType::kF32, n + ".ps.o")};
    }
    kt_ps_ = pool_.psum(hd_, {kKeyBlock}, compute_, "paged.ps.kT");
    slots_ps_ = pool_.psum(kPartitions, {kChunks}, DType::kF32, "paged.ps.slots");
  }

  // Step 1: cache rows of key block b's positions, then its K and V rows (all kv heads).
  void prefetch_block(size_t b) {
    if (b >= blocks_.size()) return;
    const KeyBlock& kb = blocks_[b];
    const Rows& r = rows_[b % 2];
    const int64_t b_first = kb.k0 / bs_, nblk = (kb.k0 + kb.nk - 1) / bs_ - b_first + 1;
    const int64_t max_blocks = tables_.free_size();
    core_.dma_copy(r.table.cols(0, nblk),
                   tables_.pattern(kb.sequence * max_blocks + b_first, Dim{1, 1}, {Dim{nblk, 1}}),
                   queues_.load());
    // slot = table[block] * block_size + offset, for the positions of blocks b_first.. in order.
    const View slots = r.slots_row.cols(0, nblk * bs_).split(0, bs_);
    core_.tensor_scalar(slots, r.table.cols(0, nblk).split(0, 1).broadcast(1, bs_),
                        AluOp::kMultiply, static_cast<float>(bs_));
    core_.tensor_tensor(slots, slots, AluOp::kAdd, offsets_.cols(0, nblk * bs_).split(0, bs_));
    const int64_t skip = kb.k0 - b_first * bs_;
    for (int64_t c = 0; c < kb.chunks(); ++c) {
      core_.transpose(slots_ps_.rows(0, kb.chunk_rows(c)).cols(c, 1),
                      r.slots_row.cols(skip + c * kPartitions, kb.chunk_rows(c)));
    }
    const int64_t full = kb.nk / kPartitions;
    if (full > 0) core_.tensor_copy(r.slots.cols(0, full), slots_ps_.cols(0, full));
    if (full < kb.chunks()) {
      core_.tensor_copy(r.slots.rows(0, kb.chunk_rows(full)).cols(full, 1),
                        slots_ps_.rows(0, kb.chunk_rows(full)).cols(full, 1));
    }
    for (int64_t c = 0; c < kb.chunks(); ++c) {
      const View ids = r.slots.rows(0, kb.chunk_rows(c)).cols(c, 1);
      auto queue = [&] { return queues_.load(); };
      split_gather(core_, r.k.rows(0, kb.chunk_rows(c)).cols(c * W_, W_), k_cache_, ids,
                   queues_.loads(), queue);
      split_gather(core_, r.v.rows(0, kb.chunk_rows(c)).cols(c * W_, W_), v_cache_, ids,
                   queues_.loads(), queue);
    }
  }

  // Q^T [head_dim, heads, rows] of unit u, by one transposing DMA.
  void load_queries(size_t u) {
    if (u >= units_.size()) return;
    const Unit& un = units_[u];
    const int64_t row = sequences_[un.sequence].first_row + un.row0;
    const int64_t ldq = q_.partition_stride();
    core_.dma_copy(qt_[u % 2].slice(1, 0, un.mq),
                   q_.pattern(row * ldq, Dim{hd_, 1}, {Dim{H_, hd_}, Dim{un.mq, ldq}}),
                   queues_.load());
  }

  // Step 2: K^T of kv head `kvh` for key block b.
  void transpose_keys(size_t b, int64_t kvh) {
    const KeyBlock& kb = blocks_[b];
    const Rows& r = rows_[b % 2];
    for (int64_t c = 0; c < kb.chunks(); ++c) {
      const int64_t ck = kb.chunk_rows(c);
      core_.transpose(kt_ps_.cols(c * kPartitions, ck),
                      r.k.rows(0, ck).cols(c * W_ + kvh * hd_, hd_));
    }
    const View kt = kt_[kt_turn_++ % 2];
    core_.tensor_copy(kt.cols(0, kb.nk), kt_ps_.cols(0, kb.nk), Engine::kScalar);
    kt_current_ = kt;
  }

  // Step 3: S = Q K^T for step i's head, masked where some row must not see some key.
  void scores(size_t i) {
    const Step& st = steps_[i];
    const Unit& u = units_[st.unit];
    const KeyBlock& kb = blocks_[st.block];
    const Slot& w = slots_[i % 2];
    const View s_ps = w.s_ps.rows(0, u.mq).cols(0, kb.nk);
    core_.matmul(s_ps, qt_[st.unit % 2].slice(0, st.h, 1).slice(1, 0, u.mq),
                 kt_current_.cols(0, kb.nk), true, true);
    const bool future = kb.k0 + kb.nk - 1 > u.pos0;
    const bool past = shape_.window > 0 && kb.k0 <= u.pos0 + u.mq - 1 - shape_.window;
    scores_[i % 2] = s_ps;
    if (!future && !past) return;
    const View mask = w.mask.rows(0, u.mq).cols(0, kb.nk);
    core_.memset(mask, 0.0f, Engine::kGpSimd);
    if (future) {  // keep key k0 + j for row p where pos0 + p - (k0 + j) >= 0
      core_.affine_select(mask, mask, static_cast<float>(u.pos0 - kb.k0), 1.0f, {-1.0f},
                          AluOp::kIsGreaterEqual, kMaskFill);
    }
    if (past) {  // keep where (k0 + j) - (pos0 + p) + window - 1 >= 0
      core_.affine_select(mask, mask, static_cast<float>(kb.k0 - u.pos0 + shape_.window - 1),
                          -1.0f, {1.0f}, AluOp::kIsGreaterEqual, kMaskFill);
    }
    const View s = w.s.rows(0, u.mq).cols(0, kb.nk);
    core_.tensor_tensor(s, s_ps, AluOp::kAdd, mask);
    scores_[i % 2] = s;
  }

  // Step 4: the online softmax's statistics and P for step i.
  void softmax(size_t i) {
    const Step& st = steps_[i];
    const Unit& u = units_[st.unit];
    const KeyBlock& kb = blocks_[st.block];
    const Slot& w = slots_[i % 2];
    const State& state = state_[st.unit % 2];
    auto col = [&](const View& tile, int64_t c) { return tile.rows(0, u.mq).cols(c, 1); };
    const View block_max = col(w.cols, 0), corr = col(w.cols, 1), sum = col(w.cols, 2);
    const View l = col(state.l, st.h);
    const View nb = col(state.nb[st.kb % 2], st.h);
    const View src = scores_[i % 2];
    core_.tensor_reduce(block_max, AluOp::kMax, src);
    const float scale = shape_.scale;
    if (!has_state(st)) {
      core_.tensor_scalar(nb, block_max, AluOp::kMultiply, -scale);
      core_.activation_reduce(w.p.rows(0, u.mq).cols(0, kb.nk), Activation::kExp, src, l, scale,
                              nb);
      return;
    }
    const View nb_old = st.kb > 0 ? col(state.nb[(st.kb - 1) % 2], st.h) : col(nsinks_, st.h);
    core_.tensor_scalar(nb, block_max, AluOp::kMultiply, -scale, AluOp::kMin, nb_old);
    core_.activation_reduce(w.p.rows(0, u.mq).cols(0, kb.nk), Activation::kExp, src, sum, scale,
                            nb);
    core_.activation(corr, Activation::kExp, nb_old, -1.0f, nb);
    if (st.kb == 0) {
      core_.tensor_scalar(l, corr, AluOp::kAdd, sum);  // the sink's l = 1, rescaled
    } else {
      core_.tensor_scalar(l, l, AluOp::kMultiply, corr, AluOp::kAdd, sum);
    }
  }

  // Step 5: O = O * corr + P V for step i; after the unit's last block, out = O / l.
  void values(size_t i) {
    const Step& st = steps_[i];
    const Unit& u = units_[st.unit];
    const KeyBlock& kb = blocks_[st.block];
    const Slot& w = slots_[i % 2];
    const State& state = state_[st.unit % 2];
    const Rows& r = rows_[st.block % 2];
    const int64_t mq = u.mq, nc = kb.chunks(), full = kb.nk / kPartitions;
    const View p = w.p.rows(0, mq);
    for (int64_t c = 0; c < nc; ++c) {
      core_.transpose(w.pt_ps.rows(0, kb.chunk_rows(c)).cols(c * mq, mq),
                      p.cols(c * kPartitions, kb.chunk_rows(c)));
    }
    if (full > 0) core_.tensor_copy(w.pt.cols(0, full * mq), w.pt_ps.cols(0, full * mq));
    if (full < nc) {
      const int64_t ck = kb.chunk_rows(full);
      core_.tensor_copy(w.pt.rows(0, ck).cols(full * mq, mq),
                        w.pt_ps.rows(0, ck).cols(full * mq, mq));
    }
    const View o_ps = w.o_ps.rows(0, mq);
    const int64_t kvh = st.h / group();
    for (int64_t c = 0; c < nc; ++c) {
      const int64_t ck = kb.chunk_rows(c);
      core_.matmul(o_ps, w.pt.rows(0, ck).cols(c * mq, mq),
                   r.v.rows(0, ck).cols(c * W_ + kvh * hd_, hd_), c == 0, c + 1 == nc);
    }
    const View o = state.o.rows(0, mq).cols(st.h * hd_, hd_);
    if (st.kb == 0) {
      core_.tensor_copy(o, o_ps, Engine::kScalar);
    } else {
      core_.tensor_scalar(o, o, AluOp::kMultiply, w.cols.rows(0, mq).cols(1, 1), AluOp::kBypass,
                          0.0f, Engine::kGpSimd);
      core_.tensor_tensor(o, o, AluOp::kAdd, o_ps);
    }
    if (!last_block(st)) return;
    core_.tensor_scalar(state.out.rows(0, mq).cols(st.h * hd_, hd_), o, AluOp::kDivide,
                        state.l.rows(0, mq).cols(st.h, 1));
    if (st.h + 1 == H_) store_output(u, state);
  }

  void store_output(const Unit& u, const State& state) {
    const int64_t row = sequences_[u.sequence].first_row + u.row0;
    split_copy(core_, out_.rows(row, u.mq), state.out.rows(0, u.mq), queues_.stores(),
               [&] { return queues_.store(); });
  }

  NeuronCore& core_;
  TilePool pool_;
  View out_, q_, k_cache_, v_cache_, tables_, sinks_;
  std::span<const PagedSequence> sequences_;
  PagedAttentionShape shape_;
  DType compute_;
  int64_t H_, KV_, hd_, bs_, W_;
  DmaQueues queues_;
  std::vector<Unit> units_;
  std::vector<KeyBlock> blocks_;
  std::vector<Step> steps_;
  View offsets_, nsinks_, kt_ps_, slots_ps_, kt_current_;
  View kt_[2], qt_[2], scores_[2];
  Rows rows_[2];
  State state_[2];
  Slot slots_[2];
  int64_t kt_turn_ = 0;
};

}  // namespace

int64_t paged_attention_sbuf_bytes(const PagedAttentionShape& shape, DType compute) {
  const int64_t e = dtype_bytes(compute), H = shape.heads, hd = shape.head_dim;
  const int64_t W = int64_t{shape.kv_heads} * hd, bs = shape.block_size;
  const int64_t table = max_table_blocks(bs);
  const int64_t per_buffer = table * 4 + table * bs * 4 + kChunks * 4 + 2 * kChunks * W * e +
                             kKeyBlock * e + H * kPartitions * e + H * hd * 4 + 3 * H * 4 +
                             H * hd * 4 + kKeyBlock * (4 + 4 + e) + kChunks * kPartitions * e +
                             3 * 4;
  return table * bs * 4 + H * 4 + 2 * per_buffer + kSlack;
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
