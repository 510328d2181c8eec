#include "backend/neuron/rmsnorm_kernel.h"

#include <algorithm>
#include <array>
#include <string>

#include "backend/neuron/dma_queues.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

// The row tiles of an [N, C] operand: tile t holds rows t * 128 .. + rows(t).
struct RowTiles {
  int64_t N = 0, C = 0;
  int64_t partitions() const { return std::min(N, kPartitions); }
  int64_t count() const { return ceil_div(N, kPartitions); }
  int64_t rows(int64_t t) const { return std::min(kPartitions, N - t * kPartitions); }
};

RowTiles check_rows(const char* kernel, const View& inp) {
  const RowTiles tiles{inp.partitions(), inp.free_size()};
  require(tiles.N >= 1 && tiles.C >= 1, "{}: inp must have at least one row and column, got {}",
          kernel, inp.describe());
  require_dense_matrix(kernel, "inp", inp, tiles.N, tiles.C);
  return tiles;
}

}  // namespace

void rmsnorm_forward(NeuronCore& core, const View& out, const View& rstd, const View& inp,
                     const View& weight, DType compute, float epsilon) {
  const char* kName = "rmsnorm_forward";
  require_compute(kName, compute);
  const RowTiles tiles = check_rows(kName, inp);
  const int64_t N = tiles.N, C = tiles.C, P = tiles.partitions();
  require_dense_matrix(kName, "out", out, N, C);
  require_dense_row(kName, "rstd", rstd, N);
  require_dense_row(kName, "weight", weight, C);

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.5);  // one load per store
  auto load_queue = [&] { return queues.load(); };
  // x is double buffered: tile t + 1 loads while tile t computes.
  std::array<View, 2> x, y;
  for (int i = 0; i < 2; ++i) {
    x[i] = pool.sbuf(P, {C}, compute, "rmsnorm.x" + std::to_string(i));
    y[i] = pool.sbuf(P, {C}, compute, "rmsnorm.y" + std::to_string(i));
  }
  const View squares = pool.sbuf(P, {C}, compute, "rmsnorm.squares");  // scratch
  auto load_x = [&](int64_t t) {
    split_copy(core, x[t % 2].rows(0, tiles.rows(t)), inp.rows(t * kPartitions, tiles.rows(t)),
               queues.loads(), load_queue);
  };
  load_x(0);
  const View w = pool.sbuf(P, {C}, compute, "rmsnorm.weight");
  split_copy(core, w, broadcast_rows(weight, P), queues.loads(), load_queue);
  const View sq_sum = pool.sbuf(P, {tiles.count()}, DType::kF32, "rmsnorm.sq_sum");
  const View rstd_all = pool.sbuf(P, {tiles.count()}, DType::kF32, "rmsnorm.rstd");

  const float inv_c = 1.0f / static_cast<float>(C);
  for (int64_t t = 0; t < tiles.count(); ++t) {
    if (t + 1 < tiles.count()) load_x(t + 1);
    const int64_t r = tiles.rows(t);
    const View xt = x[t % 2].rows(0, r), yt = y[t % 2].rows(0, r);
    auto col = [&](const View& v) { return v.rows(0, r).cols(t, 1); };
    // sum x^2 in one ScalarE pass (the squares are scratch), rstd = 1 / sqrt(sum / C + eps).
    core.activation_reduce(squares.rows(0, r), Activation::kSquare, xt, col(sq_sum));
    core.activation(col(rstd_all), Activation::kRsqrt, col(sq_sum), inv_c, epsilon);
    core.activation(yt, Activation::kIdentity, xt, col(rstd_all));
    core.tensor_tensor(yt, yt, AluOp::kMultiply, w.rows(0, r));
    split_copy(core, out.rows(t * kPartitions, r), yt, queues.stores(),
               [&] { return queues.store(); });
  }
  copy_row_statistics(core, rstd, rstd_all, N, true, queues.store());
}

void rmsnorm_backward(NeuronCore& core, const View& dinp, const View& dweight, const View& dout,
                      const View& inp, const View& weight, const View& rstd, DType compute) {
  const char* kName = "rmsnorm_backward";
  require_compute(kName, compute);
  const RowTiles tiles = check_rows(kName, inp);
  const int64_t N = tiles.N, C = tiles.C, P = tiles.partitions();
  require_dense_matrix(kName, "dout", dout, N, C);
  require_dense_matrix(kName, "dinp", dinp, N, C);
  require_dense_row(kName, "weight", weight, C);
  require_dense_row(kName, "dweight", dweight, C);
  require_dense_row(kName, "rstd", rstd, N);

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.25);  // three loads per store
  auto load_queue = [&] { return queues.load(); };
  // An fp32 dinp keeps its precision: the running sum is taken in fp32.
  const DType sum_dtype = dinp.dtype() == DType::kF32 ? DType::kF32 : compute;
  std::array<View, 2> d, x, dx;
  for (int i = 0; i < 2; ++i) {
    d[i] = pool.sbuf(P, {C}, compute, "rmsnorm.dout" + std::to_string(i));
    x[i] = pool.sbuf(P, {C}, compute, "rmsnorm.x" + std::to_string(i));
    dx[i] = pool.sbuf(P, {C}, sum_dtype, "rmsnorm.dinp" + std::to_string(i));
  }
  auto load_tile = [&](int64_t t) {
    const int64_t r = tiles.rows(t), r0 = t * kPartitions;
    split_copy(core, d[t % 2].rows(0, r), dout.rows(r0, r), queues.loads(), load_queue);
    split_copy(core, x[t % 2].rows(0, r), inp.rows(r0, r), queues.loads(), load_queue);
    split_copy(core, dx[t % 2].rows(0, r), dinp.rows(r0, r), queues.loads(), load_queue);
  };
  const View rstd_all = pool.sbuf(P, {tiles.count()}, DType::kF32, "rmsnorm.rstd");
  if (N % kPartitions != 0 && tiles.count() > 1) core.memset(rstd_all, 0.0f, Engine::kGpSimd);
  copy_row_statistics(core, rstd, rstd_all, N, false, queues.load());
  load_tile(0);
  const View w = pool.sbuf(P, {C}, compute, "rmsnorm.weight");
  split_copy(core, w, broadcast_rows(weight, P), queues.loads(), load_queue);
  const View ones = pool.sbuf(P, {1}, compute, "rmsnorm.ones");
  core.memset(ones, 1.0f, Engine::kGpSimd);
  const View dw = pool.sbuf(1, {C}, DType::kF32, "rmsnorm.dweight");
  core.dma_copy(dw, dweight, queues.load());

  const float neg_inv_c = -1.0f / static_cast<float>(C);
  const View s = pool.sbuf(P, {tiles.count()}, DType::kF32, "rmsnorm.sum_dnorm_xhat");
  const View k = pool.sbuf(P, {tiles.count()}, DType::kF32, "rmsnorm.k");
  const View xhat_dout = pool.sbuf(P, {C}, compute, "rmsnorm.xhat_dout");
  const View xhat = pool.sbuf(P, {C}, compute, "rmsnorm.xhat");
  const View dnorm = pool.sbuf(P, {C}, compute, "rmsnorm.dnorm");
  const View tmp = pool.sbuf(P, {C}, compute, "rmsnorm.tmp");
  // dweight's increments, [1, C] in PSUM chunks of one bank, each closed per tile and added to dw.
  const int64_t chunks = ceil_div(C, kPsumBankFloats);
  auto chunk_cols = [&](int64_t c) { return std::min(kPsumBankFloats, C - c * kPsumBankFloats); };
  const View acc = pool.psum(1, {std::min(C, kPsumBankFloats)}, DType::kF32, "rmsnorm.dweight_acc");
  for (int64_t t = 0; t < tiles.count(); ++t) {
    if (t + 1 < tiles.count()) load_tile(t + 1);
    const int64_t r = tiles.rows(t);
    const View dt = d[t % 2].rows(0, r), xt = x[t % 2].rows(0, r), dxt = dx[t % 2].rows(0, r);
    const View xh = xhat.rows(0, r), dn = dnorm.rows(0, r), xd = xhat_dout.rows(0, r),
               tp = tmp.rows(0, r);
    auto col = [&](const View& v) { return v.rows(0, r).cols(t, 1); };
    core.activation(xh, Activation::kIdentity, xt, col(rstd_all));
    core.tensor_tensor(dn, dt, AluOp::kMultiply, w.rows(0, r));
    core.tensor_tensor(xd, dt, AluOp::kMultiply, xh, Engine::kGpSimd);
    // s = sum dnorm * xhat; k = -s / C * rstd; then dinp += rstd * dnorm + k * xhat.
    core.tensor_tensor(tp, dn, AluOp::kMultiply, xh);
    core.tensor_reduce(col(s), AluOp::kAdd, tp);
    core.tensor_scalar(col(k), col(s), AluOp::kMultiply, neg_inv_c);
    core.tensor_tensor(col(k), col(k), AluOp::kMultiply, col(rstd_all));
    core.activation(dn, Activation::kIdentity, dn, col(rstd_all));
    core.tensor_scalar(tp, xh, AluOp::kMultiply, col(k));
    core.tensor_tensor(tp, tp, AluOp::kAdd, dn, Engine::kGpSimd);
    core.tensor_tensor(dxt, dxt, AluOp::kAdd, tp);
    split_copy(core, dinp.rows(t * kPartitions, r), dxt, queues.stores(),
               [&] { return queues.store(); });
    for (int64_t c = 0; c < chunks; ++c) {
      const View a = acc.cols(0, chunk_cols(c));
      core.matmul(a, ones.rows(0, r), xd.cols(c * kPsumBankFloats, chunk_cols(c)), true, true);
      const View part = dw.cols(c * kPsumBankFloats, chunk_cols(c));
      core.tensor_tensor(part, part, AluOp::kAdd, a);
    }
  }
  core.dma_copy(dweight, dw, queues.store());
}

}  // namespace switchyard::backend::neuron
