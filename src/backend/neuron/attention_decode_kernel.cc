#include "backend/neuron/attention_decode_kernel.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/neuron/attention_kernel.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

using attention_detail::dma_split;
using attention_detail::kKeyBlock;
using attention_detail::QueueRing;
using attention_detail::require_matrix;

constexpr int64_t kMaxGroup = 64;    // (b, head) pairs per group: the block-diagonal tiles
                                     // grow with its square
constexpr int64_t kSlack = 64 * 64;  // per-partition alignment slack of the pool's allocations

}  // namespace

void attention_decode(NeuronCore& core, const View& out, const View& qkv, const View& k_cache,
                      const View& v_cache, int B, int pos, int max_T, int C, int NH,
                      DType compute) {
  const char* name = "attention_decode";
  attention_detail::check_sizes(name, B, max_T, C, NH, compute);
  require(pos >= 0 && pos < max_T, "{}: pos = {} must be in [0, max_T = {})", name, pos, max_T);
  const int64_t hs = C / NH;
  const int64_t BH = int64_t{B} * NH;
  const int64_t C3 = 3 * int64_t{C};
  require_matrix(name, "qkv", qkv, B, C3);
  require_matrix(name, "out", out, B, C);
  require_matrix(name, "k_cache", k_cache, BH * max_T, hs);
  require_matrix(name, "v_cache", v_cache, BH * max_T, hs);

  KernelScope scope(core, name);
  TilePool pool(core);
  QueueRing queues(core.config().dma_queues);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const int64_t e = dtype_bytes(compute);
  const int64_t L = int64_t{pos} + 1;  // positions attended
  const int64_t chunks = ceil_div(L, kPartitions);
  const int64_t blocks = ceil_div(L, kKeyBlock);
  const int64_t row = int64_t{max_T} * hs;  // cache elements per (b, head)

  // 1. The new position's k and v into the caches: rows (b, h) of [B, NH, max_T, hs] at pos.
  for (int which = 1; which <= 2; ++which) {
    const View& cache = which == 1 ? k_cache : v_cache;
    core.dma_copy(cache.pattern(int64_t{pos} * hs, Dim{B, NH * row}, {Dim{NH, row}, Dim{hs, 1}}),
                  qkv.pattern(which * int64_t{C}, Dim{B, C3}, {Dim{NH, hs}, Dim{hs, 1}}),
                  queues());
  }

  // Group size: two groups' K^T [hs, G, L] and V [128, chunks, G, hs] (double buffered), the
  // block-diagonal q and P^T tiles (G x G each, two of each), and the score rows.
  auto group_bytes = [&](int64_t g) {
    return 2 * (g * L * e + chunks * g * hs * e) + 4 * g * g * e + L * (4 + e) + 64;
  };
  const int64_t free = core.sbuf_largest_free() - kSlack;
  int64_t G = std::min(BH, kMaxGroup);
  while (G > 1 && group_bytes(G) > free) --G;
  require(group_bytes(G) <= free,
          "{}: pos = {} is too long: one head's cached K^T and V need {} bytes per SBUF "
          "partition and {} are free",
          name, pos, group_bytes(G), free);
  G = ceil_div(BH, ceil_div(BH, G));  // even out the groups

  // q of every (b, head) with hs on partitions: [hs, B, NH] = [hs, BH], one DMA.
  const View q_all = pool.sbuf(hs, {BH}, compute, "attn_dec.qT");
  core.dma_copy(q_all.split(0, NH), qkv.pattern(0, Dim{hs, 1}, {Dim{B, C3}, Dim{NH, hs}}),
                queues());

  struct Buffers {
    View kt;    // [hs, G, L]
    View v;     // [128, chunks, G * hs]
    View qblk;  // [hs, G * G]: column i * G + i holds q of pair i, zeros elsewhere
    View ptblk; // [128, G * G]: the same for one chunk of P^T
  };
  std::vector<Buffers> buf;
  for (int i = 0; i < 2; ++i) {
    const std::string n = "attn_dec." + std::to_string(i);
    buf.push_back({pool.sbuf(hs, {G, L}, compute, n + ".kT"),
                   pool.sbuf(kPartitions, {chunks, G * hs}, compute, n + ".v"),
                   pool.sbuf(hs, {G * G}, compute, n + ".qblk"),
                   pool.sbuf(kPartitions, {G * G}, compute, n + ".ptblk")});
    // Off-diagonal zeros, written once: every group rewrites only the diagonal.
    core.memset(buf.back().qblk, 0.0f, Engine::kGpSimd);
    core.memset(buf.back().ptblk, 0.0f, Engine::kGpSimd);
  }
  const View scores = pool.sbuf(kPartitions, {L}, DType::kF32, "attn_dec.s");
  const View probs = pool.sbuf(kPartitions, {L}, compute, "attn_dec.p");
  const View cols = pool.sbuf(kPartitions, {3}, DType::kF32, "attn_dec.cols");
  const View stage = pool.sbuf(kPartitions, {hs}, out.dtype(), "attn_dec.out");
  std::vector<View> s_ps;
  for (int i = 0; i < 2; ++i)
    s_ps.push_back(pool.psum(kPartitions, {kKeyBlock}, DType::kF32, "attn_dec.ps.s"));
  const int64_t pt_per_bank = core.config().psum_bank_bytes / (G * e);
  const View pt_ps = pool.psum(kPartitions, {std::min(chunks, pt_per_bank) * G}, compute,
                               "attn_dec.ps.pT");
  const View o_ps = pool.psum(kPartitions, {hs}, DType::kF32, "attn_dec.ps.o");

  const int64_t groups = ceil_div(BH, G);
  auto load = [&](int64_t g0, int64_t gn, const Buffers& bf) {
    // K^T of pairs g0.. (positions 0..pos) and V in 128-position chunks, all pairs per DMA.
    dma_split(core, bf.kt.slice(0, 0, gn),
              k_cache.pattern(g0 * row, Dim{hs, 1}, {Dim{gn, row}, Dim{L, hs}}), 0, queues);
    const View v = bf.v.slice(1, 0, gn * hs);
    const int64_t full = L / kPartitions;
    const int64_t rest = L - full * kPartitions;
    if (full > 0) {
      dma_split(core, v.slice(0, 0, full),
                v_cache.pattern(g0 * row, Dim{kPartitions, hs},
                                {Dim{full, kPartitions * hs}, Dim{gn, row}, Dim{hs, 1}}),
                0, queues);
    }
    if (rest > 0) {
      dma_split(core, v.rows(0, rest).slice(0, full, 1),
                v_cache.pattern(g0 * row + full * kPartitions * hs, Dim{rest, hs},
                                {Dim{gn, row}, Dim{hs, 1}}),
                -1, queues);
    }
  };

  load(0, std::min(G, BH), buf[0]);
  for (int64_t gi = 0; gi < groups; ++gi) {
    const int64_t g0 = gi * G;
    const int64_t gn = std::min(G, BH - g0);
    const Buffers& bf = buf[gi % 2];
    if (gi + 1 < groups) load(g0 + G, std::min(G, BH - g0 - G), buf[(gi + 1) % 2]);
    // Block-diagonal q: pair i's q in column i * G + i.
    core.tensor_copy(bf.qblk.slice(0, 0, gn, G + 1), q_all.cols(g0, gn), Engine::kVector);

    // Scores [gn, L]: for each key block, one matmul per pair accumulates into the same PSUM
    // tile; pair i's stationary is zero outside column i, so row i receives only q_i . K_i.
    View src;
    for (int64_t kb = 0; kb < blocks; ++kb) {
      const int64_t k0 = kb * kKeyBlock;
      const int64_t nk = std::min(kKeyBlock, L - k0);
      const View s = s_ps[kb % 2].rows(0, gn).cols(0, nk);
      for (int64_t i = 0; i < gn; ++i) {
        core.matmul(s, bf.qblk.cols(i * G, gn), bf.kt.slice(0, i, 1).slice(1, k0, nk), i == 0,
                    i + 1 == gn);
      }
      if (blocks == 1) {
        src = s;
      } else {
        core.tensor_copy(scores.rows(0, gn).cols(k0, nk), s,
                         kb % 2 == 0 ? Engine::kScalar : Engine::kVector);
        src = scores.rows(0, gn).cols(0, L);
      }
    }
    // Softmax along the free axis, all pairs at once.
    const View m = cols.rows(0, gn).cols(0, 1);
    const View nb = cols.rows(0, gn).cols(1, 1);
    const View l = cols.rows(0, gn).cols(2, 1);
    const View p = probs.rows(0, gn).cols(0, L);
    core.tensor_reduce(m, AluOp::kMax, src);
    core.tensor_scalar(nb, m, AluOp::kMultiply, -scale);
    core.activation_reduce(p, Activation::kExp, src, l, scale, nb);

    // O [gn, hs] = sum over chunks and pairs of (block-diagonal P^T chunk)^T V_pair chunk.
    const View o = o_ps.rows(0, gn);
    const int64_t per_bank = std::min(chunks, pt_per_bank);
    for (int64_t c0 = 0; c0 < chunks; c0 += per_bank) {
      const int64_t n = std::min(per_bank, chunks - c0);
      for (int64_t c = c0; c < c0 + n; ++c) {
        const int64_t ck = std::min(kPartitions, L - c * kPartitions);
        core.transpose(pt_ps.rows(0, ck).cols((c - c0) * gn, gn), p.cols(c * kPartitions, ck));
      }
      for (int64_t c = c0; c < c0 + n; ++c) {
        const int64_t ck = std::min(kPartitions, L - c * kPartitions);
        const View ptblk = buf[c % 2].ptblk;
        core.tensor_copy(ptblk.rows(0, ck).slice(0, 0, gn, G + 1),
                         pt_ps.rows(0, ck).cols((c - c0) * gn, gn),
                         c % 2 == 0 ? Engine::kVector : Engine::kScalar);
        for (int64_t i = 0; i < gn; ++i) {
          const View v = bf.v.rows(0, ck).slice(0, c, 1).slice(1, i * hs, hs);
          core.matmul(o, ptblk.rows(0, ck).cols(i * G, gn), v, c == 0 && i == 0,
                      c + 1 == chunks && i + 1 == gn);
        }
      }
    }
    core.tensor_scalar(stage.rows(0, gn), o, AluOp::kDivide, l);
    // out[b, h * hs + d] is element (b * NH + h) * hs + d: pairs g0.. are consecutive rows of hs.
    core.dma_copy(out.pattern(g0 * hs, Dim{gn, hs}, {Dim{hs, 1}}), stage.rows(0, gn), queues());
  }
}

}  // namespace switchyard::backend::neuron
