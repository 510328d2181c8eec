// attention_backward (attention_kernel.h): per query tile of a unit's heads, stage 1 recomputes
// P, multiplies it with dP and forms dS; stage 2 turns P and dS into the dV, dK and dQ products,
// accumulated in SBUF over the unit and added to the gradients in HBM once.
#include <algorithm>
#include <string>
#include <vector>

#include "backend/neuron/attention_kernel.h"
#include "backend/neuron/attention_plan.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

using namespace attention_detail;

class BackwardProgram {
 public:
  BackwardProgram(NeuronCore& core, const View& dqkv, const View& dsinks, const View& dout,
                  const View& qkv, const View& lse, const View& sinks,
                  const AttentionShape& shape, DType compute)
      : core_(core), pool_(core), dqkv_(dqkv), dsinks_(dsinks), lse_(lse), sinks_(sinks),
        s_(shape), compute_(compute), hd_(shape.head_dim), T_(shape.seq),
        chunks_(ceil_div(T_, kPartitions)), queues_(core.config().dma_queues),
        q_rows_{qkv, shape.width(), 0, T_, hd_},
        k_rows_{qkv, shape.width(), int64_t{shape.heads} * hd_, T_, hd_},
        v_rows_{qkv, shape.width(), int64_t{shape.heads + shape.kv_heads} * hd_, T_, hd_},
        dout_rows_{dout, int64_t{shape.heads} * hd_, 0, T_, hd_},
        dq_rows_{dqkv, shape.width(), 0, T_, hd_},
        dk_rows_{dqkv, shape.width(), int64_t{shape.heads} * hd_, T_, hd_},
        sink_gradient_(present(sinks) && present(dsinks)) {}

  void run() {
    allocate();
    load(0);
    prepare(0);
    for (size_t ui = 0; ui < cursor_.units.size(); ++ui) {
      if (ui + 1 < cursor_.units.size()) load(ui + 1);
      for (int64_t qt = 0; qt < chunks_; ++qt) query_tile(ui, qt);
      if (sink_gradient_) sink_gradient(ui);
      store(ui);
      // Behind this unit's GpSimd work, when the next unit's loads have long landed: issued with
      // the loads, it would hold GpSimd's in-order queue until they arrive.
      if (ui + 1 < cursor_.units.size()) prepare(ui + 1);
    }
    if (sink_gradient_) core_.dma_copy(dsinks_, dsinks_acc_, queues_());
  }

 private:
  // A unit's query-head tiles: Q^T and dO^T [hd, heads, T]; natural Q and dO [128, chunks,
  // heads * hd]; the fp32 dQ accumulator (starting from dqkv) alike; fp32 columns [128, chunks,
  // heads] of -lse, D = rowsum(P dP) and (with the sink gradient) exp(sink - lse) D.
  struct QueryTiles {
    View qt, dot, q, dout, dq, nlse, d, psink;
  };
  // A kv set's tiles: K^T and V^T [hd, kv heads, T] (V^T scaled by `scale`), natural K [128,
  // chunks, kv heads * hd] and the fp32 dK | dV accumulators [128, chunks, 2, kv heads * hd].
  struct KvTiles {
    View kt, vt, k, dkv;
  };
  // Stage 1's full rows for one head's query tile: P, P * dP and P * D (fp32), dS (scaled by
  // `scale`); PSUM for one key block's scores and dP.
  struct Slot {
    View p, pdp, pd, ds;
    View s_ps, dp_ps;
  };
  // Stage 2's PSUM: dV and dK blocks [128, kv_per_bank x hd], dS^T chunks [128, st_per_bank x
  // 128] (and their SBUF copy), dQ [128, hd].
  struct GradSet {
    View dv_ps, dk_ps, dst_ps, dq_ps, dst;
  };
  struct Tile {
    int64_t qt = 0, q0 = 0, mq = 0;
    KeySpan keys;
  };

  static int64_t work_bytes(int64_t t, int64_t e) { return t * (2 * e + 8) + 64; }
  HeadBytes head_bytes(int64_t t) const;
  void allocate();
  void allocate_slots(int64_t free);
  void load(size_t ui);
  void prepare(size_t ui);
  void store(size_t ui);
  void query_tile(size_t ui, int64_t qt);
  void probabilities(int64_t h);
  void gradients(int64_t h);
  void sink_gradient(size_t ui);

  const QueryTiles& queries() const { return q_tiles_[cursor_.query_buffer()]; }
  const KvTiles& kv() const { return kv_tiles_[cursor_.kv_buffer()]; }
  // Query tile rows of a [128, chunks, ...] tile's column `c` of dimension `dim` (1 or 2).
  View tile_rows(const View& t, int dim, int64_t c, int64_t n) const {
    return t.rows(0, tile_.mq).slice(0, tile_.qt, 1).slice(dim, c, n);
  }

  NeuronCore& core_;
  TilePool pool_;
  View dqkv_, dsinks_, lse_, sinks_;
  AttentionShape s_;
  DType compute_;
  int64_t hd_, T_, chunks_;
  QueueRing queues_;
  HeadRows q_rows_, k_rows_, v_rows_, dout_rows_, dq_rows_, dk_rows_;
  bool sink_gradient_;
  int64_t kv_per_bank_ = 0, st_per_bank_ = 0;
  View sinks_tile_, ones_, dsinks_acc_, dsink_ps_;
  UnitCursor cursor_;
  QueryTiles q_tiles_[2];
  KvTiles kv_tiles_[2];
  std::vector<Slot> slots_;
  std::vector<GradSet> grad_sets_;
  Tile tile_;
};

// SBUF bytes per partition of a unit's tiles for sequences of t positions.
HeadBytes BackwardProgram::head_bytes(int64_t t) const {
  const int64_t e = dtype_bytes(compute_), c = ceil_div(t, kPartitions);
  const int64_t columns = (sink_gradient_ ? 3 : 2) * c * 4;
  return {2 * t * e + 2 * c * hd_ * e + c * hd_ * 4 + columns,
          2 * t * e + c * hd_ * e + 2 * c * hd_ * 4};
}

void BackwardProgram::allocate() {
  const int64_t e = dtype_bytes(compute_);
  const int64_t H = s_.heads;
  // Key chunks per PSUM evacuation: dV/dK blocks [128, hd] fp32 and dS^T blocks [128, 128] in
  // one bank each.
  kv_per_bank_ = std::min(chunks_, kPsumBankFloats / hd_);
  st_per_bank_ = std::min(chunks_, core_.config().psum_bank_bytes / (kPartitions * e));
  if (sink_gradient_) {
    // The sinks on every partition; the partition sums of exp(sink - lse) D through TensorE
    // with a column of -1 / scale (D comes out scaled by `scale`), into an fp32 row of H.
    sinks_tile_ = pool_.sbuf(kPartitions, {H}, DType::kF32, "attn_bwd.sinks");
    core_.dma_copy(sinks_tile_, broadcast_rows(sinks_, kPartitions), queues_());
    ones_ = pool_.sbuf(kPartitions, {1}, DType::kF32, "attn_bwd.ones");
    core_.memset(ones_, -1.0f / s_.scale, Engine::kGpSimd);
    dsinks_acc_ = pool_.sbuf(1, {H}, DType::kF32, "attn_bwd.dsinks");
    core_.dma_copy(dsinks_acc_, dsinks_, queues_());
    dsink_ps_ = pool_.psum(1, {std::min<int64_t>(H, kPsumBankFloats)}, DType::kF32,
                           "attn_bwd.ps.dsinks");
  }

  // SBUF: per query tile (double buffered) the full rows of P, P*dP, P*D (fp32) and dS; per unit
  // (double buffered) the query heads' and kv heads' tiles.
  const int64_t free = core_.sbuf_largest_free() - kSlack - 2 * st_per_bank_ * kPartitions * e;
  cursor_ = {plan_units(s_, head_bytes(T_), free - 2 * work_bytes(T_, e)), 0, s_.group()};
  if (cursor_.units.empty()) {
    auto need = [&](int64_t t) {
      const HeadBytes b = head_bytes(t);
      return 2 * work_bytes(t, e) + 2 * (b.per_q + b.per_kv);
    };
    int64_t fits = 0;
    for (int64_t t = kPartitions; need(t) <= free; t += kPartitions) fits = t;
    fail("attention_backward: T = {} is too long: a query tile's full rows of P and dP and one "
         "query head's and one kv head's inputs need {} bytes per SBUF partition (double "
         "buffered) but {} are free; with hd = {} and {} tiles T up to about {} fits",
         T_, need(T_), free, hd_, nki_dtype_name(compute_), fits);
  }
  const int64_t Gq = max_query_heads(cursor_.units), Gk = max_kv_heads(cursor_.units);
  for (int i = 0; i < 2; ++i) {
    const std::string n = "attn_bwd.in" + std::to_string(i);
    q_tiles_[i] = {pool_.sbuf(hd_, {Gq, T_}, compute_, n + ".qT"),
                   pool_.sbuf(hd_, {Gq, T_}, compute_, n + ".doT"),
                   pool_.sbuf(kPartitions, {chunks_, Gq * hd_}, compute_, n + ".q"),
                   pool_.sbuf(kPartitions, {chunks_, Gq * hd_}, compute_, n + ".do"),
                   pool_.sbuf(kPartitions, {chunks_, Gq * hd_}, DType::kF32, n + ".dq"),
                   pool_.sbuf(kPartitions, {chunks_, Gq}, DType::kF32, n + ".nlse"),
                   pool_.sbuf(kPartitions, {chunks_, Gq}, DType::kF32, n + ".D"),
                   sink_gradient_
                       ? pool_.sbuf(kPartitions, {chunks_, Gq}, DType::kF32, n + ".psink")
                       : View()};
    kv_tiles_[i] = {pool_.sbuf(hd_, {Gk, T_}, compute_, n + ".kT"),
                    pool_.sbuf(hd_, {Gk, T_}, compute_, n + ".vT"),
                    pool_.sbuf(kPartitions, {chunks_, Gk * hd_}, compute_, n + ".k"),
                    pool_.sbuf(kPartitions, {chunks_, 2, Gk * hd_}, DType::kF32, n + ".dkv")};
  }
  const HeadBytes b = head_bytes(T_);
  allocate_slots(free - 2 * (Gq * b.per_q + Gk * b.per_kv));
}

// Query tiles go through a software pipeline like the forward pass's: stage 1 of head i is
// issued before stage 2 of head i - R + 1. Slots hold stage 1's full rows; stage 2 alternates
// between two sets of PSUM tiles where they fit.
void BackwardProgram::allocate_slots(int64_t sbuf_left) {
  const int64_t e = dtype_bytes(compute_);
  const int64_t max_nk = std::min<int64_t>(kKeyBlock, T_);
  const int64_t psum_bytes =
      core_.config().psum_partition_bytes -
      (sink_gradient_ ? psum_footprint(dsink_ps_.free_size() * 4) : 0);
  const int64_t set_psum = 2 * psum_footprint(kv_per_bank_ * hd_ * 4) +
                           psum_footprint(st_per_bank_ * kPartitions * e) +
                           psum_footprint(hd_ * 4);
  const int64_t slot_psum = 2 * psum_footprint(max_nk * 4);
  const int64_t sets = psum_bytes - 2 * set_psum >= 2 * slot_psum ? 2 : 1;
  const int64_t R = std::clamp<int64_t>(
      std::min((psum_bytes - sets * set_psum) / slot_psum, sbuf_left / work_bytes(T_, e)), 2, 4);
  for (int64_t i = 0; i < R; ++i) {
    const std::string n = "attn_bwd." + std::to_string(i);
    slots_.push_back({pool_.sbuf(kPartitions, {T_}, compute_, n + ".p"),
                      pool_.sbuf(kPartitions, {T_}, DType::kF32, n + ".pdp"),
                      pool_.sbuf(kPartitions, {T_}, DType::kF32, n + ".pd"),
                      pool_.sbuf(kPartitions, {T_}, compute_, n + ".ds"),
                      pool_.psum(kPartitions, {max_nk}, DType::kF32, n + ".ps.s"),
                      pool_.psum(kPartitions, {max_nk}, DType::kF32, n + ".ps.dp")});
  }
  for (int64_t i = 0; i < sets; ++i) {
    const std::string n = "attn_bwd.grad" + std::to_string(i);
    grad_sets_.push_back(
        {pool_.psum(kPartitions, {kv_per_bank_ * hd_}, DType::kF32, n + ".ps.dv"),
         pool_.psum(kPartitions, {kv_per_bank_ * hd_}, DType::kF32, n + ".ps.dk"),
         pool_.psum(kPartitions, {st_per_bank_ * kPartitions}, compute_, n + ".ps.dsT"),
         pool_.psum(kPartitions, {hd_}, DType::kF32, n + ".ps.dq"),
         pool_.sbuf(kPartitions, {st_per_bank_ * kPartitions}, compute_, n + ".dsT")});
  }
}

// Unit ui's query-head tiles and, for the first unit of a kv set, its kv heads' tiles; the
// gradient accumulators start from dqkv (the op accumulates).
void BackwardProgram::load(size_t ui) {
  const HeadUnit& u = cursor_.units[ui];
  const QueryTiles& q = q_tiles_[ui % 2];
  const KvTiles& kv = kv_tiles_[u.kv_set % 2];
  const bool kv_load = u.first_of_set;
  const int64_t qw = u.hn * hd_, kvw = u.kvn * hd_;
  load_transposed(core_, q.qt, q_rows_, u.b, u.h0, u.hn, queues_);
  if (kv_load) load_transposed(core_, kv.kt, k_rows_, u.b, u.kv0, u.kvn, queues_);
  load_transposed(core_, q.dot, dout_rows_, u.b, u.h0, u.hn, queues_);
  if (kv_load) load_transposed(core_, kv.vt, v_rows_, u.b, u.kv0, u.kvn, queues_);
  move_rows(core_, q.q.slice(1, 0, qw), q_rows_.hbm, q_rows_.offset(u.b, u.h0), q_rows_.width,
            {Dim{qw, 1}}, T_, false, queues_);
  if (kv_load) {
    move_rows(core_, kv.k.slice(1, 0, kvw), k_rows_.hbm, k_rows_.offset(u.b, u.kv0),
              k_rows_.width, {Dim{kvw, 1}}, T_, false, queues_);
  }
  move_rows(core_, q.dout.slice(1, 0, qw), dout_rows_.hbm, dout_rows_.offset(u.b, u.h0),
            dout_rows_.width, {Dim{qw, 1}}, T_, false, queues_);
  move_rows(core_, q.nlse.slice(1, 0, u.hn), lse_, (u.b * s_.heads + u.h0) * T_, 1,
            {Dim{u.hn, T_}}, T_, false, queues_);
  move_rows(core_, q.dq.slice(1, 0, qw), dqkv_, dq_rows_.offset(u.b, u.h0), dq_rows_.width,
            {Dim{qw, 1}}, T_, false, queues_);
  if (kv_load) {
    move_rows(core_, kv.dkv.slice(2, 0, kvw), dqkv_, dk_rows_.offset(u.b, u.kv0),
              dk_rows_.width, {Dim{2, int64_t{s_.kv_heads} * hd_}, Dim{kvw, 1}}, T_, false,
              queues_);
  }
}

// Unit ui's loaded tiles made ready: V^T scaled (for the first unit of a kv set), -lse.
void BackwardProgram::prepare(size_t ui) {
  const HeadUnit& u = cursor_.units[ui];
  const QueryTiles& q = q_tiles_[ui % 2];
  if (u.first_of_set) {
    // dP is only ever used scaled (dS = scale P (dP - D)): fold the scale into V^T once.
    const View vt = kv_tiles_[u.kv_set % 2].vt.slice(0, 0, u.kvn);
    core_.tensor_scalar(vt, vt, AluOp::kMultiply, s_.scale, AluOp::kBypass, 0.0f,
                        Engine::kGpSimd);
  }
  for_valid_rows(T_, [&](int64_t rows, int64_t c0, int64_t n) {
    const View nlse = q.nlse.rows(0, rows).slice(0, c0, n).slice(1, 0, u.hn);
    core_.tensor_scalar(nlse, nlse, AluOp::kMultiply, -1.0f, AluOp::kBypass, 0.0f,
                        Engine::kGpSimd);
  });
}

// dQ of unit ui, and dK, dV of its kv heads after their set's last unit, back to dqkv.
void BackwardProgram::store(size_t ui) {
  const HeadUnit& u = cursor_.units[ui];
  const int64_t qw = u.hn * hd_, kvw = u.kvn * hd_;
  move_rows(core_, q_tiles_[ui % 2].dq.slice(1, 0, qw), dqkv_, dq_rows_.offset(u.b, u.h0),
            dq_rows_.width, {Dim{qw, 1}}, T_, true, queues_);
  if (!u.last_of_set) return;
  move_rows(core_, kv_tiles_[u.kv_set % 2].dkv.slice(2, 0, kvw), dqkv_,
            dk_rows_.offset(u.b, u.kv0), dk_rows_.width,
            {Dim{2, int64_t{s_.kv_heads} * hd_}, Dim{kvw, 1}}, T_, true, queues_);
}

void BackwardProgram::query_tile(size_t ui, int64_t qt) {
  cursor_.current = ui;
  const int64_t q0 = qt * kPartitions, mq = std::min(kPartitions, T_ - q0);
  tile_ = {qt, q0, mq, key_span(s_, q0, mq)};
  const int64_t skew = static_cast<int64_t>(slots_.size()) - 1;
  const int64_t heads = cursor_.units[ui].hn;
  for (int64_t i = 0; i < heads + skew; ++i) {
    if (i >= skew) gradients(i - skew);
    if (i < heads) probabilities(i);
  }
}

// Stage 1 for head h: P = exp(scale S - lse) (zeroed after the diagonal and before the window by
// affine_select), P * dP' per key block (dP' = dO (scale V)^T); D = rowsum(P dP');
// dS' = P dP' - P D, which is scale * P (dP - D).
void BackwardProgram::probabilities(int64_t h) {
  const Slot& w = slots_[h % slots_.size()];
  const int64_t q0 = tile_.q0, mq = tile_.mq, kvh = cursor_.kv_of(h);
  const KeySpan& keys = tile_.keys;
  const View p = w.p.rows(0, mq);
  const View pdp = w.pdp.rows(0, mq);
  const View nlse = tile_rows(queries().nlse, 1, h, 1);
  for (int64_t kb = 0; kb < keys.blocks(); ++kb) {
    const int64_t k0 = keys.block_start(kb), nk = keys.block_keys(kb);
    const View s = w.s_ps.rows(0, mq).cols(0, nk);
    const View dp = w.dp_ps.rows(0, mq).cols(0, nk);
    core_.matmul(s, head_cols(queries().qt, h, q0, mq), head_cols(kv().kt, kvh, k0, nk), true,
                 true);
    core_.matmul(dp, head_cols(queries().dot, h, q0, mq), head_cols(kv().vt, kvh, k0, nk), true,
                 true);
    const View pb = p.cols(k0, nk);
    core_.activation(pb, Activation::kExp, s, s_.scale, nlse);
    if (crosses_diagonal(q0, k0, nk)) {  // keep key k0 + j <= query q0 + p
      core_.affine_select(pb, pb, static_cast<float>(q0 - k0), 1.0f, {-1.0f},
                          AluOp::kIsGreaterEqual, 0.0f);
    }
    if (crosses_window(s_, q0, mq, k0)) {  // keep key k0 + j > query q0 + p - window
      core_.affine_select(pb, pb, static_cast<float>(k0 - q0 + s_.window - 1), -1.0f, {1.0f},
                          AluOp::kIsGreaterEqual, 0.0f);
    }
    core_.tensor_tensor(pdp.cols(k0, nk), pb, AluOp::kMultiply, dp);
  }
  const int64_t first = keys.first, n = keys.end - keys.first;
  const View d = tile_rows(queries().d, 1, h, 1);
  core_.tensor_reduce(d, AluOp::kAdd, pdp.cols(first, n));
  const View pd = w.pd.rows(0, mq).cols(first, n);
  core_.activation(pd, Activation::kIdentity, p.cols(first, n), d);
  core_.tensor_tensor(w.ds.rows(0, mq).cols(first, n), pdp.cols(first, n), AluOp::kSubtract, pd,
                      Engine::kGpSimd);
}

// Stage 2 for head h, per 128-key chunk: dV = P^T dO, dK = dS'^T Q (into PSUM, added to the
// kv head's accumulators a bank at a time), dQ = dS' K accumulated over all chunks in one PSUM
// group.
void BackwardProgram::gradients(int64_t h) {
  const Slot& w = slots_[h % slots_.size()];
  const GradSet& gs = grad_sets_[h % grad_sets_.size()];
  const int64_t mq = tile_.mq, kvh = cursor_.kv_of(h), kend = tile_.keys.end;
  const int64_t c_first = tile_.keys.first / kPartitions, kchunks = ceil_div(kend, kPartitions);
  const View p = w.p.rows(0, mq);
  const View ds = w.ds.rows(0, mq);
  const View dq = gs.dq_ps.rows(0, mq);
  const View q_nat = tile_rows(queries().q, 1, h * hd_, hd_);
  const View do_nat = tile_rows(queries().dout, 1, h * hd_, hd_);
  // Accumulators of the kv head: which 0 is dK, 1 dV.
  auto acc = [&](int64_t which, int64_t first, int64_t count, int64_t rows) {
    return kv().dkv.rows(0, rows).slice(0, first, count).slice(1, which, 1).slice(2, kvh * hd_,
                                                                                 hd_);
  };
  const int64_t per_batch = std::min(kv_per_bank_, st_per_bank_);
  for (int64_t c0 = c_first; c0 < kchunks; c0 += per_batch) {
    const int64_t n = std::min(per_batch, kchunks - c0);
    for (int64_t c = c0; c < c0 + n; ++c) {
      const int64_t ck = std::min(kPartitions, kend - c * kPartitions);
      const int64_t j = c - c0;
      core_.matmul(gs.dv_ps.rows(0, ck).cols(j * hd_, hd_), p.cols(c * kPartitions, ck), do_nat,
                   true, true);
      core_.matmul(gs.dk_ps.rows(0, ck).cols(j * hd_, hd_), ds.cols(c * kPartitions, ck), q_nat,
                   true, true);
      core_.transpose(gs.dst_ps.rows(0, ck).cols(j * mq, mq), ds.cols(c * kPartitions, ck));
    }
    // Accumulate: whole chunks in one instruction each, a partial last chunk on its own.
    const int64_t whole = std::min(n, (kend - c0 * kPartitions) / kPartitions);
    if (whole > 0) {
      core_.tensor_copy(gs.dst.cols(0, whole * mq), gs.dst_ps.cols(0, whole * mq),
                        Engine::kScalar);
      for (int64_t which : {1, 0}) {
        const View a = acc(which, c0, whole, kPartitions);
        const View ps = (which == 1 ? gs.dv_ps : gs.dk_ps).cols(0, whole * hd_);
        core_.tensor_tensor(a, a, AluOp::kAdd, ps);
      }
    }
    if (whole < n) {
      const int64_t ck = kend - (c0 + whole) * kPartitions;
      core_.tensor_copy(gs.dst.rows(0, ck).cols(whole * mq, mq),
                        gs.dst_ps.rows(0, ck).cols(whole * mq, mq), Engine::kScalar);
      for (int64_t which : {1, 0}) {
        const View a = acc(which, c0 + whole, 1, ck);
        const View ps = (which == 1 ? gs.dv_ps : gs.dk_ps).rows(0, ck).cols(whole * hd_, hd_);
        core_.tensor_tensor(a, a, AluOp::kAdd, ps);
      }
    }
    for (int64_t c = c0; c < c0 + n; ++c) {
      const int64_t ck = std::min(kPartitions, kend - c * kPartitions);
      const View k_nat = kv().k.rows(0, ck).slice(0, c, 1).slice(1, kvh * hd_, hd_);
      core_.matmul(dq, gs.dst.rows(0, ck).cols((c - c0) * mq, mq), k_nat, c == c_first,
                   c + 1 == kchunks);
    }
  }
  const View acc_dq = tile_rows(queries().dq, 1, h * hd_, hd_);
  core_.tensor_tensor(acc_dq, acc_dq, AluOp::kAdd, dq);
}

// dsinks[h] += -1/scale * sum over the unit's rows of exp(sink_h - lse) D', D' = scale * D: the
// per-row terms on VectorE, ScalarE and GpSimd, their sum over rows by matmuls with the column
// of -1 / scale, accumulated over the position chunks in PSUM.
void BackwardProgram::sink_gradient(size_t ui) {
  const HeadUnit& u = cursor_.units[ui];
  const QueryTiles& q = q_tiles_[ui % 2];
  for_valid_rows(T_, [&](int64_t rows, int64_t c0, int64_t n) {
    auto part = [&](const View& t) { return t.rows(0, rows).slice(0, c0, n).slice(1, 0, u.hn); };
    const View terms = part(q.psink);
    const View sinks = sinks_tile_.rows(0, rows).cols(u.h0, u.hn).split(0, u.hn).broadcast(0, n);
    core_.tensor_tensor(terms, part(q.nlse), AluOp::kAdd, sinks, Engine::kGpSimd);
    core_.activation(terms, Activation::kExp, terms);
    core_.tensor_tensor(terms, terms, AluOp::kMultiply, part(q.d));
  });
  const int64_t width = dsink_ps_.free_size();
  for (int64_t j0 = 0; j0 < u.hn; j0 += width) {
    const int64_t jn = std::min(width, u.hn - j0);
    const View sum = dsink_ps_.cols(0, jn);
    for (int64_t c = 0; c < chunks_; ++c) {
      const int64_t rows = std::min(kPartitions, T_ - c * kPartitions);
      core_.matmul(sum, ones_.rows(0, rows), q.psink.rows(0, rows).slice(0, c, 1).slice(1, j0, jn),
                   c == 0, c + 1 == chunks_);
    }
    const View acc = dsinks_acc_.cols(u.h0 + j0, jn);
    core_.tensor_tensor(acc, acc, AluOp::kAdd, sum);
  }
}

}  // namespace

void attention_backward(NeuronCore& core, const View& dqkv, const View& dsinks, const View& dout,
                        const View& qkv, const View& lse, const View& sinks,
                        const AttentionShape& shape, DType compute) {
  const char* name = "attention_backward";
  check_shape(name, shape, compute);
  const int64_t N = int64_t{shape.batch} * shape.seq;
  require_matrix(name, "dqkv", dqkv, N, shape.width());
  require_matrix(name, "dout", dout, N, int64_t{shape.heads} * shape.head_dim);
  require_matrix(name, "qkv", qkv, N, shape.width());
  require_lse(name, lse, N * shape.heads);
  require_optional_row(name, "sinks", sinks, shape.heads);
  require_optional_row(name, "dsinks", dsinks, shape.heads);
  KernelScope scope(core, name);
  BackwardProgram(core, dqkv, dsinks, dout, qkv, lse, sinks, shape, compute).run();
}

void attention_backward(NeuronCore& core, const View& dqkv, const View& dout, const View& qkv,
                        const View& lse, int B, int T, int C, int NH, DType compute) {
  check_sizes("attention_backward", B, T, C, NH, compute);
  attention_backward(core, dqkv, View(), dout, qkv, lse, View(), gpt2_shape(B, T, C, NH),
                     compute);
}

}  // namespace switchyard::backend::neuron
