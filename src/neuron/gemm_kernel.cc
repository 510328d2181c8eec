#include "neuron/gemm_kernel.h"

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"
#include "neuron/tile_pool.h"

namespace switchyard::neuron {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int64_t kTileK = 128;  // contraction rows of one matmul (PE array rows)
constexpr int64_t kTileM = 128;  // output rows of one matmul (PE array columns)
constexpr int64_t kTileN = 512;  // output columns of one matmul (one PSUM bank of fp32)
constexpr int kPsumBanks = 8;
// An operand whose whole [K, X] fits in this many bytes per partition is loaded once and stays.
constexpr int64_t kResidentBytes = 48 * 1024;
// SBUF per partition for the ring of streamed k-steps.
constexpr int64_t kStepRingBytes = 64 * 1024;
// DMA pieces: a transfer under 32 KiB costs a queue as much as 32 KiB, so pieces are >= 64 KiB.
constexpr int64_t kPieceBytes = 64 * 1024;
// Stores of output tiles in one 128-row band of out wait for each other (dependencies compare
// bounding boxes, and two tiles of a band overlap in theirs), in chains of one per row range:
// stores are cut into the smallest pieces that still move at full speed, so each link is short.
constexpr int64_t kStorePieceBytes = 32 * 1024;
constexpr int64_t kMaxPieces = 8;
// HBM bytes of streamed operands requested ahead of TensorE: enough to keep every DMA queue
// (16 x ~27 GB/s) busy across the 600 ns DMA latency and the wait for a ring slot.
constexpr int64_t kPrefetchBytes = 4 << 20;
constexpr int64_t kMaxPrefetchSteps = 16;
// Output blocks whose previous gradient is loaded ahead of the block's evacuation.
constexpr int64_t kMaxOldBlocksAhead = 4;

// Issues DMA copies round-robin over all queues, each split by rows into pieces of at least
// `piece_bytes`, so that big loads spread over the queues and small ones waste no queue time.
class DmaSpreader {
 public:
  explicit DmaSpreader(NeuronCore& core) : core_(core), queues_(core.config().dma_queues) {}

  void copy(const View& dst, const View& src, int64_t piece_bytes = kPieceBytes) {
    const int64_t rows = dst.partitions();
    const int64_t bytes =
        dst.elements() * std::max(dtype_bytes(dst.dtype()), dtype_bytes(src.dtype()));
    const int64_t pieces =
        std::clamp<int64_t>(bytes / piece_bytes, 1, std::min<int64_t>(kMaxPieces, rows));
    const int64_t per_piece = ceil_div(rows, pieces);
    for (int64_t r = 0; r < rows; r += per_piece) {
      const int64_t n = std::min(per_piece, rows - r);
      core_.dma_copy(dst.rows(r, n), src.rows(r, n), next_);
      next_ = (next_ + 1) % queues_;
    }
  }

 private:
  NeuronCore& core_;
  int queues_;
  int next_ = 0;
};

// A block of output tiles that accumulate together while K streams: m tiles [m0, m0 + mc) by
// n tiles [n0, n0 + nc).
struct Block {
  int64_t m0, mc, n0, nc;
};

void run_gemm(NeuronCore& core, const GemmJob& job, GemmPlan& plan) {
  TilePool pool(core);
  DmaSpreader dma(core);
  const DType dt = job.compute;
  const int64_t es = dtype_bytes(dt);
  const int64_t K = job.stationary.k();
  const int64_t M = job.stationary.x();
  const int64_t N = job.moving.x();
  const int64_t k_tiles = ceil_div(K, kTileK);
  const int64_t m_tiles = ceil_div(M, kTileM);
  const int64_t n_tiles = ceil_div(N, kTileN);
  const bool has_bias = job.bias.allocation() >= 0;
  const bool has_sums = job.column_sums.allocation() >= 0;
  auto k_size = [&](int64_t kt) { return std::min(kTileK, K - kt * kTileK); };
  auto m_size = [&](int64_t mt) { return std::min(kTileM, M - mt * kTileM); };
  auto n_size = [&](int64_t nt) { return std::min(kTileN, N - nt * kTileN); };

  // PSUM: a ring of one-bank accumulators (one more bank holds the column sums). A block uses
  // at most half the ring, so the next block accumulates while this one drains.
  const int64_t psum_slots = kPsumBanks - (has_sums ? 1 : 0);
  const int64_t groups = psum_slots / 2;
  // The bigger operand in HBM (the weight, or dout of a wide layer) streams through once, in
  // blocks of output tiles that cover all of the other dimension; the smaller one stays resident
  // in SBUF when it fits (otherwise it streams too, once per block). Streaming the big one, rather
  // than loading it whole first, lets TensorE start on the first block as soon as it arrives.
  const int64_t stat_hbm = K * M * dtype_bytes(job.stationary.hbm.dtype());
  const int64_t mov_hbm = K * N * dtype_bytes(job.moving.hbm.dtype());
  const bool n_outer = mov_hbm >= stat_hbm;  // the moving operand streams
  const bool stat_resident = n_outer && k_tiles * M * es <= kResidentBytes;
  const bool mov_resident = !n_outer && k_tiles * N * es <= kResidentBytes;
  int64_t bm, bn;
  if (n_outer) {
    bm = std::min(m_tiles, groups);
    bn = std::min(n_tiles, std::max<int64_t>(1, groups / bm));
  } else {
    bn = std::min(n_tiles, groups);
    bm = std::min(m_tiles, std::max<int64_t>(1, groups / bn));
  }
  std::vector<Block> blocks;
  if (n_outer) {
    for (int64_t n0 = 0; n0 < n_tiles; n0 += bn)
      for (int64_t m0 = 0; m0 < m_tiles; m0 += bm)
        blocks.push_back({m0, std::min(bm, m_tiles - m0), n0, std::min(bn, n_tiles - n0)});
  } else {
    for (int64_t m0 = 0; m0 < m_tiles; m0 += bm)
      for (int64_t n0 = 0; n0 < n_tiles; n0 += bn)
        blocks.push_back({m0, std::min(bm, m_tiles - m0), n0, std::min(bn, n_tiles - n0)});
  }
  const int64_t num_blocks = static_cast<int64_t>(blocks.size());
  const int64_t steps = num_blocks * k_tiles;
  auto m_cols = [&](const Block& b) {
    return std::min((b.m0 + b.mc) * kTileM, M) - b.m0 * kTileM;
  };
  auto n_cols = [&](const Block& b) {
    return std::min((b.n0 + b.nc) * kTileN, N) - b.n0 * kTileN;
  };

  // Streamed operands: a ring of k-steps, `prefetch` steps requested ahead of TensorE. Two
  // more slots than that, so a refill never waits for the matmuls that have just been issued.
  const int64_t stat_cols = bm * kTileM;
  const int64_t mov_cols = bn * kTileN;
  const int64_t step_hbm_bytes =
      (stat_resident ? 0 : kTileK * stat_cols * dtype_bytes(job.stationary.hbm.dtype())) +
      (mov_resident ? 0 : kTileK * mov_cols * dtype_bytes(job.moving.hbm.dtype()));
  const int64_t slot_bytes =
      ((stat_resident ? 0 : stat_cols) + (mov_resident ? 0 : mov_cols)) * es;
  int64_t prefetch = 0;
  if (step_hbm_bytes > 0) {
    prefetch = std::clamp<int64_t>(ceil_div(kPrefetchBytes, step_hbm_bytes), 2, kMaxPrefetchSteps);
    prefetch = std::max<int64_t>(1, std::min(prefetch, kStepRingBytes / slot_bytes - 2));
  }
  const int64_t ring = prefetch + 2;
  plan.m_tiles = m_tiles;
  plan.k_tiles = k_tiles;
  plan.n_tiles = n_tiles;
  plan.moving_streams = n_outer;
  plan.other_resident = stat_resident || mov_resident;
  plan.block_m_tiles = bm;
  plan.block_n_tiles = bn;
  plan.prefetch_steps = prefetch;
  const int64_t sbuf_before = core.sbuf_largest_free();

  View stat_res, mov_res;
  std::vector<View> stat_ring, mov_ring;
  if (stat_resident) {
    stat_res = pool.sbuf(kTileK, {k_tiles * M}, dt, job.name + ".stationary");
  } else {
    for (int64_t i = 0; i < ring; ++i)
      stat_ring.push_back(pool.sbuf(kTileK, {stat_cols}, dt, job.name + ".stationary_step"));
  }
  if (mov_resident) {
    mov_res = pool.sbuf(kTileK, {k_tiles * N}, dt, job.name + ".moving");
  } else {
    for (int64_t i = 0; i < ring; ++i)
      mov_ring.push_back(pool.sbuf(kTileK, {mov_cols}, dt, job.name + ".moving_step"));
  }

  // Output tiles. Accumulating: the previous values are loaded `old_ahead` blocks early into
  // the tile the evacuation adds into and stores from (two spare blocks of tiles, as above).
  // Otherwise: staging tiles for the cast from PSUM, two blocks' worth.
  const DType out_dt = job.out.dtype();
  const int64_t tiles_per_block = bm * bn;
  int64_t old_ahead = 0;
  if (job.accumulate) {
    const int64_t block_bytes = tiles_per_block * kTileM * kTileN * dtype_bytes(out_dt);
    old_ahead = std::clamp<int64_t>(ceil_div(kPrefetchBytes / 2, block_bytes), 1,
                                    kMaxOldBlocksAhead);
  }
  const int64_t out_sets = job.accumulate ? old_ahead + 2 : 2;
  std::vector<View> out_tiles;
  for (int64_t i = 0; i < out_sets * tiles_per_block; ++i)
    out_tiles.push_back(pool.sbuf(kTileM, {kTileN}, out_dt, job.name + ".out"));
  std::vector<View> widened;  // fp32 PSUM copies for the ScalarE + GpSimd accumulate path
  if (job.accumulate) {
    for (int i = 0; i < 2; ++i)
      widened.push_back(pool.sbuf(kTileM, {kTileN}, DType::kF32, job.name + ".widened"));
  }
  std::vector<View> psum;
  for (int64_t i = 0; i < psum_slots; ++i)
    psum.push_back(pool.psum(kTileM, {kTileN}, DType::kF32, job.name + ".acc"));

  // Bias: each block's bias columns as matmul rows. In fp32 one row; in bf16 two, hi = bf16(b)
  // and lo = bf16(b - hi), against a ones row each, so the sum keeps ~16 bits of the fp32 bias.
  const int64_t bias_rows = dt == DType::kF32 ? 1 : 2;
  const int64_t bias_sets = has_bias ? prefetch / k_tiles + 3 : 0;
  std::vector<View> bias_tiles, bias_wide, bias_lo;
  View ones_rows;
  if (has_bias) {
    for (int64_t i = 0; i < bias_sets; ++i)
      bias_tiles.push_back(pool.sbuf(bias_rows, {mov_cols}, dt, job.name + ".bias"));
    if (bias_rows == 2) {
      for (int i = 0; i < 2; ++i) {
        bias_wide.push_back(pool.sbuf(1, {mov_cols}, DType::kF32, job.name + ".bias_f32"));
        bias_lo.push_back(pool.sbuf(1, {mov_cols}, dt, job.name + ".bias_lo"));
      }
    }
    ones_rows = pool.sbuf(bias_rows, {kTileM}, dt, job.name + ".ones_rows");
    core.memset(ones_rows, 1.0f, Engine::kGpSimd);
  }
  auto prepare_bias = [&](int64_t bi) {
    const Block& b = blocks[bi];
    const int64_t cols = n_cols(b);
    const View rows = bias_tiles[bi % bias_sets];
    const View src = job.bias.cols(b.n0 * kTileN, cols);
    if (bias_rows == 1) {
      dma.copy(rows.cols(0, cols), src);
      return;
    }
    const View wide = bias_wide[bi % 2].cols(0, cols);
    const View lo = bias_lo[bi % 2].cols(0, cols);
    const View hi = rows.rows(0, 1).cols(0, cols);
    dma.copy(wide, src);
    core.tensor_copy(hi, wide, Engine::kGpSimd);
    core.tensor_tensor(lo, wide, AluOp::kSubtract, hi, Engine::kGpSimd);
    dma.copy(rows.rows(1, 1).cols(0, cols), lo);  // engines cannot start at partition 1
  };

  // Column sums of the stationary operand (dbias): TensorE sums its K partitions against a
  // ones column, into one PSUM column per m tile; the running totals live in an SBUF column per
  // m tile, starting from the previous values (from zeros without accumulate), and go back to HBM
  // once at the end.
  View sums_psum, sums_acc, ones_col;
  const int64_t full_m_tiles = M / kTileM;
  const int64_t m_tail = M - full_m_tiles * kTileM;
  // [128, tiles] SBUF columns <-> HBM elements t * 128 + p (a DMA transpose of a short row).
  auto sums_transfer = [&](bool to_hbm) {
    if (full_m_tiles > 0) {
      const View hbm =
          job.column_sums.pattern(0, Dim{kTileM, 1}, {Dim{full_m_tiles, kTileM}});
      const View sb = sums_acc.cols(0, full_m_tiles);
      to_hbm ? dma.copy(hbm, sb) : dma.copy(sb, hbm);
    }
    if (m_tail > 0) {
      const View hbm = job.column_sums.pattern(full_m_tiles * kTileM, Dim{m_tail, 1}, {Dim{1, 1}});
      const View sb = sums_acc.rows(0, m_tail).cols(full_m_tiles, 1);
      to_hbm ? dma.copy(hbm, sb) : dma.copy(sb, hbm);
    }
  };
  if (has_sums) {
    sums_psum = pool.psum(kTileM, {kTileN}, DType::kF32, job.name + ".sums_acc");
    sums_acc = pool.sbuf(kTileM, {m_tiles}, DType::kF32, job.name + ".sums");
    ones_col = pool.sbuf(kTileK, {1}, dt, job.name + ".ones_col");
    core.memset(ones_col, 1.0f, Engine::kGpSimd);
    if (job.accumulate) {
      sums_transfer(false);
    } else {
      core.memset(sums_acc, 0.0f, Engine::kGpSimd);
    }
  }

  plan.sbuf_bytes_per_partition = sbuf_before - core.sbuf_largest_free();

  // Resident operands first, k-tile by k-tile, so the first matmuls can start early.
  for (int64_t kt = 0; kt < k_tiles; ++kt) {
    const int64_t ks = k_size(kt);
    if (stat_resident)
      dma.copy(stat_res.rows(0, ks).cols(kt * M, M), job.stationary.tile(kt * kTileK, ks, 0, M));
    if (mov_resident)
      dma.copy(mov_res.rows(0, ks).cols(kt * N, N), job.moving.tile(kt * kTileK, ks, 0, N));
  }
  auto issue_step = [&](int64_t s) {
    const int64_t bi = s / k_tiles;
    const int64_t kt = s % k_tiles;
    const Block& b = blocks[bi];
    const int64_t ks = k_size(kt);
    if (kt == 0 && has_bias) prepare_bias(bi);
    if (!stat_resident) {
      dma.copy(stat_ring[s % ring].rows(0, ks).cols(0, m_cols(b)),
               job.stationary.tile(kt * kTileK, ks, b.m0 * kTileM, m_cols(b)));
    }
    if (!mov_resident) {
      dma.copy(mov_ring[s % ring].rows(0, ks).cols(0, n_cols(b)),
               job.moving.tile(kt * kTileK, ks, b.n0 * kTileN, n_cols(b)));
    }
  };
  auto out_tile = [&](int64_t bi, int64_t i, int64_t ms, int64_t ns) {
    return out_tiles[(bi % out_sets) * tiles_per_block + i].rows(0, ms).cols(0, ns);
  };
  auto issue_old = [&](int64_t bi) {
    const Block& b = blocks[bi];
    for (int64_t i = 0; i < b.mc * b.nc; ++i) {
      const int64_t mt = b.m0 + i / b.nc;
      const int64_t nt = b.n0 + i % b.nc;
      dma.copy(out_tile(bi, i, m_size(mt), n_size(nt)),
               job.out.rows(mt * kTileM, m_size(mt)).cols(nt * kTileN, n_size(nt)));
    }
  };
  auto stationary_tile = [&](int64_t s, const Block& b, int64_t kt, int64_t mt) {
    const View v = stat_resident ? stat_res.cols(kt * M + mt * kTileM, m_size(mt))
                                 : stat_ring[s % ring].cols((mt - b.m0) * kTileM, m_size(mt));
    return v.rows(0, k_size(kt));
  };
  auto moving_tile = [&](int64_t s, const Block& b, int64_t kt, int64_t nt) {
    const View v = mov_resident ? mov_res.cols(kt * N + nt * kTileN, n_size(nt))
                                : mov_ring[s % ring].cols((nt - b.n0) * kTileN, n_size(nt));
    return v.rows(0, k_size(kt));
  };

  for (int64_t bi = 0; bi < std::min(old_ahead, num_blocks); ++bi) issue_old(bi);
  for (int64_t s = 0; s < std::min(prefetch, steps); ++s) issue_step(s);
  int64_t tile_counter = 0;  // output tiles started so far: picks PSUM slots and engines
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t bi = s / k_tiles;
    const int64_t kt = s % k_tiles;
    const Block& b = blocks[bi];
    const bool first = kt == 0;
    const bool last = kt == k_tiles - 1;
    if (s + prefetch < steps) issue_step(s + prefetch);
    if (first && job.accumulate && bi + old_ahead < num_blocks) issue_old(bi + old_ahead);
    const int64_t block_tiles = b.mc * b.nc;
    for (int64_t i = 0; i < block_tiles; ++i) {
      const int64_t mt = b.m0 + i / b.nc;
      const int64_t nt = b.n0 + i % b.nc;
      const int64_t ms = m_size(mt);
      const int64_t ns = n_size(nt);
      const View acc = psum[(tile_counter + i) % psum_slots].rows(0, ms).cols(0, ns);
      core.matmul(acc, stationary_tile(s, b, kt, mt), moving_tile(s, b, kt, nt), first,
                  last && !has_bias);
      // The bias rows close the group: their preparation has the whole K loop to finish.
      if (last && has_bias) {
        const View rows = bias_tiles[bi % bias_sets].cols((nt - b.n0) * kTileN, ns);
        core.matmul(acc, ones_rows.cols(0, ms), rows, false, true);
      }
    }
    if (has_sums && b.n0 == 0) {
      for (int64_t mt = b.m0; mt < b.m0 + b.mc; ++mt) {
        const View col = sums_psum.rows(0, m_size(mt)).cols(mt % kTileN, 1);
        core.matmul(col, stationary_tile(s, b, kt, mt), ones_col.rows(0, k_size(kt)), first,
                    last);
      }
    }
    if (!last) continue;

    // Drain the block: PSUM -> SBUF (adding the previous values when accumulating) -> HBM,
    // alternating between VectorE and ScalarE (+ GpSimd for the add, as it cannot read PSUM).
    for (int64_t i = 0; i < block_tiles; ++i, ++tile_counter) {
      const int64_t mt = b.m0 + i / b.nc;
      const int64_t nt = b.n0 + i % b.nc;
      const int64_t ms = m_size(mt);
      const int64_t ns = n_size(nt);
      const View acc = psum[tile_counter % psum_slots].rows(0, ms).cols(0, ns);
      const View staged = out_tile(bi, i, ms, ns);
      const bool vector = tile_counter % 2 == 0;
      if (!job.accumulate) {
        if (vector) {
          core.tensor_copy(staged, acc, Engine::kVector);
        } else {
          core.activation(staged, Activation::kIdentity, acc);
        }
      } else if (vector) {
        core.tensor_tensor(staged, acc, AluOp::kAdd, staged, Engine::kVector);
      } else {
        const View wide = widened[(tile_counter / 2) % 2].rows(0, ms).cols(0, ns);
        core.activation(wide, Activation::kIdentity, acc);
        core.tensor_tensor(staged, wide, AluOp::kAdd, staged, Engine::kGpSimd);
      }
      dma.copy(job.out.rows(mt * kTileM, ms).cols(nt * kTileN, ns), staged, kStorePieceBytes);
    }
    if (has_sums && b.n0 == 0) {
      for (int64_t mt = b.m0; mt < b.m0 + b.mc; ++mt) {
        const View total = sums_acc.rows(0, m_size(mt)).cols(mt, 1);
        core.tensor_tensor(total, sums_psum.rows(0, m_size(mt)).cols(mt % kTileN, 1), AluOp::kAdd,
                           total, Engine::kVector);
      }
    }
  }
  if (has_sums) sums_transfer(true);
}

// ---- Shape checks.

void require_matrix(const std::string& kernel, const char* name, const View& v) {
  require(v.allocation() >= 0, "{}: {} is missing (an empty View)", kernel, name);
  require(v.memory() == Memory::kHbm && v.free_dims() == 1,
          "{}: {} must be a 2-D HBM tensor [rows, cols], got {}", kernel, name, v.describe());
  require(v.dtype() != DType::kI32, "{}: {} must be a float tensor, got int32", kernel, name);
}

void check_job(const GemmJob& job) {
  const std::string& k = job.name;
  require(job.compute == DType::kF32 || job.compute == DType::kBF16 ||
              job.compute == DType::kF16 || is_fp8(job.compute),
          "{}: compute dtype must be a float type the PE array takes, got {}", k,
          nki_dtype_name(job.compute));
  require_matrix(k, "the stationary operand", job.stationary.hbm);
  require_matrix(k, "the moving operand", job.moving.hbm);
  require_matrix(k, "out", job.out);
  const int64_t K = job.stationary.k(), M = job.stationary.x(), N = job.moving.x();
  require(job.moving.k() == K, "{}: the stationary operand has K = {} but the moving one {}", k, K,
          job.moving.k());
  require(job.out.partitions() == M && job.out.free_size() == N, "{}: out is {}x{}, expected {}x{}",
          k, job.out.partitions(), job.out.free_size(), M, N);
  if (job.bias.allocation() >= 0) {
    require_matrix(k, "bias", job.bias);
    require(job.bias.partitions() == 1 && job.bias.free_size() == N,
            "{}: bias is {}x{}, expected 1x{}", k, job.bias.partitions(), job.bias.free_size(), N);
  }
  if (job.column_sums.allocation() >= 0) {
    require_matrix(k, "column_sums", job.column_sums);
    require(job.column_sums.partitions() == 1 && job.column_sums.free_size() == M,
            "{}: column_sums is {}x{}, expected 1x{}", k, job.column_sums.partitions(),
            job.column_sums.free_size(), M);
  }
}

}  // namespace

GemmPlan gemm(NeuronCore& core, const GemmJob& job) {
  check_job(job);
  GemmPlan plan;
  run_gemm(core, job, plan);
  return plan;
}

GemmPlan gemm(NeuronCore& core, const View& c, const View& a, const View& b,
              const GemmOptions& options) {
  require(a.memory() == Memory::kHbm && b.memory() == Memory::kHbm && c.memory() == Memory::kHbm,
          "gemm: A, B and C must be HBM tensors");
  require(a.free_dims() == 1 && b.free_dims() == 1 && c.free_dims() == 1,
          "gemm: A, B and C must be 2-D views");
  const int64_t M = a.partitions(), K = a.free_size(), N = b.free_size();
  require(b.partitions() == K, "gemm: A is {}x{} but B has {} rows (expected {})", M, K,
          b.partitions(), K);
  require(c.partitions() == M && c.free_size() == N, "gemm: C is {}x{}, expected {}x{}",
          c.partitions(), c.free_size(), M, N);
  KernelScope scope(core, "gemm");
  GemmJob job;
  job.stationary = {a, /*transposed=*/true};  // A^T [K, M]
  job.moving = {b, /*transposed=*/false};     // B [K, N]
  job.out = c;
  job.compute = options.compute_dtype;
  return gemm(core, job);
}

}  // namespace switchyard::neuron
