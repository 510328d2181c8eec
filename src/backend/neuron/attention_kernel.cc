#include "backend/neuron/attention_kernel.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/neuron/attention_plan.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace attention_detail {

void check_sizes(const char* kernel, int B, int T, int C, int NH, DType compute) {
  require(B >= 1 && T >= 1 && C >= 1 && NH >= 1, "{}: B = {}, T = {}, C = {}, NH = {} must all be >= 1",
          kernel, B, T, C, NH);
  require(C % NH == 0, "{}: C = {} is not divisible by NH = {}", kernel, C, NH);
  require(C / NH <= kPartitions, "{}: head size C / NH = {} exceeds {} (the PE array's rows)",
          kernel, C / NH, kPartitions);
  require(compute == DType::kBF16 || compute == DType::kF32,
          "{}: compute dtype must be bfloat16 or float32, got {}", kernel, nki_dtype_name(compute));
}

void require_matrix(const char* kernel, const char* what, const View& view, int64_t rows,
                    int64_t cols) {
  require(view.memory() == Memory::kHbm && view.free_dims() == 1,
          "{}: {} must be a 2-D HBM tensor [{}, {}], got {}", kernel, what, rows, cols,
          view.describe());
  require(view.partitions() == rows && view.free_size() == cols,
          "{}: {} is [{}, {}], expected [{}, {}]", kernel, what, view.partitions(),
          view.free_size(), rows, cols);
  require(view.free_dim(0).stride == 1 && (rows == 1 || view.partition_stride() == cols),
          "{}: {} {} must be contiguous (rows of {} elements back to back)", kernel, what,
          view.describe(), cols);
  require(view.dtype() == DType::kBF16 || view.dtype() == DType::kF32,
          "{}: {} must be bfloat16 or float32, got {}", kernel, what, nki_dtype_name(view.dtype()));
}

void dma_split(NeuronCore& core, const View& dst, const View& src, int dim, QueueRing& queues) {
  const int64_t n = dim < 0 ? dst.partitions() : dst.free_dim(dim).size;
  const int64_t bytes =
      dst.elements() * std::max(dtype_bytes(dst.dtype()), dtype_bytes(src.dtype()));
  const int64_t per_unit = std::max<int64_t>(1, bytes / n);
  const int64_t per_piece = std::max(ceil_div(kMinDmaBytes, per_unit), ceil_div(n, queues.size()));
  for (int64_t i = 0; i < n; i += per_piece) {
    const int64_t count = std::min(per_piece, n - i);
    if (dim < 0) {
      core.dma_copy(dst.rows(i, count), src.rows(i, count), queues());
    } else {
      core.dma_copy(dst.slice(dim, i, count), src.slice(dim, i, count), queues());
    }
  }
}

}  // namespace attention_detail

namespace {

using namespace attention_detail;

// The mask tile: mask[p, c] = 0 where key column c - kMaskDiagonal is at most row p and, with a
// window, more than p - window; else kMaskFill. For a query tile at q0 and a key block at k0
// (both multiples of 128, 0 <= q0 - k0 <= kMaskDiagonal), the block's mask is the slice starting
// at column kMaskDiagonal - (q0 - k0).
constexpr int64_t kMaskDiagonal = 384;
constexpr int64_t kMaskCols = kMaskDiagonal + kKeyBlock;
// Added to the scores -scale * q.k: masked entries never win the row minimum and exp(nb - fill)
// is exactly 0, with no inf - inf.
constexpr float kMaskFill = 1e30f;

View make_mask(NeuronCore& core, TilePool& pool, int64_t window) {
  const View mask = pool.sbuf(kPartitions, {kMaskCols}, DType::kF32, "attn_fwd.mask");
  core.memset(mask, 0.0f, Engine::kGpSimd);
  core.affine_select(mask, mask, static_cast<float>(kMaskDiagonal), 1.0f, {-1.0f},
                     AluOp::kIsGreaterEqual, kMaskFill);
  if (window > 0) {  // keep c - kMaskDiagonal > p - window
    core.affine_select(mask, mask, static_cast<float>(window - 1 - kMaskDiagonal), -1.0f, {1.0f},
                       AluOp::kIsGreaterEqual, kMaskFill);
  }
  return mask;
}

class ForwardProgram {
 public:
  ForwardProgram(NeuronCore& core, const View& out, const View& lse, const View& qkv,
                 const View& sinks, const AttentionShape& shape, DType compute)
      : core_(core), pool_(core), out_(out), lse_(lse), sinks_(sinks), s_(shape),
        compute_(compute), hd_(shape.head_dim), T_(shape.seq),
        chunks_(ceil_div(T_, kPartitions)), queues_(core.config().dma_queues),
        q_rows_{qkv, shape.width(), 0, T_, hd_},
        k_rows_{qkv, shape.width(), int64_t{shape.heads} * hd_, T_, hd_},
        v_rows_{qkv, shape.width(), int64_t{shape.heads + shape.kv_heads} * hd_, T_, hd_} {}

  void run() {
    allocate();
    load(0);
    for (size_t ui = 0; ui < cursor_.units.size(); ++ui) {
      if (ui + 1 < cursor_.units.size()) load(ui + 1);
      if (ui == 0) scale_queries(0);
      for (int64_t qt = 0; qt < chunks_; ++qt) query_tile(ui, qt);
    }
  }

 private:
  // One step: key block kb (of `blocks`) of query head h (within the unit) for the current
  // query tile.
  struct Step {
    int64_t h, kb, k0, nk, blocks;
  };
  // A step's tiles: masked scores [128, max_nk] fp32, probabilities, P^T chunks, the running
  // output [128, hd] fp32 (only with several key blocks), per-row fp32 columns (0 block min,
  // 1 corr, 2 block sum, 3 1 / l) and PSUM for the scores, P^T and P V.
  struct Slot {
    View s, p, pt, o, cols;
    View s_ps, pt_ps, o_ps;
  };
  // A unit's Q^T [hd, heads, T] (scaled by -scale once loaded).
  struct QueryTiles {
    View qt;
  };
  // A kv set's K^T [hd, kv heads, T] and V [128, chunks, kv heads * hd].
  struct KvTiles {
    View kt, v;
  };
  // The current query tile: rows [q0, q0 + mq) of the current unit; its output staging tile and
  // per-head statistics l and nb [mq, heads].
  struct Tile {
    int64_t q0 = 0, mq = 0;
    View out, l, nb;
  };

  void allocate();
  void load(size_t ui);
  void scale_queries(size_t ui);
  void query_tile(size_t ui, int64_t qt);
  void scores(size_t i);
  void softmax(size_t i);
  void values(size_t i);
  void finish_tile(size_t ui);

  const QueryTiles& queries() const { return q_tiles_[cursor_.query_buffer()]; }
  const KvTiles& kv() const { return kv_tiles_[cursor_.kv_buffer()]; }
  bool masked(const Step& st) const {
    return crosses_diagonal(tile_.q0, st.k0, st.nk) ||
           crosses_window(s_, tile_.q0, tile_.mq, st.k0);
  }
  // Where stage 1 reads step i's scores: PSUM, or SBUF after masking.
  View scores_of(size_t i) const {
    const Step& st = steps_[i];
    const Slot& w = slots_[i % slots_.size()];
    return (masked(st) ? w.s : w.s_ps).rows(0, tile_.mq).cols(0, st.nk);
  }

  NeuronCore& core_;
  TilePool pool_;
  View out_, lse_, sinks_;
  AttentionShape s_;
  DType compute_;
  int64_t hd_, T_, chunks_;
  QueueRing queues_;
  HeadRows q_rows_, k_rows_, v_rows_;
  View mask_, state_, nsinks_;
  std::vector<Slot> slots_;
  UnitCursor cursor_;
  QueryTiles q_tiles_[2];
  KvTiles kv_tiles_[2];
  View stage_[2], stats_l_[2], stats_nb_[2];
  int64_t staged_ = 0;  // query tiles staged (rotates the output staging tiles)
  Tile tile_;
  std::vector<Step> steps_;
};

void ForwardProgram::allocate() {
  const int64_t e = dtype_bytes(compute_), eo = dtype_bytes(out_.dtype());
  mask_ = make_mask(core_, pool_, s_.window);
  // R slots of per-step tiles: steps go through a software pipeline, stage 1 (scores, mask, min,
  // exp) of step i issued before stage 2 (P^T, P V, output) of step i - R + 1, so that each
  // engine's in-order queue has independent work while one step's chain of dependent
  // instructions runs. R is what PSUM holds, at most 8.
  const int64_t max_nk = std::min<int64_t>(kKeyBlock, T_);
  const int64_t max_mq = std::min<int64_t>(kPartitions, T_);
  const int64_t pt_cols = ceil_div(max_nk, kPartitions) * max_mq;
  const int64_t slot_psum =
      psum_footprint(max_nk * 4) + psum_footprint(pt_cols * e) + psum_footprint(hd_ * 4);
  const int64_t R = std::clamp<int64_t>(core_.config().psum_partition_bytes / slot_psum - 1, 3, 8);
  for (int64_t i = 0; i < R; ++i) {
    const std::string n = "attn_fwd." + std::to_string(i);
    slots_.push_back({pool_.sbuf(kPartitions, {max_nk}, DType::kF32, n + ".s"),
                      pool_.sbuf(kPartitions, {max_nk}, compute_, n + ".p"),
                      pool_.sbuf(kPartitions, {pt_cols}, compute_, n + ".pt"),
                      pool_.sbuf(kPartitions, {hd_}, DType::kF32, n + ".o"),
                      pool_.sbuf(kPartitions, {4}, DType::kF32, n + ".cols"),
                      pool_.psum(kPartitions, {max_nk}, DType::kF32, n + ".ps.s"),
                      pool_.psum(kPartitions, {pt_cols}, compute_, n + ".ps.pt"),
                      pool_.psum(kPartitions, {hd_}, DType::kF32, n + ".ps.o")});
  }
  // Running nb and l of the head whose blocks are in stage 1 (cols 0-1 and 2-3, ping-pong).
  state_ = pool_.sbuf(kPartitions, {4}, DType::kF32, "attn_fwd.state");
  if (present(sinks_)) {  // -sinks on every partition: the online softmax's starting nb
    nsinks_ = pool_.sbuf(kPartitions, {int64_t{s_.heads}}, DType::kF32, "attn_fwd.nsinks");
    core_.dma_copy(nsinks_, broadcast_rows(sinks_, kPartitions), queues_());
    core_.tensor_scalar(nsinks_, nsinks_, AluOp::kMultiply, -1.0f, AluOp::kBypass, 0.0f,
                        Engine::kGpSimd);
  }

  // Per query head: Q^T [hd, T] and an output column block [128, hd] with two fp32 statistics
  // columns; per kv head K^T [hd, T] and V [128, chunks, hd]; each double buffered.
  const HeadBytes bytes{T_ * e + 2 * (hd_ * eo + 8), T_ * e + chunks_ * hd_ * e};
  const int64_t free = core_.sbuf_largest_free() - kSlack;
  cursor_ = {plan_units(s_, bytes, free), 0, s_.group()};
  require(!cursor_.units.empty(),
          "attention_forward: T = {} is too long: one query head's Q^T and one kv head's K^T "
          "and V need {} bytes per SBUF partition, double buffered, and {} are free",
          T_, 2 * (bytes.per_q + bytes.per_kv), free);
  const int64_t Gq = max_query_heads(cursor_.units), Gk = max_kv_heads(cursor_.units);
  for (int i = 0; i < 2; ++i) {
    const std::string n = "attn_fwd.in" + std::to_string(i);
    q_tiles_[i].qt = pool_.sbuf(hd_, {Gq, T_}, compute_, n + ".qT");
    kv_tiles_[i] = {pool_.sbuf(hd_, {Gk, T_}, compute_, n + ".kT"),
                    pool_.sbuf(kPartitions, {chunks_, Gk * hd_}, compute_, n + ".v")};
    stage_[i] = pool_.sbuf(kPartitions, {Gq * hd_}, out_.dtype(), n + ".out");
    stats_l_[i] = pool_.sbuf(kPartitions, {Gq}, DType::kF32, n + ".l");
    stats_nb_[i] = pool_.sbuf(kPartitions, {Gq}, DType::kF32, n + ".nb");
  }
}

// Q^T of unit ui's query heads and, for the first unit of a kv set, K^T and V of its kv heads.
void ForwardProgram::load(size_t ui) {
  const HeadUnit& u = cursor_.units[ui];
  load_transposed(core_, q_tiles_[ui % 2].qt, q_rows_, u.b, u.h0, u.hn, queues_);
  if (!u.first_of_set) return;
  const KvTiles& kv = kv_tiles_[u.kv_set % 2];
  load_transposed(core_, kv.kt, k_rows_, u.b, u.kv0, u.kvn, queues_);
  move_rows(core_, kv.v.slice(1, 0, u.kvn * hd_), v_rows_.hbm, v_rows_.offset(u.b, u.kv0),
            v_rows_.width, {Dim{u.kvn * hd_, 1}}, T_, false, queues_);
}

// Scores come out as -scale * q.k: the row minimum is then directly nb = -scale * max, the
// exp's bias, and the mask's fill is +1e30.
void ForwardProgram::scale_queries(size_t ui) {
  const View qt = q_tiles_[ui % 2].qt.slice(0, 0, cursor_.units[ui].hn);
  core_.tensor_scalar(qt, qt, AluOp::kMultiply, -s_.scale, AluOp::kBypass, 0.0f, Engine::kGpSimd);
}

void ForwardProgram::query_tile(size_t ui, int64_t qt) {
  cursor_.current = ui;
  const HeadUnit& u = cursor_.units[ui];
  const int64_t q0 = qt * kPartitions, mq = std::min(kPartitions, T_ - q0);
  tile_ = {q0, mq, stage_[staged_ % 2].rows(0, mq), stats_l_[staged_ % 2].rows(0, mq),
           stats_nb_[staged_ % 2].rows(0, mq)};
  ++staged_;
  const KeySpan keys = key_span(s_, q0, mq);
  const int64_t blocks = keys.blocks();
  steps_.clear();
  for (int64_t h = 0; h < u.hn; ++h) {
    for (int64_t kb = 0; kb < blocks; ++kb)
      steps_.push_back({h, kb, keys.block_start(kb), keys.block_keys(kb), blocks});
  }
  // Stage 1b (softmax) runs one step behind stage 1a (scores), so that VectorE has an
  // independent instruction while the mask's result becomes visible; stage 2 (values) runs
  // R - 2 steps behind stage 1b. Slot i % R is free again once stage 2 of step i - R is issued.
  const size_t skew = slots_.size() - 1;
  for (size_t i = 0; i < steps_.size() + skew; ++i) {
    if (i >= skew) values(i - skew);
    if (i < steps_.size()) scores(i);
    if (i >= 1 && i - 1 < steps_.size()) softmax(i - 1);
  }
  // The next unit's Q^T scaling, on GpSimd ahead of this tile's lse step.
  if (qt + 1 == chunks_ && ui + 1 < cursor_.units.size()) scale_queries(ui + 1);
  finish_tile(ui);
}

// S' = -scale Q K^T into PSUM; blocks some row must not wholly see are masked on the way to SBUF.
void ForwardProgram::scores(size_t i) {
  const Step& st = steps_[i];
  const Slot& w = slots_[i % slots_.size()];
  const int64_t q0 = tile_.q0, mq = tile_.mq;
  const View s_ps = w.s_ps.rows(0, mq).cols(0, st.nk);
  core_.matmul(s_ps, head_cols(queries().qt, st.h, q0, mq),
               head_cols(kv().kt, cursor_.kv_of(st.h), st.k0, st.nk), true, true);
  if (!masked(st)) return;
  const View s = scores_of(i);
  if (q0 - st.k0 <= kMaskDiagonal) {
    core_.tensor_tensor(s, s_ps, AluOp::kAdd,
                        mask_.rows(0, mq).cols(kMaskDiagonal - (q0 - st.k0), st.nk));
  } else {
    // Only a long window's start crosses a block this far back: keep k0 + j > q0 + p - window.
    core_.tensor_copy(s, s_ps);
    core_.affine_select(s, s, static_cast<float>(st.k0 - q0 + s_.window - 1), -1.0f, {1.0f},
                        AluOp::kIsGreaterEqual, kMaskFill);
  }
}

// nb = min(nb, rowmin S'); P = exp(nb - S') with its row sum; when there is a running state (a
// previous block, or the sink), corr = exp(nb_new - nb_old) and l = l * corr + sum (the sink's
// l is 1).
void ForwardProgram::softmax(size_t i) {
  const Step& st = steps_[i];
  const Slot& w = slots_[i % slots_.size()];
  const int64_t mq = tile_.mq;
  const bool last = st.kb + 1 == st.blocks;
  const bool sink = present(nsinks_);
  auto col = [&](int64_t c) { return w.cols.rows(0, mq).cols(c, 1); };
  auto state = [&](int64_t c) { return state_.rows(0, mq).cols(c, 1); };
  const View nb_prev = st.kb > 0 ? state((st.kb - 1) % 2)
                       : sink    ? nsinks_.rows(0, mq).cols(cursor_.unit().h0 + st.h, 1)
                                 : View();
  const View nb_next = last ? tile_.nb.cols(st.h, 1) : state(st.kb % 2);
  const View l_next = last ? tile_.l.cols(st.h, 1) : state(2 + st.kb % 2);
  const View src = scores_of(i);
  if (!present(nb_prev)) {
    core_.tensor_reduce(nb_next, AluOp::kMin, src);
  } else {
    core_.tensor_reduce(col(0), AluOp::kMin, src);
    core_.tensor_tensor(nb_next, col(0), AluOp::kMin, nb_prev);
  }
  core_.activation_reduce(w.p.rows(0, mq).cols(0, st.nk), Activation::kExp, src,
                          present(nb_prev) ? col(2) : l_next, -1.0f, nb_next);
  if (present(nb_prev)) {
    core_.activation(col(1), Activation::kExp, nb_prev, -1.0f, nb_next);
    if (st.kb > 0) {
      core_.tensor_scalar(l_next, state(2 + (st.kb - 1) % 2), AluOp::kMultiply, col(1),
                          AluOp::kAdd, col(2));
    } else {
      core_.tensor_scalar(l_next, col(1), AluOp::kAdd, col(2));
    }
  }
  if (last) core_.reciprocal(col(3), l_next, Engine::kGpSimd);
}

// P^T per 128-key chunk through TensorE, O_block = P V, the running output O = O * corr +
// O_block, and after the last block out = O / l.
void ForwardProgram::values(size_t i) {
  const Step& st = steps_[i];
  const size_t R = slots_.size();
  const Slot& w = slots_[i % R];
  const int64_t mq = tile_.mq;
  auto col = [&](int64_t c) { return w.cols.rows(0, mq).cols(c, 1); };
  const View p = w.p.rows(0, mq);
  const int64_t nc = ceil_div(st.nk, kPartitions);
  const int64_t full = st.nk / kPartitions;
  for (int64_t c = 0; c < nc; ++c) {
    const int64_t ck = std::min(kPartitions, st.nk - c * kPartitions);
    core_.transpose(w.pt_ps.rows(0, ck).cols(c * mq, mq), p.cols(c * kPartitions, ck));
  }
  if (full > 0) {
    core_.tensor_copy(w.pt.cols(0, full * mq), w.pt_ps.cols(0, full * mq), Engine::kScalar);
  }
  if (full < nc) {
    const int64_t ck = st.nk - full * kPartitions;
    core_.tensor_copy(w.pt.rows(0, ck).cols(full * mq, mq),
                      w.pt_ps.rows(0, ck).cols(full * mq, mq), Engine::kScalar);
  }
  const View o = w.o_ps.rows(0, mq);
  const int64_t kv_col = cursor_.kv_of(st.h) * hd_;
  for (int64_t c = 0; c < nc; ++c) {
    const int64_t ck = std::min(kPartitions, st.nk - c * kPartitions);
    const View v = kv().v.rows(0, ck).slice(0, st.k0 / kPartitions + c, 1).slice(1, kv_col, hd_);
    core_.matmul(o, w.pt.rows(0, ck).cols(c * mq, mq), v, c == 0, c + 1 == nc);
  }
  View o_final = o;
  if (st.blocks > 1) {
    const View acc = w.o.rows(0, mq);
    if (st.kb == 0) {
      core_.tensor_copy(acc, o, Engine::kVector);
    } else {
      const View prev = slots_[(i - 1) % R].o.rows(0, mq);  // the previous block's
      core_.tensor_scalar(prev, prev, AluOp::kMultiply, col(1), AluOp::kBypass, 0.0f,
                          Engine::kGpSimd);
      core_.tensor_tensor(acc, prev, AluOp::kAdd, o);
    }
    o_final = acc;
  }
  if (st.kb + 1 == st.blocks) {
    core_.activation(tile_.out.cols(st.h * hd_, hd_), Activation::kIdentity, o_final, col(3));
  }
}

// lse = ln(l) + scale * max = ln(l) - nb for all heads of the tile at once; the tile's outputs
// and lse to HBM.
void ForwardProgram::finish_tile(size_t ui) {
  const HeadUnit& u = cursor_.units[ui];
  const int64_t q0 = tile_.q0, mq = tile_.mq;
  const View lse_tile = tile_.l.cols(0, u.hn);
  core_.activation(lse_tile, Activation::kLog, lse_tile);
  core_.tensor_tensor(lse_tile, lse_tile, AluOp::kSubtract, tile_.nb.cols(0, u.hn),
                      Engine::kGpSimd);
  dma_split(core_, out_.rows(u.b * T_ + q0, mq).cols(u.h0 * hd_, u.hn * hd_),
            tile_.out.cols(0, u.hn * hd_), -1, queues_);
  core_.dma_copy(lse_.pattern((u.b * s_.heads + u.h0) * T_ + q0, Dim{mq, 1}, {Dim{u.hn, T_}}),
                 lse_tile, queues_());
}

}  // namespace

void attention_forward(NeuronCore& core, const View& out, const View& lse, const View& qkv,
                       const View& sinks, const AttentionShape& shape, DType compute) {
  const char* name = "attention_forward";
  check_shape(name, shape, compute);
  const int64_t N = int64_t{shape.batch} * shape.seq;
  require_matrix(name, "qkv", qkv, N, shape.width());
  require_matrix(name, "out", out, N, int64_t{shape.heads} * shape.head_dim);
  require_lse(name, lse, N * shape.heads);
  require_optional_row(name, "sinks", sinks, shape.heads);
  KernelScope scope(core, name);
  ForwardProgram(core, out, lse, qkv, sinks, shape, compute).run();
}

void attention_forward(NeuronCore& core, const View& out, const View& lse, const View& qkv, int B,
                       int T, int C, int NH, DType compute) {
  check_sizes("attention_forward", B, T, C, NH, compute);
  attention_forward(core, out, lse, qkv, View(), gpt2_shape(B, T, C, NH), compute);
}

}  // namespace switchyard::backend::neuron
