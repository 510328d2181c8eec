#include "backend/neuron/layernorm_kernel.h"

#include <algorithm>
#include <array>
#include <string>

#include "backend/neuron/dma_queues.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

void layernorm_forward(NeuronCore& core, const View& out, const View& mean, const View& rstd,
                       const View& inp, const View& weight, const View& bias, DType compute,
                       float epsilon) {
  const char* kName = "layernorm_forward";
  require_compute(kName, compute);
  const int64_t N = inp.partitions();
  const int64_t C = inp.free_size();
  require(N >= 1 && C >= 1, "{}: inp must have at least one row and column, got {}", kName,
          inp.describe());
  require_dense_matrix(kName, "inp", inp, N, C);
  require_dense_matrix(kName, "out", out, N, C);
  require_dense_row(kName, "mean", mean, N);
  require_dense_row(kName, "rstd", rstd, N);
  require_dense_row(kName, "weight", weight, C);
  require_dense_row(kName, "bias", bias, C);

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.5);  // one load per store
  const int64_t P = std::min(N, kPartitions);
  const int64_t tiles = ceil_div(N, kPartitions);
  auto rows_of = [&](int64_t t) { return std::min(kPartitions, N - t * kPartitions); };
  auto load_queue = [&] { return queues.load(); };
  auto store_queue = [&] { return queues.store(); };

  // x is triple buffered: tile t + 1's statistics are issued before tile t's output (so each
  // in-order engine has independent work while it waits on another), and tile t + 2 loads
  // meanwhile.
  std::array<View, 3> x;
  std::array<View, 2> y;
  for (int i = 0; i < 3; ++i) x[i] = pool.sbuf(P, {C}, compute, "layernorm.x" + std::to_string(i));
  for (int i = 0; i < 2; ++i) y[i] = pool.sbuf(P, {C}, compute, "layernorm.y" + std::to_string(i));
  const View squares = pool.sbuf(P, {C}, compute, "layernorm.squares");  // scratch
  auto load_x = [&](int64_t t) {
    split_copy(core, x[t % 3].rows(0, rows_of(t)), inp.rows(t * kPartitions, rows_of(t)),
               queues.loads(), load_queue);
  };
  load_x(0);  // the first tile's statistics do not wait for weight and bias
  if (tiles > 1) load_x(1);
  const View w = pool.sbuf(P, {C}, compute, "layernorm.weight");
  const View b = pool.sbuf(P, {C}, compute, "layernorm.bias");
  // A broadcast writes every partition: split it like any big load.
  split_copy(core, w, broadcast_rows(weight, P), queues.loads(), load_queue);
  split_copy(core, b, broadcast_rows(bias, P), queues.loads(), load_queue);
  // fp32 statistics, one column per row tile.
  const View sum = pool.sbuf(P, {tiles}, DType::kF32, "layernorm.sum");
  const View neg_mean = pool.sbuf(P, {tiles}, DType::kF32, "layernorm.neg_mean");
  const View sq_sum = pool.sbuf(P, {tiles}, DType::kF32, "layernorm.sq_sum");
  const View mean_all = pool.sbuf(P, {tiles}, DType::kF32, "layernorm.mean");
  const View rstd_all = pool.sbuf(P, {tiles}, DType::kF32, "layernorm.rstd");
  const View shift = pool.sbuf(P, {tiles}, DType::kF32, "layernorm.shift");  // -mean * rstd

  const float inv_c = 1.0f / static_cast<float>(C);
  auto statistics = [&](int64_t t) {
    const int64_t r = rows_of(t);
    const View xt = x[t % 3].rows(0, r);
    auto col = [&](const View& v) { return v.rows(0, r).cols(t, 1); };
    core.tensor_reduce(col(sum), AluOp::kAdd, xt);
    core.tensor_scalar(col(neg_mean), col(sum), AluOp::kMultiply, -inv_c);
    core.tensor_scalar(col(mean_all), col(sum), AluOp::kMultiply, inv_c, AluOp::kBypass, 0.0f,
                       Engine::kGpSimd);
    // sum (x - mean)^2 in one ScalarE pass (the squares themselves are scratch), then
    // rstd = 1 / sqrt(var + eps).
    core.activation_reduce(squares.rows(0, r), Activation::kSquare, xt, col(sq_sum), 1.0f,
                           col(neg_mean));
    core.activation(col(rstd_all), Activation::kRsqrt, col(sq_sum), inv_c, epsilon);
    core.tensor_tensor(col(shift), col(neg_mean), AluOp::kMultiply, col(rstd_all));
  };
  auto output = [&](int64_t t) {
    const int64_t r = rows_of(t);
    const View yt = y[t % 2].rows(0, r);
    auto col = [&](const View& v) { return v.rows(0, r).cols(t, 1); };
    // y = (x * rstd - mean * rstd) * weight + bias, over ScalarE, VectorE and GpSimd.
    core.activation(yt, Activation::kIdentity, x[t % 3].rows(0, r), col(rstd_all), col(shift));
    core.tensor_tensor(yt, yt, AluOp::kMultiply, w.rows(0, r));
    core.tensor_tensor(yt, yt, AluOp::kAdd, b.rows(0, r), Engine::kGpSimd);
    split_copy(core, out.rows(t * kPartitions, r), yt, queues.stores(), store_queue);
  };
  statistics(0);
  for (int64_t t = 0; t < tiles; ++t) {
    if (t + 2 < tiles) load_x(t + 2);  // into the buffer tile t - 1 has finished with
    if (t + 1 < tiles) statistics(t + 1);
    output(t);
  }
  copy_row_statistics(core, mean, mean_all, N, true, queues.store());
  copy_row_statistics(core, rstd, rstd_all, N, true, queues.store());
}

void layernorm_backward(NeuronCore& core, const View& dinp, const View& dweight, const View& dbias,
                        const View& dout, const View& inp, const View& weight, const View& mean,
                        const View& rstd, DType compute) {
  const char* kName = "layernorm_backward";
  require_compute(kName, compute);
  const int64_t N = inp.partitions();
  const int64_t C = inp.free_size();
  require(N >= 1 && C >= 1, "{}: inp must have at least one row and column, got {}", kName,
          inp.describe());
  require_dense_matrix(kName, "inp", inp, N, C);
  require_dense_matrix(kName, "dout", dout, N, C);
  require_dense_matrix(kName, "dinp", dinp, N, C);
  require_dense_row(kName, "weight", weight, C);
  require_dense_row(kName, "dweight", dweight, C);
  require_dense_row(kName, "dbias", dbias, C);
  require_dense_row(kName, "mean", mean, N);
  require_dense_row(kName, "rstd", rstd, N);

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.25);  // three loads per store
  const int64_t P = std::min(N, kPartitions);
  const int64_t tiles = ceil_div(N, kPartitions);
  auto rows_of = [&](int64_t t) { return std::min(kPartitions, N - t * kPartitions); };
  auto load_queue = [&] { return queues.load(); };
  auto store_queue = [&] { return queues.store(); };

  // gd holds [dout * xhat | dout] side by side, so one run of matmuls against a ones column sums
  // both over the tile's rows: dweight's and dbias's increments as one [1, 2C] row.
  std::array<View, 2> gd, x, dx;
  // An fp32 dinp keeps its precision: the running sum is taken in fp32.
  const DType sum_dtype = dinp.dtype() == DType::kF32 ? DType::kF32 : compute;
  for (int i = 0; i < 2; ++i) {
    gd[i] = pool.sbuf(P, {2 * C}, compute, "layernorm.gd" + std::to_string(i));
    x[i] = pool.sbuf(P, {C}, compute, "layernorm.x" + std::to_string(i));
    dx[i] = pool.sbuf(P, {C}, sum_dtype, "layernorm.dinp" + std::to_string(i));
  }
  auto load_tile = [&](int64_t t) {
    const int64_t r = rows_of(t);
    const int64_t r0 = t * kPartitions;
    split_copy(core, gd[t % 2].rows(0, r).cols(C, C), dout.rows(r0, r), queues.loads(),
               load_queue);
    split_copy(core, x[t % 2].rows(0, r), inp.rows(r0, r), queues.loads(), load_queue);
    split_copy(core, dx[t % 2].rows(0, r), dinp.rows(r0, r), queues.loads(), load_queue);
  };

  // Row statistics for all tiles (unused lanes of the last column zeroed, not left NaN).
  const View mean_all = pool.sbuf(P, {tiles}, DType::kF32, "layernorm.mean");
  const View rstd_all = pool.sbuf(P, {tiles}, DType::kF32, "layernorm.rstd");
  if (N % kPartitions != 0 && tiles > 1) {
    core.memset(mean_all, 0.0f, Engine::kGpSimd);
    core.memset(rstd_all, 0.0f, Engine::kGpSimd);
  }
  copy_row_statistics(core, mean, mean_all, N, false, queues.load());
  copy_row_statistics(core, rstd, rstd_all, N, false, queues.load());
  load_tile(0);
  const View w = pool.sbuf(P, {C}, compute, "layernorm.weight");
  split_copy(core, w, broadcast_rows(weight, P), queues.loads(), load_queue);
  const View ones = pool.sbuf(P, {1}, compute, "layernorm.ones");
  core.memset(ones, 1.0f, Engine::kGpSimd);
  // The existing parameter gradients, [dweight | dbias] in fp32, updated once at the end.
  const View params = pool.sbuf(1, {2 * C}, DType::kF32, "layernorm.dparams");
  core.dma_copy(params.cols(0, C), dweight, queues.load());
  core.dma_copy(params.cols(C, C), dbias, queues.load());

  const float inv_c = 1.0f / static_cast<float>(C);
  const View shift = pool.sbuf(P, {tiles}, DType::kF32, "layernorm.shift");  // -mean * rstd
  core.tensor_scalar(shift, mean_all, AluOp::kMultiply, -1.0f);
  core.tensor_tensor(shift, shift, AluOp::kMultiply, rstd_all);
  const View neg_rstd_c = pool.sbuf(P, {tiles}, DType::kF32, "layernorm.neg_rstd_c");
  core.tensor_scalar(neg_rstd_c, rstd_all, AluOp::kMultiply, -inv_c);
  const View s1 = pool.sbuf(P, {tiles}, DType::kF32, "layernorm.sum_dnorm_rstd");
  const View s2 = pool.sbuf(P, {tiles}, DType::kF32, "layernorm.sum_dnorm_xhat");
  const View c1 = pool.sbuf(P, {tiles}, DType::kF32, "layernorm.c1");
  const View c2 = pool.sbuf(P, {tiles}, DType::kF32, "layernorm.c2");
  const View xhat = pool.sbuf(P, {C}, compute, "layernorm.xhat");
  const View dnorm = pool.sbuf(P, {C}, compute, "layernorm.dnorm");
  const View tmp = pool.sbuf(P, {C}, compute, "layernorm.tmp");

  // Column sums accumulate across all row tiles in PSUM when every 512-column chunk of the
  // [1, 2C] row can keep its accumulation group open (at most 8 groups, one bank each): each
  // group starts from the existing gradients (an fp32 matmul by a 1x1 one), so the end is one
  // PSUM -> SBUF copy. Otherwise each tile's sums are closed and added into `params` at once.
  const int64_t chunks = ceil_div(2 * C, kPsumBankFloats);
  const bool resident = chunks <= core.config().psum_banks;
  const View acc =
      pool.psum(1, {resident ? 2 * C : 2 * kPsumBankFloats}, DType::kF32, "layernorm.dparams_acc");
  auto chunk_cols = [&](int64_t k) { return std::min(kPsumBankFloats, 2 * C - k * kPsumBankFloats); };
  auto acc_chunk = [&](int64_t k) {
    return acc.cols(resident ? k * kPsumBankFloats : (k % 2) * kPsumBankFloats, chunk_cols(k));
  };
  if (resident) {
    const View one = pool.sbuf(1, {1}, DType::kF32, "layernorm.one");
    core.memset(one, 1.0f, Engine::kGpSimd);
    for (int64_t k = 0; k < chunks; ++k)
      core.matmul(acc_chunk(k), one, params.cols(k * kPsumBankFloats, chunk_cols(k)), true, false);
  }

  for (int64_t t = 0; t < tiles; ++t) {
    if (t + 1 < tiles) load_tile(t + 1);
    const int64_t r = rows_of(t);
    const View g = gd[t % 2].rows(0, r).cols(0, C);
    const View d = gd[t % 2].rows(0, r).cols(C, C);
    const View xt = x[t % 2].rows(0, r);
    const View dxt = dx[t % 2].rows(0, r);
    const View xh = xhat.rows(0, r);
    const View dn = dnorm.rows(0, r);
    const View tp = tmp.rows(0, r);
    auto col = [&](const View& v) { return v.rows(0, r).cols(t, 1); };

    core.activation(xh, Activation::kIdentity, xt, col(rstd_all), col(shift));
    core.tensor_tensor(dn, d, AluOp::kMultiply, w.rows(0, r));
    core.tensor_tensor(g, d, AluOp::kMultiply, xh, Engine::kGpSimd);
    // s2 = sum dnorm * xhat; then dnorm is scaled by rstd in place, s1 = sum rstd * dnorm.
    core.tensor_tensor(tp, dn, AluOp::kMultiply, xh);
    core.tensor_reduce(col(s2), AluOp::kAdd, tp);
    core.activation_reduce(dn, Activation::kIdentity, dn, col(s1), col(rstd_all), 0.0f);
    core.tensor_scalar(col(c2), col(s2), AluOp::kMultiply, col(neg_rstd_c));
    core.tensor_scalar(col(c1), col(s1), AluOp::kMultiply, -inv_c, AluOp::kBypass, 0.0f,
                       Engine::kGpSimd);
    // dinp += rstd * dnorm - rstd * s1 / C - xhat * rstd * s2 / C.
    core.tensor_scalar(tp, xh, AluOp::kMultiply, col(c2), AluOp::kAdd, col(c1));
    core.tensor_tensor(tp, tp, AluOp::kAdd, dn, Engine::kGpSimd);
    core.tensor_tensor(dxt, dxt, AluOp::kAdd, tp);
    split_copy(core, dinp.rows(t * kPartitions, r), dxt, queues.stores(), store_queue);

    const View ones_r = ones.rows(0, r);
    for (int64_t k = 0; k < chunks; ++k) {
      const View moving = gd[t % 2].rows(0, r).cols(k * kPsumBankFloats, chunk_cols(k));
      if (resident) {
        core.matmul(acc_chunk(k), ones_r, moving, false, t == tiles - 1);
      } else {
        core.matmul(acc_chunk(k), ones_r, moving, true, true);
        const View p = params.cols(k * kPsumBankFloats, chunk_cols(k));
        core.tensor_tensor(p, p, AluOp::kAdd, acc_chunk(k));
      }
    }
  }
  if (resident) {
    // Evacuate PSUM on VectorE and ScalarE, half each.
    const int64_t half = C;
    core.tensor_copy(params.cols(0, half), acc.cols(0, half));
    core.activation(params.cols(half, 2 * C - half), Activation::kIdentity,
                    acc.cols(half, 2 * C - half));
  }
  core.dma_copy(dweight, params.cols(0, C), queues.store());
  core.dma_copy(dbias, params.cols(C, C), queues.store());
}

}  // namespace switchyard::backend::neuron
