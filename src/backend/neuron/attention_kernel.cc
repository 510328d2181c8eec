#include "backend/neuron/attention_kernel.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

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

using attention_detail::check_sizes;
using attention_detail::dma_split;
using attention_detail::kKeyBlock;
using attention_detail::QueueRing;
using attention_detail::require_matrix;

constexpr int64_t kSlack = 64 * 64;  // per-partition alignment slack of the pool's allocations
// The causal mask tile: mask[p, j] = 0 where p - j + kMaskDiagonal >= 0, else kMaskFill. For a
// query tile at q0 and a key block at k0 <= q0 (both multiples of 128, q0 - k0 <= 384), the mask
// of the block is the slice starting at column kMaskDiagonal - (q0 - k0).
constexpr int64_t kMaskDiagonal = 384;
constexpr int64_t kMaskCols = kMaskDiagonal + kKeyBlock;
// Added to the scores -scale * q.k: masked entries never win the row minimum and exp(nb - fill)
// is exactly 0, with no inf - inf.
constexpr float kMaskFill = 1e30f;

View make_causal_mask(NeuronCore& core, TilePool& pool, const std::string& name) {
  const View mask = pool.sbuf(kPartitions, {kMaskCols}, DType::kF32, name);
  core.memset(mask, 0.0f, Engine::kGpSimd);
  core.affine_select(mask, mask, static_cast<float>(kMaskDiagonal), 1.0f, {-1.0f},
                     AluOp::kIsGreaterEqual, kMaskFill);
  return mask;
}

// Columns [start, start + count) of head h of a [P, G, T] tile: a [P, count] operand.
View head_cols(const View& tile, int64_t h, int64_t start, int64_t count) {
  return tile.slice(0, h, 1).slice(1, start, count);
}

void require_lse(const char* kernel, const View& lse, int64_t n) {
  require(lse.memory() == Memory::kHbm && lse.partitions() == 1 && lse.free_dims() == 1 &&
              lse.free_size() == n && lse.free_dim(0).stride == 1,
          "{}: lse must be one contiguous HBM row of B*NH*T = {} values, got {}", kernel, n,
          lse.describe());
  require(lse.dtype() == DType::kF32, "{}: lse must be float32, got {}", kernel,
          nki_dtype_name(lse.dtype()));
}

// Bytes a PSUM tile of `bytes` takes when tiles are packed into 2 KiB banks: the next power of
// two (tiles of at most a bank never straddle one).
int64_t psum_footprint(int64_t bytes) {
  int64_t p = 64;
  while (p < bytes) p *= 2;
  return p;
}

// Heads per group so that two groups' inputs (double buffering) fit in `free` bytes per
// partition, evened out over the groups of a batch row; 0 when not even one head fits.
int64_t heads_per_group(int64_t NH, int64_t per_head, int64_t free) {
  const int64_t g = std::min<int64_t>(NH, free / (2 * per_head));
  if (g < 1) return 0;
  return ceil_div(NH, ceil_div(NH, g));
}

}  // namespace

void attention_forward(NeuronCore& core, const View& out, const View& lse, const View& qkv, int B,
                       int T, int C, int NH, DType compute) {
  const char* name = "attention_forward";
  check_sizes(name, B, T, C, NH, compute);
  require_matrix(name, "qkv", qkv, int64_t{B} * T, 3 * int64_t{C});
  require_matrix(name, "out", out, int64_t{B} * T, C);
  require_lse(name, lse, int64_t{B} * NH * T);

  KernelScope scope(core, name);
  TilePool pool(core);
  const int64_t hs = C / NH;
  const int64_t C3 = 3 * int64_t{C};
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const int64_t e = dtype_bytes(compute);
  const int64_t eo = dtype_bytes(out.dtype());
  const int64_t chunks = ceil_div(T, kPartitions);  // 128-position chunks (and query tiles)
  const int64_t full_chunks = T / kPartitions;
  const int64_t tail = T - full_chunks * kPartitions;

  // The causal mask, and R slots of per-block tiles: key blocks go through a software pipeline,
  // stage 1 (scores, mask, max, exp) of block i issued before stage 2 (P^T, P V, output) of block
  // i - R + 1, so that each engine's in-order queue has independent work while one block's chain
  // of dependent instructions runs. R is what PSUM holds, at most 8.
  const View mask = make_causal_mask(core, pool, "attn_fwd.mask");
  const int64_t max_nk = std::min<int64_t>(kKeyBlock, T);
  const int64_t max_mq = std::min<int64_t>(kPartitions, T);
  const int64_t pt_cols = ceil_div(max_nk, kPartitions) * max_mq;
  const int64_t slot_psum =
      psum_footprint(max_nk * 4) + psum_footprint(pt_cols * e) + psum_footprint(hs * 4);
  const int64_t R = std::clamp<int64_t>(core.config().psum_partition_bytes / slot_psum - 1, 3, 8);
  struct Slot {
    View s;     // masked scores [128, max_nk] fp32
    View p;     // probabilities [128, max_nk]
    View pt;    // P^T chunks [128, pt_cols]
    View o;     // running output [128, hs] fp32 (only with several key blocks)
    View cols;  // per-row fp32 columns: 0 block max, 1 corr, 2 block sum, 3 1 / l
    View s_ps, pt_ps, o_ps;
  };
  std::vector<Slot> slots;
  for (int64_t i = 0; i < R; ++i) {
    const std::string n = "attn_fwd." + std::to_string(i);
    slots.push_back({pool.sbuf(kPartitions, {max_nk}, DType::kF32, n + ".s"),
                     pool.sbuf(kPartitions, {max_nk}, compute, n + ".p"),
                     pool.sbuf(kPartitions, {pt_cols}, compute, n + ".pt"),
                     pool.sbuf(kPartitions, {hs}, DType::kF32, n + ".o"),
                     pool.sbuf(kPartitions, {4}, DType::kF32, n + ".cols"),
                     pool.psum(kPartitions, {max_nk}, DType::kF32, n + ".ps.s"),
                     pool.psum(kPartitions, {pt_cols}, compute, n + ".ps.pt"),
                     pool.psum(kPartitions, {hs}, DType::kF32, n + ".ps.o")});
  }
  // Running nb and l of the head whose blocks are in stage 1 (cols 0-1 and 2-3, ping-pong).
  const View state = pool.sbuf(kPartitions, {4}, DType::kF32, "attn_fwd.state");

  // Per head: Q^T and K^T [hs, T], V [128, chunks, hs], an output column block [128, hs] and
  // two fp32 statistics columns, each double buffered.
  const int64_t per_head = 2 * T * e + chunks * hs * e + 2 * (hs * eo + 8);
  const int64_t free = core.sbuf_largest_free() - kSlack;
  const int64_t G = heads_per_group(NH, per_head, free);
  require(G >= 1,
          "{}: T = {} is too long: one head's Q^T, K^T and V need {} bytes per SBUF partition, "
          "double buffered, and {} are free",
          name, T, 2 * per_head, free);
  struct Inputs {
    View qt, kt, v;  // [hs, G, T], [hs, G, T], [128, chunks, G * hs]
  };
  std::vector<Inputs> inputs;
  std::vector<View> stage, stats_l, stats_nb;
  for (int i = 0; i < 2; ++i) {
    const std::string n = "attn_fwd.in" + std::to_string(i);
    inputs.push_back({pool.sbuf(hs, {G, T}, compute, n + ".qT"),
                      pool.sbuf(hs, {G, T}, compute, n + ".kT"),
                      pool.sbuf(kPartitions, {chunks, G * hs}, compute, n + ".v")});
    stage.push_back(pool.sbuf(kPartitions, {G * hs}, out.dtype(), n + ".out"));
    stats_l.push_back(pool.sbuf(kPartitions, {G}, DType::kF32, n + ".l"));
    stats_nb.push_back(pool.sbuf(kPartitions, {G}, DType::kF32, n + ".nb"));
  }

  struct Unit {
    int64_t b, g0, gn;
  };
  std::vector<Unit> units;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g0 = 0; g0 < NH; g0 += G) units.push_back({b, g0, std::min(G, NH - g0)});

  QueueRing queues(core.config().dma_queues);
  auto load = [&](const Unit& u, const Inputs& in) {
    const int64_t base = u.b * T * C3 + u.g0 * hs;
    const std::vector<Dim> heads_by_t{Dim{u.gn, hs}, Dim{T, C3}};
    dma_split(core, in.qt.slice(0, 0, u.gn), qkv.pattern(base, Dim{hs, 1}, heads_by_t), 0, queues);
    dma_split(core, in.kt.slice(0, 0, u.gn), qkv.pattern(base + C, Dim{hs, 1}, heads_by_t), 0,
              queues);
    const View v = in.v.slice(1, 0, u.gn * hs);
    if (full_chunks > 0) {
      dma_split(core, v.slice(0, 0, full_chunks),
                qkv.pattern(base + 2 * C, Dim{kPartitions, C3},
                            {Dim{full_chunks, kPartitions * C3}, Dim{u.gn * hs, 1}}),
                0, queues);
    }
    if (tail > 0) {
      dma_split(core, v.rows(0, tail).slice(0, full_chunks, 1),
                qkv.pattern(base + 2 * C + full_chunks * kPartitions * C3, Dim{tail, C3},
                            {Dim{u.gn * hs, 1}}),
                -1, queues);
    }
  };

  struct Step {
    int64_t h, kb, k0, nk, blocks;
  };
  // Scores come out as -scale * q.k: the row minimum is then directly nb = -scale * max, the
  // exp's bias, and the mask's fill is +1e30.
  auto scale_q = [&](const Unit& u, const Inputs& in) {
    const View qt_all = in.qt.slice(0, 0, u.gn);
    core.tensor_scalar(qt_all, qt_all, AluOp::kMultiply, -scale, AluOp::kBypass, 0.0f,
                       Engine::kGpSimd);
  };
  int64_t staged = 0;  // query tiles staged (rotates the output staging tiles)
  load(units[0], inputs[0]);
  for (size_t ui = 0; ui < units.size(); ++ui) {
    const Unit& u = units[ui];
    const Inputs& in = inputs[ui % 2];
    if (ui + 1 < units.size()) load(units[ui + 1], inputs[(ui + 1) % 2]);
    if (ui == 0) scale_q(u, in);
    for (int64_t qt = 0; qt < chunks; ++qt) {
      const int64_t q0 = qt * kPartitions;
      const int64_t mq = std::min(kPartitions, T - q0);
      const int64_t kend = q0 + mq;  // keys past the last query row are all masked
      const int64_t blocks = ceil_div(kend, kKeyBlock);
      const View out_tile = stage[staged % 2].rows(0, mq);
      const View l_all = stats_l[staged % 2].rows(0, mq);
      const View nb_all = stats_nb[staged % 2].rows(0, mq);
      ++staged;
      std::vector<Step> steps;
      for (int64_t h = 0; h < u.gn; ++h)
        for (int64_t kb = 0; kb < blocks; ++kb) {
          const int64_t k0 = kb * kKeyBlock;
          steps.push_back({h, kb, k0, std::min(kKeyBlock, kend - k0), blocks});
        }

      // Stage 1: S' = -scale Q K^T, masked; nb = min(nb, rowmin S'); P = exp(nb - S') with its
      // row sum; with several blocks, corr = exp(nb_new - nb_old) and l = l * corr + sum.
      // Stage 1a issues the scores and the mask; stage 1b (one step behind, so that VectorE has
      // an independent instruction while the mask's result becomes visible) the rest.
      auto scores = [&](size_t i) {
        const Step& st = steps[i];
        const Slot& w = slots[i % R];
        const View s = w.s_ps.rows(0, mq).cols(0, st.nk);
        if (st.k0 + st.nk - 1 <= q0) return s;
        return w.s.rows(0, mq).cols(0, st.nk);  // crosses the diagonal: masked copy in SBUF
      };
      auto stage1a = [&](size_t i) {
        const Step& st = steps[i];
        const Slot& w = slots[i % R];
        const View s = w.s_ps.rows(0, mq).cols(0, st.nk);
        core.matmul(s, head_cols(in.qt, st.h, q0, mq), head_cols(in.kt, st.h, st.k0, st.nk), true,
                    true);
        if (st.k0 + st.nk - 1 > q0) {
          core.tensor_tensor(scores(i), s, AluOp::kAdd,
                             mask.rows(0, mq).cols(kMaskDiagonal - (q0 - st.k0), st.nk));
        }
      };
      auto stage1 = [&](size_t i) {
        const Step& st = steps[i];
        const Slot& w = slots[i % R];
        const bool last = st.kb + 1 == st.blocks;
        auto col = [&](int64_t c) { return w.cols.rows(0, mq).cols(c, 1); };
        const View nb_prev = st.kb == 0 ? View() : state.rows(0, mq).cols((st.kb - 1) % 2, 1);
        const View nb_next = last ? nb_all.cols(st.h, 1) : state.rows(0, mq).cols(st.kb % 2, 1);
        const View l_prev = st.kb == 0 ? View() : state.rows(0, mq).cols(2 + (st.kb - 1) % 2, 1);
        const View l_next = last ? l_all.cols(st.h, 1) : state.rows(0, mq).cols(2 + st.kb % 2, 1);
        const View src = scores(i);
        if (st.kb == 0) {
          core.tensor_reduce(nb_next, AluOp::kMin, src);
        } else {
          core.tensor_reduce(col(0), AluOp::kMin, src);
          core.tensor_tensor(nb_next, col(0), AluOp::kMin, nb_prev);
        }
        core.activation_reduce(w.p.rows(0, mq).cols(0, st.nk), Activation::kExp, src,
                               st.kb == 0 ? l_next : col(2), -1.0f, nb_next);
        if (st.kb > 0) {
          core.activation(col(1), Activation::kExp, nb_prev, -1.0f, nb_next);
          core.tensor_scalar(l_next, l_prev, AluOp::kMultiply, col(1), AluOp::kAdd, col(2));
        }
        if (last) core.reciprocal(col(3), l_next, Engine::kGpSimd);
      };
      // Stage 2: P^T per 128-key chunk through TensorE, O_block = P V, the running output
      // O = O * corr + O_block, and after the last block out = O / l.
      auto stage2 = [&](size_t i) {
        const Step& st = steps[i];
        const Slot& w = slots[i % R];
        auto col = [&](int64_t c) { return w.cols.rows(0, mq).cols(c, 1); };
        const View p = w.p.rows(0, mq);
        const int64_t nc = ceil_div(st.nk, kPartitions);
        const int64_t full = st.nk / kPartitions;
        for (int64_t c = 0; c < nc; ++c) {
          const int64_t ck = std::min(kPartitions, st.nk - c * kPartitions);
          core.transpose(w.pt_ps.rows(0, ck).cols(c * mq, mq), p.cols(c * kPartitions, ck));
        }
        if (full > 0) {
          core.tensor_copy(w.pt.cols(0, full * mq), w.pt_ps.cols(0, full * mq), Engine::kScalar);
        }
        if (full < nc) {
          const int64_t ck = st.nk - full * kPartitions;
          core.tensor_copy(w.pt.rows(0, ck).cols(full * mq, mq),
                           w.pt_ps.rows(0, ck).cols(full * mq, mq), Engine::kScalar);
        }
        const View o = w.o_ps.rows(0, mq);
        for (int64_t c = 0; c < nc; ++c) {
          const int64_t ck = std::min(kPartitions, st.nk - c * kPartitions);
          const View v =
              in.v.rows(0, ck).slice(0, st.k0 / kPartitions + c, 1).slice(1, st.h * hs, hs);
          core.matmul(o, w.pt.rows(0, ck).cols(c * mq, mq), v, c == 0, c + 1 == nc);
        }
        View o_final = o;
        if (st.blocks > 1) {
          const View acc = w.o.rows(0, mq);
          if (st.kb == 0) {
            core.tensor_copy(acc, o, Engine::kVector);
          } else {
            const View prev = slots[(i - 1) % R].o.rows(0, mq);  // the previous block's
            core.tensor_scalar(prev, prev, AluOp::kMultiply, col(1), AluOp::kBypass, 0.0f,
                               Engine::kGpSimd);
            core.tensor_tensor(acc, prev, AluOp::kAdd, o);
          }
          o_final = acc;
        }
        if (st.kb + 1 == st.blocks) {
          core.activation(out_tile.cols(st.h * hs, hs), Activation::kIdentity, o_final, col(3));
        }
      };
      // Stage 1b runs one step behind stage 1a, stage 2 R - 2 steps behind stage 1b; slot i % R
      // is free again once stage 2 of step i - R has been issued.
      const size_t skew = static_cast<size_t>(R - 1);
      for (size_t i = 0; i < steps.size() + skew; ++i) {
        if (i >= skew) stage2(i - skew);
        if (i < steps.size()) stage1a(i);
        if (i >= 1 && i - 1 < steps.size()) stage1(i - 1);
      }
      // The next group's Q^T scaling, on GpSimd ahead of this tile's lse step.
      if (qt + 1 == chunks && ui + 1 < units.size()) scale_q(units[ui + 1], inputs[(ui + 1) % 2]);

      // lse = ln(l) + scale * max = ln(l) - nb, for all heads of the group at once.
      const View lse_tile = l_all.cols(0, u.gn);
      core.activation(lse_tile, Activation::kLog, lse_tile);
      core.tensor_tensor(lse_tile, lse_tile, AluOp::kSubtract, nb_all.cols(0, u.gn),
                         Engine::kGpSimd);
      dma_split(core, out.rows(u.b * T + q0, mq).cols(u.g0 * hs, u.gn * hs),
                out_tile.cols(0, u.gn * hs), -1, queues);
      core.dma_copy(lse.pattern((u.b * NH + u.g0) * T + q0, Dim{mq, 1}, {Dim{u.gn, T}}), lse_tile,
                    queues());
    }
  }
}

void attention_backward(NeuronCore& core, const View& dqkv, const View& dout, const View& qkv,
                        const View& lse, int B, int T, int C, int NH, DType compute) {
  const char* name = "attention_backward";
  check_sizes(name, B, T, C, NH, compute);
  require_matrix(name, "dqkv", dqkv, int64_t{B} * T, 3 * int64_t{C});
  require_matrix(name, "dout", dout, int64_t{B} * T, C);
  require_matrix(name, "qkv", qkv, int64_t{B} * T, 3 * int64_t{C});
  require_lse(name, lse, int64_t{B} * NH * T);

  KernelScope scope(core, name);
  TilePool pool(core);
  const int64_t hs = C / NH;
  const int64_t C3 = 3 * int64_t{C};
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const int64_t e = dtype_bytes(compute);
  const int64_t chunks = ceil_div(T, kPartitions);
  const int64_t full_chunks = T / kPartitions;
  const int64_t tail = T - full_chunks * kPartitions;
  // Key chunks per PSUM evacuation: dV/dK blocks [128, hs] fp32 and dS^T blocks [128, 128] in
  // one bank each.
  const int64_t kv_per_bank = std::min(chunks, kPsumBankFloats / hs);
  const int64_t st_per_bank =
      std::min(chunks, core.config().psum_bank_bytes / (kPartitions * e));

  // SBUF: per query tile (double buffered) the full rows of P, P*dP, P*D (fp32) and dS; per head
  // (double buffered) Q^T, K^T, V^T, dO^T, natural Q, K, dO, the fp32 gradient accumulators
  // and -lse.
  auto work_bytes = [&](int64_t t) { return t * (2 * e + 8) + 64; };
  auto head_bytes = [&](int64_t t) {
    const int64_t c = ceil_div(t, kPartitions);
    return 4 * t * e + 3 * c * hs * e + 3 * c * hs * 4 + c * 4;
  };
  const int64_t free =
      core.sbuf_largest_free() - kSlack - 2 * st_per_bank * kPartitions * e;
  const int64_t per_head = head_bytes(T);
  const int64_t G = heads_per_group(NH, per_head, free - 2 * work_bytes(T));
  if (G < 1) {
    int64_t fits = 0;
    for (int64_t t = kPartitions; 2 * work_bytes(t) + 2 * head_bytes(t) <= free; t += kPartitions)
      fits = t;
    fail("{}: T = {} is too long: a query tile's full rows of P and dP and one head's inputs "
         "need {} bytes per SBUF partition (double buffered) but {} are free; with hs = {} and "
         "{} tiles T up to about {} fits",
         name, T, 2 * work_bytes(T) + 2 * per_head, free, hs, nki_dtype_name(compute), fits);
  }

  struct Inputs {
    View qt, kt, vt, dot;  // [hs, G, T]; V^T pre-scaled by 1/sqrt(hs)
    View qk;               // [128, chunks, 2, G * hs] natural Q and K
    View dout;             // [128, chunks, G * hs] natural dO
    View acc;              // [128, chunks, 3, G * hs] fp32 dQ | dK | dV, starting from dqkv
    View nlse;             // [128, chunks, G] fp32 -lse
  };
  std::vector<Inputs> inputs;
  for (int i = 0; i < 2; ++i) {
    const std::string n = "attn_bwd.in" + std::to_string(i);
    inputs.push_back({pool.sbuf(hs, {G, T}, compute, n + ".qT"),
                      pool.sbuf(hs, {G, T}, compute, n + ".kT"),
                      pool.sbuf(hs, {G, T}, compute, n + ".vT"),
                      pool.sbuf(hs, {G, T}, compute, n + ".doT"),
                      pool.sbuf(kPartitions, {chunks, 2, G * hs}, compute, n + ".qk"),
                      pool.sbuf(kPartitions, {chunks, G * hs}, compute, n + ".do"),
                      pool.sbuf(kPartitions, {chunks, 3, G * hs}, DType::kF32, n + ".acc"),
                      pool.sbuf(kPartitions, {chunks, G}, DType::kF32, n + ".nlse")});
  }
  struct Unit {
    int64_t b, g0, gn;
  };
  std::vector<Unit> units;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g0 = 0; g0 < NH; g0 += G) units.push_back({b, g0, std::min(G, NH - g0)});

  QueueRing queues(core.config().dma_queues);
  // Rows of a [B*T, width] tensor for unit u as [128, full chunks, inner...] and the tail rows.
  auto load_rows = [&](const View& dst, const View& src, int64_t offset, int64_t width,
                       const std::vector<Dim>& inner) {
    if (full_chunks > 0) {
      std::vector<Dim> free{Dim{full_chunks, kPartitions * width}};
      free.insert(free.end(), inner.begin(), inner.end());
      dma_split(core, dst.slice(0, 0, full_chunks),
                src.pattern(offset, Dim{kPartitions, width}, free), 0, queues);
    }
    if (tail > 0) {
      dma_split(core, dst.rows(0, tail).slice(0, full_chunks, 1),
                src.pattern(offset + full_chunks * kPartitions * width, Dim{tail, width}, inner), -1,
                queues);
    }
  };
  auto acc_rows = [&](const Unit& u, const Inputs& in, bool store) {
    const View acc = in.acc.slice(2, 0, u.gn * hs);
    const int64_t offset = u.b * T * C3 + u.g0 * hs;
    const std::vector<Dim> inner{Dim{3, C}, Dim{u.gn * hs, 1}};
    if (!store) {
      load_rows(acc, dqkv, offset, C3, inner);
      return;
    }
    if (full_chunks > 0) {
      std::vector<Dim> free{Dim{full_chunks, kPartitions * C3}};
      free.insert(free.end(), inner.begin(), inner.end());
      dma_split(core, dqkv.pattern(offset, Dim{kPartitions, C3}, free),
                acc.slice(0, 0, full_chunks), 0, queues);
    }
    if (tail > 0) {
      dma_split(core, dqkv.pattern(offset + full_chunks * kPartitions * C3, Dim{tail, C3}, inner),
                acc.rows(0, tail).slice(0, full_chunks, 1), -1, queues);
    }
  };
  auto load = [&](const Unit& u, const Inputs& in) {
    const int64_t base = u.b * T * C3 + u.g0 * hs;
    const int64_t dbase = u.b * T * C + u.g0 * hs;
    const std::vector<Dim> qkv_t{Dim{u.gn, hs}, Dim{T, C3}};
    dma_split(core, in.qt.slice(0, 0, u.gn), qkv.pattern(base, Dim{hs, 1}, qkv_t), 0, queues);
    dma_split(core, in.kt.slice(0, 0, u.gn), qkv.pattern(base + C, Dim{hs, 1}, qkv_t), 0, queues);
    dma_split(core, in.dot.slice(0, 0, u.gn),
              dout.pattern(dbase, Dim{hs, 1}, {Dim{u.gn, hs}, Dim{T, C}}), 0, queues);
    dma_split(core, in.vt.slice(0, 0, u.gn), qkv.pattern(base + 2 * C, Dim{hs, 1}, qkv_t), 0,
              queues);
    load_rows(in.qk.slice(2, 0, u.gn * hs), qkv, base, C3, {Dim{2, C}, Dim{u.gn * hs, 1}});
    load_rows(in.dout.slice(1, 0, u.gn * hs), dout, dbase, C, {Dim{u.gn * hs, 1}});
    load_rows(in.nlse.slice(1, 0, u.gn), lse, (u.b * NH + u.g0) * T, 1, {Dim{u.gn, T}});
    acc_rows(u, in, false);
    // dP is only ever used scaled (dS = scale P (dP - D)): fold 1/sqrt(hs) into V^T once.
    const View vt = in.vt.slice(0, 0, u.gn);
    core.tensor_scalar(vt, vt, AluOp::kMultiply, scale, AluOp::kBypass, 0.0f, Engine::kGpSimd);
    const View nlse = in.nlse.slice(1, 0, u.gn);
    if (full_chunks > 0) {
      const View body = nlse.slice(0, 0, full_chunks);
      core.tensor_scalar(body, body, AluOp::kMultiply, -1.0f, AluOp::kBypass, 0.0f,
                         Engine::kGpSimd);
    }
    if (tail > 0) {
      const View rest = nlse.rows(0, tail).slice(0, full_chunks, 1);
      core.tensor_scalar(rest, rest, AluOp::kMultiply, -1.0f, AluOp::kBypass, 0.0f,
                         Engine::kGpSimd);
    }
  };

  // Rows go through a software pipeline like the forward pass's: stage 1 of row i (P, dP, D and
  // dS for one head's query tile) is issued before stage 2 of row i - R + 1 (the per-chunk
  // gradient matmuls and their evacuation). Slots hold stage 1's full rows; stage 2 alternates
  // between two sets of PSUM tiles where they fit.
  const int64_t max_nk = std::min<int64_t>(kKeyBlock, T);
  const int64_t psum_bytes = core.config().psum_partition_bytes;
  const int64_t set_psum = 2 * psum_footprint(kv_per_bank * hs * 4) + psum_footprint(st_per_bank * kPartitions * e) +
                           psum_footprint(hs * 4);
  const int64_t slot_psum = 2 * psum_footprint(max_nk * 4);
  const int64_t sets = psum_bytes - 2 * set_psum >= 2 * slot_psum ? 2 : 1;
  const int64_t sbuf_left = free - 2 * G * per_head;
  const int64_t R = std::clamp<int64_t>(
      std::min((psum_bytes - sets * set_psum) / slot_psum, sbuf_left / work_bytes(T)), 2, 4);
  struct Slot {
    View p;     // [128, T] probabilities
    View pdp;   // [128, T] fp32 P * dP
    View pd;    // [128, T] fp32 P * D
    View ds;    // [128, T] dS (scaled by 1/sqrt(hs))
    View d;     // [128, 1] fp32 D = rowsum(P * dP)
    View s_ps, dp_ps;  // [128, max_nk] fp32 scores and dP of one key block
  };
  std::vector<Slot> slots;
  for (int64_t i = 0; i < R; ++i) {
    const std::string n = "attn_bwd." + std::to_string(i);
    slots.push_back({pool.sbuf(kPartitions, {T}, compute, n + ".p"),
                     pool.sbuf(kPartitions, {T}, DType::kF32, n + ".pdp"),
                     pool.sbuf(kPartitions, {T}, DType::kF32, n + ".pd"),
                     pool.sbuf(kPartitions, {T}, compute, n + ".ds"),
                     pool.sbuf(kPartitions, {1}, DType::kF32, n + ".D"),
                     pool.psum(kPartitions, {max_nk}, DType::kF32, n + ".ps.s"),
                     pool.psum(kPartitions, {max_nk}, DType::kF32, n + ".ps.dp")});
  }
  struct GradSet {
    View dv_ps, dk_ps;  // [128, kv_per_bank x hs] fp32
    View dst_ps;        // [128, st_per_bank x 128] dS^T chunks
    View dq_ps;         // [128, hs] fp32
    View dst;           // SBUF copy of dst_ps
  };
  std::vector<GradSet> grad_sets;
  for (int64_t i = 0; i < sets; ++i) {
    const std::string n = "attn_bwd.grad" + std::to_string(i);
    grad_sets.push_back({pool.psum(kPartitions, {kv_per_bank * hs}, DType::kF32, n + ".ps.dv"),
                         pool.psum(kPartitions, {kv_per_bank * hs}, DType::kF32, n + ".ps.dk"),
                         pool.psum(kPartitions, {st_per_bank * kPartitions}, compute,
                                   n + ".ps.dsT"),
                         pool.psum(kPartitions, {hs}, DType::kF32, n + ".ps.dq"),
                         pool.sbuf(kPartitions, {st_per_bank * kPartitions}, compute, n + ".dsT")});
  }

  load(units[0], inputs[0]);
  for (size_t ui = 0; ui < units.size(); ++ui) {
    const Unit& u = units[ui];
    const Inputs& in = inputs[ui % 2];
    if (ui + 1 < units.size()) load(units[ui + 1], inputs[(ui + 1) % 2]);
    for (int64_t qt = 0; qt < chunks; ++qt) {
      const int64_t q0 = qt * kPartitions;
      const int64_t mq = std::min(kPartitions, T - q0);
      const int64_t kend = q0 + mq;  // keys past the last query row are all masked
      const int64_t blocks = ceil_div(kend, kKeyBlock);
      const int64_t kchunks = ceil_div(kend, kPartitions);

      // Stage 1 for head h: P = exp(scale S - lse) (zeroed above the diagonal by affine_select),
      // P * dP' per key block (dP' = dO (scale V)^T); D = rowsum(P dP'); dS' = P dP' - P D, which
      // is scale * P (dP - D).
      auto stage1 = [&](int64_t h) {
        const Slot& w = slots[h % R];
        const View p = w.p.rows(0, mq);
        const View pdp = w.pdp.rows(0, mq);
        const View nlse = in.nlse.rows(0, mq).slice(0, qt, 1).slice(1, h, 1);
        for (int64_t kb = 0; kb < blocks; ++kb) {
          const int64_t k0 = kb * kKeyBlock;
          const int64_t nk = std::min(kKeyBlock, kend - k0);
          const View s = w.s_ps.rows(0, mq).cols(0, nk);
          const View dp = w.dp_ps.rows(0, mq).cols(0, nk);
          core.matmul(s, head_cols(in.qt, h, q0, mq), head_cols(in.kt, h, k0, nk), true, true);
          core.matmul(dp, head_cols(in.dot, h, q0, mq), head_cols(in.vt, h, k0, nk), true, true);
          const View pb = p.cols(k0, nk);
          core.activation(pb, Activation::kExp, s, scale, nlse);
          if (k0 + nk - 1 > q0) {  // crosses the diagonal: keep key k0 + j <= query q0 + p
            core.affine_select(pb, pb, static_cast<float>(q0 - k0), 1.0f, {-1.0f},
                               AluOp::kIsGreaterEqual, 0.0f);
          }
          core.tensor_tensor(pdp.cols(k0, nk), pb, AluOp::kMultiply, dp);
        }
        const View d = w.d.rows(0, mq);
        core.tensor_reduce(d, AluOp::kAdd, pdp.cols(0, kend));
        const View pd = w.pd.rows(0, mq).cols(0, kend);
        core.activation(pd, Activation::kIdentity, p.cols(0, kend), d);
        core.tensor_tensor(w.ds.rows(0, mq).cols(0, kend), pdp.cols(0, kend), AluOp::kSubtract, pd,
                           Engine::kGpSimd);
      };
      // Stage 2 for head h, per 128-key chunk: dV = P^T dO, dK = dS'^T Q (into PSUM, added to
      // the accumulators a bank at a time), dQ = dS' K accumulated over all chunks in one PSUM
      // group.
      auto stage2 = [&](int64_t h) {
        const Slot& w = slots[h % R];
        const GradSet& gs = grad_sets[h % sets];
        const View p = w.p.rows(0, mq);
        const View ds = w.ds.rows(0, mq);
        const View dq = gs.dq_ps.rows(0, mq);
        const View q_nat = in.qk.rows(0, mq).slice(0, qt, 1).slice(1, 0, 1).slice(2, h * hs, hs);
        const View do_nat = in.dout.rows(0, mq).slice(0, qt, 1).slice(1, h * hs, hs);
        const int64_t per_batch = std::min(kv_per_bank, st_per_bank);
        for (int64_t c0 = 0; c0 < kchunks; c0 += per_batch) {
          const int64_t n = std::min(per_batch, kchunks - c0);
          for (int64_t c = c0; c < c0 + n; ++c) {
            const int64_t ck = std::min(kPartitions, kend - c * kPartitions);
            const int64_t j = c - c0;
            core.matmul(gs.dv_ps.rows(0, ck).cols(j * hs, hs), p.cols(c * kPartitions, ck),
                        do_nat, true, true);
            core.matmul(gs.dk_ps.rows(0, ck).cols(j * hs, hs), ds.cols(c * kPartitions, ck),
                        q_nat, true, true);
            core.transpose(gs.dst_ps.rows(0, ck).cols(j * mq, mq), ds.cols(c * kPartitions, ck));
          }
          // Accumulate: whole chunks in one instruction each, a partial last chunk on its own.
          const int64_t whole = std::min(n, (kend - c0 * kPartitions) / kPartitions);
          auto acc_view = [&](int64_t which, int64_t first, int64_t count, int64_t rows) {
            return in.acc.rows(0, rows).slice(0, first, count).slice(1, which, 1).slice(
                2, h * hs, hs);
          };
          if (whole > 0) {
            core.tensor_copy(gs.dst.cols(0, whole * mq), gs.dst_ps.cols(0, whole * mq),
                             Engine::kScalar);
            for (int64_t which : {2, 1}) {
              const View a = acc_view(which, c0, whole, kPartitions);
              const View ps = (which == 2 ? gs.dv_ps : gs.dk_ps).cols(0, whole * hs);
              core.tensor_tensor(a, a, AluOp::kAdd, ps);
            }
          }
          if (whole < n) {
            const int64_t ck = kend - (c0 + whole) * kPartitions;
            core.tensor_copy(gs.dst.rows(0, ck).cols(whole * mq, mq),
                             gs.dst_ps.rows(0, ck).cols(whole * mq, mq), Engine::kScalar);
            for (int64_t which : {2, 1}) {
              const View a = acc_view(which, c0 + whole, 1, ck);
              const View ps = (which == 2 ? gs.dv_ps : gs.dk_ps).rows(0, ck).cols(whole * hs, hs);
              core.tensor_tensor(a, a, AluOp::kAdd, ps);
            }
          }
          for (int64_t c = c0; c < c0 + n; ++c) {
            const int64_t ck = std::min(kPartitions, kend - c * kPartitions);
            const View k_nat =
                in.qk.rows(0, ck).slice(0, c, 1).slice(1, 1, 1).slice(2, h * hs, hs);
            core.matmul(dq, gs.dst.rows(0, ck).cols((c - c0) * mq, mq), k_nat, c == 0,
                        c + 1 == kchunks);
          }
        }
        const View acc_dq = in.acc.rows(0, mq).slice(0, qt, 1).slice(1, 0, 1).slice(2, h * hs, hs);
        core.tensor_tensor(acc_dq, acc_dq, AluOp::kAdd, dq);
      };
      const int64_t skew = R - 1;
      for (int64_t i = 0; i < u.gn + skew; ++i) {
        if (i >= skew) stage2(i - skew);
        if (i < u.gn) stage1(i);
      }
    }
    acc_rows(u, in, true);
  }
}

}  // namespace switchyard::backend::neuron
