#include "backend/neuron/embedding_kernel.h"

#include <algorithm>
#include <array>
#include <string>

#include "backend/neuron/dma_queues.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

using ::switchyard::dtype_bytes;
using ::switchyard::nki_dtype_name;
using ::switchyard::is_float;

// Positions are computed in fp32 on GpSimd: exact while row numbers stay far below 2^24.
constexpr int64_t kMaxRows = int64_t{1} << 22;
// fp32 elements per partition of one batch-sum tile in encoder_backward (32 KiB).
constexpr int64_t kBatchSumFloats = 8192;

// An HBM float tensor [rows, cols] (rows >= min_rows when exact is false) with contiguous rows.
void require_matrix(const char* kernel, const char* name, const View& v, int64_t rows,
                    int64_t cols, bool exact = true) {
  const bool rows_ok = exact ? v.partitions() == rows : v.partitions() >= rows;
  require(v.memory() == Memory::kHbm && is_float(v.dtype()) && v.free_dims() == 1 &&
              v.free_dim(0).stride == 1 && rows_ok && v.free_size() == cols,
          "{}: {} must be an HBM float tensor [{}{}, {}] with contiguous rows, got {}", kernel,
          name, exact ? "" : ">= ", rows, cols, v.describe());
}

// Checks the shapes both passes share; returns C.
int64_t check_tokens(const char* kernel, const View& tokens, const View& rows_view, int B,
                     int T) {
  require(B >= 1 && T >= 1, "{}: B and T must be positive, got B = {}, T = {}", kernel, B, T);
  const int64_t n = static_cast<int64_t>(B) * T;
  require(n <= kMaxRows, "{}: B * T = {} exceeds the {} rows this kernel supports", kernel, n,
          kMaxRows);
  const bool contiguous = tokens.free_dims() == 1 && tokens.free_dim(0).stride == 1 &&
                          (tokens.partitions() == 1 || tokens.partition_stride() == tokens.free_size());
  require(tokens.memory() == Memory::kHbm && tokens.dtype() == DType::kI32 && contiguous &&
              tokens.elements() == n,
          "{}: tokens must be an HBM int32 tensor of B * T = {} contiguous ids, got {}", kernel, n,
          tokens.describe());
  require(rows_view.partitions() == n,
          "{}: expected B * T = {} rows of activations, got {}", kernel, n, rows_view.describe());
  return rows_view.free_size();
}

// All token ids into an int32 [128, tiles] tile: row t * 128 + p at partition p, column t, so
// each tile's gather or scatter indexes with one column. Two DMAs at most.
View load_token_ids(NeuronCore& core, TilePool& pool, const View& tokens, int64_t n, int queue) {
  const int64_t tiles = ceil_div(n, kPartitions);
  const View ids = pool.sbuf(std::min(n, kPartitions), {tiles}, DType::kI32, "encoder.token_ids");
  const int64_t full = n / kPartitions;
  const int64_t rest = n % kPartitions;
  if (full > 0)
    core.dma_copy(ids.cols(0, full), tokens.pattern(0, Dim{kPartitions, 1}, {Dim{full, kPartitions}}),
                  queue);
  if (rest > 0)
    core.dma_copy(ids.rows(0, rest).cols(full, 1),
                  tokens.pattern(full * kPartitions, Dim{rest, 1}, {Dim{1, 1}}), queue);
  return ids;
}

}  // namespace

void encoder_forward(NeuronCore& core, const View& out, const View& tokens, const View& wte,
                     const View& wpe, int B, int T, DType compute) {
  const char* kName = "encoder_forward";
  require_compute(kName, compute);
  const int64_t C = check_tokens(kName, tokens, out, B, T);
  const int64_t n = static_cast<int64_t>(B) * T;
  require_matrix(kName, "out", out, n, C);
  require(wte.partitions() >= 1, "{}: wte has no rows", kName);
  require_matrix(kName, "wte", wte, wte.partitions(), C);
  require_matrix(kName, "wpe", wpe, T, C, /*exact=*/false);

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.5);  // a gather per store
  const int64_t P = std::min(n, kPartitions);
  const int64_t tiles = ceil_div(n, kPartitions);
  auto rows_of = [&](int64_t t) { return std::min(kPartitions, n - t * kPartitions); };
  const View ids = load_token_ids(core, pool, tokens, n, queues.load());

  std::array<View, 2> emb, pos;
  // Every tile starts at a multiple of T when T divides 128: one position tile serves all.
  const bool shared_positions = kPartitions % T == 0 || tiles == 1;
  for (int i = 0; i < 2; ++i) {
    emb[i] = pool.sbuf(P, {C}, compute, "encoder.emb" + std::to_string(i));
    if (i == 0 || !shared_positions)
      pos[i] = pool.sbuf(P, {C}, compute, "encoder.pos" + std::to_string(i));
  }
  if (shared_positions) pos[1] = pos[0];
  const View row_centred = pool.sbuf(P, {1}, DType::kF32, "encoder.row_centred");
  const View row = pool.sbuf(P, {1}, DType::kF32, "encoder.row");
  const View batch = pool.sbuf(P, {1}, DType::kI32, "encoder.batch");
  const View pos_ids = pool.sbuf(P, {1}, DType::kI32, "encoder.pos_ids");

  // dst[i] = wpe[(r0 + i) % T] for i < r.
  auto build_positions = [&](const View& dst, int64_t r0, int64_t r) {
    const int64_t first = std::min(r, T - r0 % T);
    const int64_t runs = 1 + ceil_div(r - first, T);
    if (runs <= 2) {
      for (int64_t i = 0; i < r;) {
        const int64_t p = (r0 + i) % T;
        const int64_t len = std::min(r - i, T - p);
        split_copy(core, dst.rows(i, len), wpe.rows(p, len), queues.loads(),
                   [&] { return queues.load(); });
        i += len;
      }
      return;
    }
    // batch = round((r0 + p - (T - 1) / 2) / T) = floor((r0 + p) / T): the centred quotient is
    // within (T - 1) / (2T) < 1/2 of the integer, so rounding to int32 finds it exactly.
    const View rc = row_centred.rows(0, r), rw = row.rows(0, r), bt = batch.rows(0, r),
               ids_r = pos_ids.rows(0, r);
    core.iota(rc, static_cast<float>(r0) - 0.5f * static_cast<float>(T - 1), 1.0f, {0.0f});
    core.iota(rw, static_cast<float>(r0), 1.0f, {0.0f});
    core.tensor_scalar(bt, rc, AluOp::kDivide, static_cast<float>(T), AluOp::kBypass, 0.0f,
                       Engine::kGpSimd);
    core.tensor_scalar(ids_r, bt, AluOp::kMultiply, -static_cast<float>(T), AluOp::kAdd, rw,
                       Engine::kGpSimd);
    split_gather(core, dst, wpe, ids_r, queues.loads(), [&] { return queues.load(); });
  };

  auto gather_tile = [&](int64_t t) {
    const int64_t r = rows_of(t);
    split_gather(core, emb[t % 2].rows(0, r), wte, ids.rows(0, r).cols(t, 1), queues.loads(),
                 [&] { return queues.load(); });
    if (!shared_positions) build_positions(pos[t % 2].rows(0, r), t * kPartitions, r);
  };
  if (shared_positions) build_positions(pos[0], 0, P);
  gather_tile(0);
  for (int64_t t = 0; t < tiles; ++t) {
    if (t + 1 < tiles) gather_tile(t + 1);
    const int64_t r = rows_of(t);
    const View e = emb[t % 2].rows(0, r);
    core.tensor_tensor(e, e, AluOp::kAdd, pos[t % 2].rows(0, r),
                       t % 2 == 0 ? Engine::kVector : Engine::kGpSimd);
    split_copy(core, out.rows(t * kPartitions, r), e, queues.stores(),
               [&] { return queues.store(); });
  }
}

void encoder_backward(NeuronCore& core, const View& dwte, const View& dwpe, const View& dout,
                      const View& tokens, int B, int T, DType compute) {
  const char* kName = "encoder_backward";
  require_compute(kName, compute);
  const int64_t C = check_tokens(kName, tokens, dout, B, T);
  const int64_t n = static_cast<int64_t>(B) * T;
  require_matrix(kName, "dout", dout, n, C);
  require(dwte.partitions() >= 1, "{}: dwte has no rows", kName);
  require_matrix(kName, "dwte", dwte, dwte.partitions(), C);
  require_matrix(kName, "dwpe", dwpe, T, C, /*exact=*/false);

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.5);  // a scatter per load
  const int64_t P = std::min(n, kPartitions);
  const int64_t tiles = ceil_div(n, kPartitions);
  auto rows_of = [&](int64_t t) { return std::min(kPartitions, n - t * kPartitions); };
  const View ids = load_token_ids(core, pool, tokens, n, queues.load());

  // dwte: each row tile of dout is scattered onto its tokens' rows with accumulation; the DMA
  // adds rows in partition order, so a token repeated within a tile adds up. The scatters are
  // one per tile: they read and write the same table, so they run one after another whatever
  // queues they are on.
  std::array<View, 2> d;
  for (int i = 0; i < 2; ++i) d[i] = pool.sbuf(P, {C}, compute, "encoder.dout" + std::to_string(i));
  auto load_tile = [&](int64_t t) {
    split_copy(core, d[t % 2].rows(0, rows_of(t)), dout.rows(t * kPartitions, rows_of(t)),
               queues.loads(), [&] { return queues.load(); });
  };
  load_tile(0);
  for (int64_t t = 0; t < tiles; ++t) {
    if (t + 1 < tiles) load_tile(t + 1);
    const int64_t r = rows_of(t);
    core.dma_scatter(dwte, d[t % 2].rows(0, r), ids.rows(0, r).cols(t, 1), /*accumulate=*/true,
                     queues.store());
  }

  // dwpe: positions t0..t0+M on partitions, a chunk of batches side by side in the free axis.
  const int64_t row_stride = dout.partition_stride();
  const int64_t batch_chunk = std::clamp<int64_t>(kBatchSumFloats / C, 1, B);
  const int64_t M0 = std::min<int64_t>(T, kPartitions);
  std::array<View, 2> part;
  for (int i = 0; i < 2; ++i)
    part[i] = pool.sbuf(M0, {batch_chunk * C}, DType::kF32, "encoder.batch_rows" + std::to_string(i));
  const View acc = pool.sbuf(M0, {C}, DType::kF32, "encoder.dwpe");
  int64_t step = 0;
  for (int64_t t0 = 0; t0 < T; t0 += kPartitions) {
    const int64_t M = std::min<int64_t>(kPartitions, T - t0);
    const View a = acc.rows(0, M);
    core.dma_copy(a, dwpe.rows(t0, M), queues.load());
    for (int64_t b0 = 0; b0 < B; b0 += batch_chunk, ++step) {
      const int64_t nb = std::min<int64_t>(batch_chunk, B - b0);
      const View rows = part[step % 2].rows(0, M).cols(0, nb * C);
      const View src = dout.pattern((b0 * T + t0) * row_stride, Dim{M, row_stride},
                                    {Dim{nb, T * row_stride}, Dim{C, 1}});
      split_copy(core, rows, src, queues.loads(), [&] { return queues.load(); });
      // Halve the batches until one is left: [0, h) += [live - h, live).
      for (int64_t live = nb; live > 1;) {
        const int64_t h = live / 2;
        core.tensor_tensor(rows.cols(0, h * C), rows.cols(0, h * C), AluOp::kAdd,
                           rows.cols((live - h) * C, h * C));
        live -= h;
      }
      core.tensor_tensor(a, a, AluOp::kAdd, rows.cols(0, C), Engine::kGpSimd);
    }
    core.dma_copy(dwpe.rows(t0, M), a, queues.store());
  }
}

}  // namespace switchyard::backend::neuron
