#include "neuron/gemm_kernel.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "neuron/tile_pool.h"

namespace switchyard::neuron {

namespace {

constexpr int64_t kTileK = 128;  // partitions of the PE array
constexpr int64_t kTileM = 128;  // PE array columns
constexpr int64_t kTileN = 512;  // one PSUM bank of fp32
constexpr int kPsumBuffers = 4;  // accumulate in one bank while earlier ones drain
constexpr int kOutputBuffers = 4;
constexpr int64_t kMinDmaBytes = 32 * 1024;  // smaller transfers waste queue time
constexpr int64_t kMaxLoadPieces = 4;         // B tiles split over at most 4 queues

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

GemmPlan gemm(NeuronCore& core, const View& c, const View& a, const View& b,
              const GemmOptions& options) {
  require(a.memory() == Memory::kHbm && b.memory() == Memory::kHbm && c.memory() == Memory::kHbm,
          "gemm: A, B and C must be HBM tensors");
  require(a.free_dims() == 1 && b.free_dims() == 1 && c.free_dims() == 1,
          "gemm: A, B and C must be 2-D views");
  const int64_t M = a.partitions();
  const int64_t K = a.free_size();
  const int64_t N = b.free_size();
  require(b.partitions() == K, "gemm: A is {}x{} but B has {} rows (expected {})", M, K,
          b.partitions(), K);
  require(c.partitions() == M && c.free_size() == N, "gemm: C is {}x{}, expected {}x{}",
          c.partitions(), c.free_size(), M, N);
  const DType dt = options.compute_dtype;
  require(dt != DType::kI32, "gemm: compute dtype must be a float type");

  KernelScope scope(core, "gemm");
  TilePool pool(core);
  const CoreConfig& cfg = core.config();
  // Loads and stores on separate queues, so a store waiting for its tile never holds up a load.
  // Enough store queues that storing an output tile takes less time than computing the next
  // one (k_tiles matmuls of 512 columns), at least 2 and at most half the queues.
  const int64_t k_tiles = (K + kTileK - 1) / kTileK;
  const double tile_compute_ns = static_cast<double>(k_tiles) * kTileN / cfg.tensor_ghz;
  const double tile_store_ns =
      static_cast<double>(kTileM * kTileN * dtype_bytes(c.dtype())) / cfg.dma_queue_gbps;
  int store_queues = static_cast<int>(std::ceil(1.5 * tile_store_ns / tile_compute_ns));
  store_queues = std::clamp(store_queues, 2, std::max(1, cfg.dma_queues / 2));
  if (cfg.dma_queues < 2) store_queues = cfg.dma_queues;
  const int load_queues = cfg.dma_queues > 1 ? cfg.dma_queues - store_queues : 1;
  const int first_store_queue = cfg.dma_queues > 1 ? load_queues : 0;

  GemmPlan plan;
  plan.m_tiles = ceil_div(M, kTileM);
  plan.k_tiles = ceil_div(K, kTileK);
  plan.n_tiles = ceil_div(N, kTileN);
  const int64_t esize = dtype_bytes(dt);
  const int64_t b_panel_bytes = plan.k_tiles * kTileN * esize;
  const int64_t a_tile_row_bytes = plan.k_tiles * kTileM * esize;  // per M tile in a block
  const int64_t out_bytes = kOutputBuffers * kTileN * dtype_bytes(c.dtype());
  // Per-allocation alignment slack.
  const int64_t slack = 64 * 8;
  const int64_t free = core.sbuf_largest_free();
  auto needed = [&](int64_t block, int a_buffers) {
    return a_buffers * block * a_tile_row_bytes + 2 * b_panel_bytes + out_bytes + slack;
  };
  for (int a_buffers : {2, 1}) {
    for (int64_t block = plan.m_tiles; block >= 1; --block) {
      if (needed(block, a_buffers) <= free) {
        plan.m_block_tiles = block;
        plan.a_buffers = a_buffers;
        break;
      }
    }
    if (plan.m_block_tiles > 0) break;
  }
  if (plan.m_block_tiles == 0) {
    fail(
        "gemm: K = {} does not fit: one M tile of A^T and two B panels need {} bytes per SBUF "
        "partition, {} are free",
        K, needed(1, 1), free);
  }
  // Several A blocks only pay off when each is fully used; even out the block sizes.
  const int64_t blocks = ceil_div(plan.m_tiles, plan.m_block_tiles);
  plan.m_block_tiles = ceil_div(plan.m_tiles, blocks);
  if (blocks == 1) plan.a_buffers = 1;
  plan.sbuf_bytes_per_partition = needed(plan.m_block_tiles, plan.a_buffers) - slack;

  const int64_t block_cols = plan.m_block_tiles * kTileM;
  std::vector<View> a_buf;
  for (int i = 0; i < plan.a_buffers; ++i)
    a_buf.push_back(
        pool.sbuf(kTileK, {plan.k_tiles * block_cols}, dt, "gemm.aT" + std::to_string(i)));
  std::vector<View> b_buf;
  for (int i = 0; i < 2; ++i)
    b_buf.push_back(pool.sbuf(kTileK, {plan.k_tiles * kTileN}, dt, "gemm.b" + std::to_string(i)));
  std::vector<View> psum;
  for (int i = 0; i < kPsumBuffers; ++i)
    psum.push_back(pool.psum(kTileM, {kTileN}, DType::kF32, "gemm.acc" + std::to_string(i)));
  std::vector<View> out;
  for (int i = 0; i < kOutputBuffers; ++i)
    out.push_back(pool.sbuf(kTileM, {kTileN}, c.dtype(), "gemm.c" + std::to_string(i)));

  int next_load = 0;
  int next_store = 0;
  auto load_queue = [&] { return next_load++ % load_queues; };
  auto store_queue = [&] { return first_store_queue + next_store++ % store_queues; };
  auto k_size = [&](int64_t kt) { return std::min(kTileK, K - kt * kTileK); };
  auto m_size = [&](int64_t mt) { return std::min(kTileM, M - mt * kTileM); };
  auto n_size = [&](int64_t nt) { return std::min(kTileN, N - nt * kTileN); };
  auto block_tiles = [&](int64_t block) {
    return std::min(plan.m_block_tiles, plan.m_tiles - block * plan.m_block_tiles);
  };
  // A^T tile (kt, local m tile j) of buffer `buf`.
  auto a_tile = [&](int buf, int64_t kt, int64_t j, int64_t mt) {
    return a_buf[buf].rows(0, k_size(kt)).cols(kt * block_cols + j * kTileM, m_size(mt));
  };
  auto b_tile = [&](int buf, int64_t kt, int64_t nt) {
    return b_buf[buf].rows(0, k_size(kt)).cols(kt * kTileN, n_size(nt));
  };
  auto load_a_block = [&](int64_t block) {
    int buf = static_cast<int>(block % plan.a_buffers);
    for (int64_t j = 0; j < block_tiles(block); ++j) {
      int64_t mt = block * plan.m_block_tiles + j;
      for (int64_t kt = 0; kt < plan.k_tiles; ++kt) {
        View src = a.rows(mt * kTileM, m_size(mt)).cols(kt * kTileK, k_size(kt)).transposed();
        core.dma_copy(a_tile(buf, kt, j, mt), src, load_queue());
      }
    }
  };
  auto load_b_panel = [&](int64_t step, int64_t nt) {
    int buf = static_cast<int>(step % 2);
    for (int64_t kt = 0; kt < plan.k_tiles; ++kt) {
      const View src = b.rows(kt * kTileK, k_size(kt)).cols(nt * kTileN, n_size(nt));
      const View dst = b_tile(buf, kt, nt);
      // Spread each tile over several queues in pieces of at least 32 KiB: the first panel
      // arrives sooner, and no piece is small enough to waste queue time.
      const int64_t bytes = k_size(kt) * n_size(nt) * esize;
      const int64_t pieces = std::clamp<int64_t>(bytes / kMinDmaBytes, 1, kMaxLoadPieces);
      const int64_t rows_per_piece = (k_size(kt) + pieces - 1) / pieces;
      for (int64_t r = 0; r < k_size(kt); r += rows_per_piece) {
        const int64_t rows = std::min(rows_per_piece, k_size(kt) - r);
        core.dma_copy(dst.rows(r, rows), src.rows(r, rows), load_queue());
      }
    }
  };

  const int64_t steps = blocks * plan.n_tiles;
  int64_t output_tile = 0;
  load_b_panel(0, 0);
  load_a_block(0);
  for (int64_t step = 0; step < steps; ++step) {
    const int64_t block = step / plan.n_tiles;
    const int64_t nt = step % plan.n_tiles;
    if (nt == 0 && block > 0 && plan.a_buffers == 1) load_a_block(block);
    // Prefetch the next B panel (and, at a block's start, the next A block) before computing.
    if (step + 1 < steps) load_b_panel(step + 1, (step + 1) % plan.n_tiles);
    if (nt == 0 && plan.a_buffers == 2 && block + 1 < blocks) load_a_block(block + 1);
    const int a_index = static_cast<int>(block % plan.a_buffers);
    const int bb = static_cast<int>(step % 2);
    for (int64_t j = 0; j < block_tiles(block); ++j) {
      const int64_t mt = block * plan.m_block_tiles + j;
      const View acc = psum[output_tile % kPsumBuffers].rows(0, m_size(mt)).cols(0, n_size(nt));
      for (int64_t kt = 0; kt < plan.k_tiles; ++kt) {
        core.matmul(acc, a_tile(a_index, kt, j, mt), b_tile(bb, kt, nt), kt == 0,
                    kt == plan.k_tiles - 1);
      }
      const View staged = out[output_tile % kOutputBuffers].rows(0, m_size(mt)).cols(0, n_size(nt));
      // Split PSUM evacuation between VectorE and ScalarE so neither becomes the bottleneck.
      if (output_tile % 2 == 0) {
        core.tensor_copy(staged, acc, Engine::kVector);
      } else {
        core.activation(staged, Activation::kIdentity, acc);
      }
      // Split the store by partitions over the store queues, in pieces of at least 32 KiB.
      const View dst = c.rows(mt * kTileM, m_size(mt)).cols(nt * kTileN, n_size(nt));
      const int64_t tile_bytes = m_size(mt) * n_size(nt) * dtype_bytes(c.dtype());
      const int64_t pieces = std::clamp<int64_t>(tile_bytes / kMinDmaBytes, 1, store_queues);
      const int64_t rows_per_piece = (m_size(mt) + pieces - 1) / pieces;
      for (int64_t r = 0; r < m_size(mt); r += rows_per_piece) {
        const int64_t rows = std::min(rows_per_piece, m_size(mt) - r);
        core.dma_copy(dst.rows(r, rows), staged.rows(r, rows), store_queue());
      }
      ++output_tile;
    }
  }

  return plan;  // the pool releases the tiles, the scope restores the kernel name
}

}  // namespace switchyard::neuron
