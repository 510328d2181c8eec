#include "backend/neuron/optimizer_kernel.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "backend/neuron/fill_kernel.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

// sum_of_squares: 16 KiB of fp32 per partition per block (2 MiB per block), three blocks in
// flight; one partial-sum column per block, folded into a running column every kMaxPartials.
constexpr int64_t kSquaresCols = 4096;
constexpr int kSquaresBuffers = 3;
constexpr int64_t kMaxPartials = 8;

// adamw_update: three sets of five [128, F] fp32 tiles (p, g, m, v and a temporary), so the loads
// of block b + 2 run while block b computes and block b - 1 drains. F = 1024 (512 KiB per tensor
// per block): in simulation at N = 16.8M it reached 358 GB/s of the trn2 core's 362.5, against
// 335 with F = 4096 (longer pipeline start and drain) at about the same host time.
constexpr int kAdamWSets = 3;
constexpr int kAdamWTiles = 5;
constexpr int64_t kAdamWMaxCols = 1024;
constexpr int64_t kAdamWColsStep = 256;
constexpr int64_t kAllocationSlack = 64 * 32;  // alignment of every tile, generously

void require_fp32(const View& view, const char* kernel, const char* name) {
  require(view.dtype() == DType::kF32, "{}: {} must be fp32, got {} ({})", kernel, name,
          nki_dtype_name(view.dtype()), view.describe());
}

}  // namespace

namespace {

// The sum of function(x[i]) over x (kSquare or kIdentity), as sum_of_squares describes.
double reduce_sum(NeuronCore& core, const View& x, Activation function, const char* kernel) {
  const int64_t n = contiguous_elements(x, kernel, "x");
  require(is_float(x.dtype()), "{}: x must be a float tensor, got {}", kernel,
          nki_dtype_name(x.dtype()));
  const std::vector<FlatBlock> blocks = contiguous_blocks(n, kSquaresCols);
  if (blocks.empty()) return 0.0;
  const int64_t block_count = static_cast<int64_t>(blocks.size());
  const int64_t partial_cols = std::min(block_count, kMaxPartials);

  KernelScope scope(core, kernel);
  TilePool pool(core);
  std::vector<View> buf;
  for (int i = 0; i < kSquaresBuffers; ++i)
    buf.push_back(pool.sbuf(kPartitions, {kSquaresCols}, DType::kF32,
                            std::string(kernel) + ".x" + std::to_string(i)));
  // Tail blocks cover fewer partitions; zeros elsewhere keep their columns summable.
  const View partial =
      pool.sbuf(kPartitions, {partial_cols}, DType::kF32, std::string(kernel) + ".partial");
  const View running = pool.sbuf(kPartitions, {1}, DType::kF32, std::string(kernel) + ".running");
  const View folded = pool.sbuf(kPartitions, {1}, DType::kF32, std::string(kernel) + ".folded");
  const View ones = pool.sbuf(kPartitions, {1}, DType::kF32, std::string(kernel) + ".ones");
  const View total_psum = pool.psum(1, {1}, DType::kF32, std::string(kernel) + ".total_psum");
  const View total = pool.sbuf(1, {1}, DType::kF32, std::string(kernel) + ".total");
  core.memset(partial, 0.0f, Engine::kGpSimd);
  core.memset(running, 0.0f, Engine::kGpSimd);
  core.memset(ones, 1.0f, Engine::kGpSimd);

  DmaSpreader loads(core, 0, core.config().dma_queues);
  auto tile = [&](int64_t b) {
    const FlatBlock& block = blocks[b];
    return buf[b % kSquaresBuffers].rows(0, block.rows).cols(0, block.cols);
  };
  auto load = [&](int64_t b) { loads.copy(tile(b), block_view(x, blocks[b])); };
  // Adds the per-block columns into `running` and clears them for the next round.
  auto fold = [&] {
    core.tensor_reduce(folded, AluOp::kAdd, partial);
    core.tensor_tensor(running, running, AluOp::kAdd, folded);
    core.memset(partial, 0.0f);
  };

  for (int64_t b = 0; b < std::min<int64_t>(kSquaresBuffers - 1, block_count); ++b) load(b);
  for (int64_t b = 0; b < block_count; ++b) {
    if (b + kSquaresBuffers - 1 < block_count) load(b + kSquaresBuffers - 1);
    const int64_t col = b % partial_cols;
    if (col == 0 && b > 0) fold();
    const View t = tile(b);
    // The function's values themselves are not needed: written back over the block in place.
    core.activation_reduce(t, function, t, partial.rows(0, blocks[b].rows).cols(col, 1));
  }
  fold();
  core.matmul(total_psum, ones, running, true, true);
  core.tensor_copy(total, total_psum);
  const View result = core.hbm_alloc({1}, DType::kF32, std::string(kernel) + ".result");
  core.dma_copy(result, total, loads.next_queue());
  const float value = core.read(result)[0];
  core.release(result);
  return static_cast<double>(value);
}

}  // namespace

double sum_of_squares(NeuronCore& core, const View& x) {
  return reduce_sum(core, x, Activation::kSquare, "sum_of_squares");
}

double sum_of_elements(NeuronCore& core, const View& x) {
  return reduce_sum(core, x, Activation::kIdentity, "sum_of_elements");
}

void adamw_update(NeuronCore& core, const View& params, const View& grads, const View& m,
                  const View& v, int64_t N, const AdamWStep& step, const View& params_copy) {
  const char* kernel = "adamw_update";
  require(N >= 0, "{}: N must be >= 0, got {}", kernel, N);
  const std::array<const View*, 4> tensors = {&params, &grads, &m, &v};
  const std::array<const char*, 4> names = {"params", "grads", "m", "v"};
  for (size_t i = 0; i < tensors.size(); ++i) {
    const int64_t n = contiguous_elements(*tensors[i], kernel, names[i]);
    require_fp32(*tensors[i], kernel, names[i]);
    require(n == N, "{}: {} has {} elements, expected N = {}", kernel, names[i], n, N);
  }
  if (present(params_copy)) {
    const int64_t n = contiguous_elements(params_copy, kernel, "params_copy");
    require(is_float(params_copy.dtype()) && n == N,
            "{}: params_copy must be a float tensor of N = {} elements, got {}", kernel, N,
            params_copy.describe());
  }
  require(step.step >= 1, "{}: step must be >= 1 (1-based), got {}", kernel, step.step);
  require(step.beta1 >= 0 && step.beta1 < 1 && step.beta2 >= 0 && step.beta2 < 1,
          "{}: betas must be in [0, 1), got {} and {}", kernel, step.beta1, step.beta2);
  if (N == 0) return;

  // The update of cpu::adamw_update, g = grads * grad_scale:
  //   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
  //   p = p (1 - lr wd) - step_size m / (sqrt(v) / sqrt(1 - b2^t) + eps)
  // folded into per-instruction constants (computed in double, like the reference).
  const double lr = step.learning_rate;
  const double b1 = step.beta1;
  const double b2 = step.beta2;
  const double gs = step.grad_scale;
  const float m_scale = static_cast<float>((1.0 - b1) * gs);           // (1 - b1) g
  const float v_scale = static_cast<float>(std::sqrt(1.0 - b2) * gs);  // (v_scale grads)^2
  const float v_correction = static_cast<float>(1.0 / (1.0 - std::pow(b2, step.step)));
  const double step_size = lr / (1.0 - std::pow(b1, step.step));
  // m / ((s + eps) / step_size) = step_size m / (s + eps); lr = 0 gives inf here and 0 updates.
  const float inv_step_size = static_cast<float>(1.0 / step_size);
  const float decay = static_cast<float>(1.0 - lr * step.weight_decay);

  KernelScope scope(core, kernel);
  TilePool pool(core);
  const int64_t per_col = kAdamWSets * kAdamWTiles * dtype_bytes(DType::kF32);
  int64_t cols = (core.sbuf_largest_free() - kAllocationSlack) / per_col;
  cols = std::min(kAdamWMaxCols, cols / kAdamWColsStep * kAdamWColsStep);
  require(cols >= kAdamWColsStep, "{}: needs {} bytes of SBUF per partition, {} are free", kernel,
          kAdamWColsStep * per_col + kAllocationSlack, core.sbuf_largest_free());
  const std::vector<FlatBlock> blocks = contiguous_blocks(N, cols);
  const int64_t block_count = static_cast<int64_t>(blocks.size());

  // tiles[set][0..4] = p, g, m, v, temporary.
  std::vector<std::array<View, kAdamWTiles>> tiles(kAdamWSets);
  const char* tile_names[kAdamWTiles] = {"p", "g", "m", "v", "t"};
  for (int s = 0; s < kAdamWSets; ++s)
    for (int i = 0; i < kAdamWTiles; ++i)
      tiles[s][i] =
          pool.sbuf(kPartitions, {cols}, DType::kF32, fmt::format("adamw.{}{}", tile_names[i], s));

  // Loads (16 bytes per element) and stores (12) on separate queues in that proportion, so a
  // store waiting for its block's arithmetic never holds up a later block's loads.
  const int queues = core.config().dma_queues;
  const int load_queues = queues > 1 ? std::max(1, queues * 4 / 7) : 1;
  DmaSpreader loads(core, 0, load_queues);
  DmaSpreader stores(core, queues > 1 ? load_queues : 0, queues > 1 ? queues - load_queues : 1);

  auto view_of = [&](int64_t b, int i) {
    return tiles[b % kAdamWSets][i].rows(0, blocks[b].rows).cols(0, blocks[b].cols);
  };
  auto load = [&](int64_t b) {
    for (int i = 0; i < 4; ++i) loads.copy(view_of(b, i), block_view(*tensors[i], blocks[b]));
  };

  for (int64_t b = 0; b < std::min<int64_t>(kAdamWSets - 1, block_count); ++b) load(b);
  for (int64_t b = 0; b < block_count; ++b) {
    if (b + kAdamWSets - 1 < block_count) load(b + kAdamWSets - 1);
    const View p = view_of(b, 0);
    const View g = view_of(b, 1);
    const View mt = view_of(b, 2);
    const View vt = view_of(b, 3);
    const View t = view_of(b, 4);
    // Second moment first on ScalarE: t = (1 - b2) g^2, then g = (1 - b1) g in place.
    core.activation(t, Activation::kSquare, g, v_scale);
    core.activation(g, Activation::kIdentity, g, m_scale);
    // Moments on VectorE (tensor_scalar runs in fast mode), stored as soon as they are final.
    core.tensor_scalar(mt, mt, AluOp::kMultiply, step.beta1);
    core.tensor_tensor(mt, mt, AluOp::kAdd, g);
    stores.copy(block_view(m, blocks[b]), mt);
    core.tensor_scalar(vt, vt, AluOp::kMultiply, step.beta2);
    core.tensor_tensor(vt, vt, AluOp::kAdd, t);
    stores.copy(block_view(v, blocks[b]), vt);
    // t = sqrt(v / (1 - b2^t)) (ScalarE), then (t + eps) / step_size (VectorE).
    core.activation(t, Activation::kSqrt, vt, v_correction);
    core.tensor_scalar(t, t, AluOp::kAdd, step.epsilon, AluOp::kMultiply, inv_step_size);
    // The division and the parameter update on GpSimd; the decay on ScalarE.
    core.tensor_tensor(t, mt, AluOp::kDivide, t, Engine::kGpSimd);
    if (decay != 1.0f) core.activation(p, Activation::kIdentity, p, decay);
    core.tensor_tensor(p, p, AluOp::kSubtract, t, Engine::kGpSimd);
    stores.copy(block_view(params, blocks[b]), p);
    // The copy products read (bf16), rounded from the same tile on its way out.
    if (present(params_copy)) stores.copy(block_view(params_copy, blocks[b]), p);
  }
}

}  // namespace switchyard::backend::neuron
