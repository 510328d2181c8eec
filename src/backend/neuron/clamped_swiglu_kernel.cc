#include "backend/neuron/clamped_swiglu_kernel.h"

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "backend/neuron/dma_queues.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

// One piece of the work: rows [row0, row0 + rows) and outputs [col0, col0 + cols).
struct Piece {
  int64_t row0 = 0, rows = 0, col0 = 0, cols = 0;
};

std::vector<Piece> pieces(int64_t A, int64_t I) {
  std::vector<Piece> all;
  for (int64_t r = 0; r < A; r += kPartitions)
    for (int64_t c = 0; c < I; c += kSwigluChunk)
      all.push_back({r, std::min(kPartitions, A - r), c, std::min(kSwigluChunk, I - c)});
  return all;
}

// The piece's interleaved input columns [2 col0, 2 (col0 + cols)) of an [A, 2I] tensor.
View pair_columns(const View& t, const Piece& p) {
  return t.rows(p.row0, p.rows).cols(2 * p.col0, 2 * p.cols);
}

int64_t check_shapes(const char* kernel, const View& inp, const View& narrow, const char* name) {
  const int64_t A = inp.partitions(), I = inp.free_size() / 2;
  require(A >= 1 && I >= 1 && inp.free_size() == 2 * I,
          "{}: inp must be [A, 2I] with A, I >= 1, got {}", kernel, inp.describe());
  require_dense_matrix(kernel, "inp", inp, A, 2 * I);
  require_dense_matrix(kernel, name, narrow, A, I);
  return I;
}

// The SBUF tiles of one piece in flight.
struct SwigluTiles {
  View x;        // [P, 2 chunk]: gate, up interleaved
  View g, s, u;  // [P, chunk]: clamped gate, sigmoid(alpha g), clamped up
  View y;        // [P, chunk]: output or scratch
  View gate() const { return x.slice(0, 0, x.free_size() / 2, 2); }
  View up() const { return x.slice(0, 1, x.free_size() / 2, 2); }
};

SwigluTiles allocate_tiles(TilePool& pool, int64_t P, int64_t chunk, DType compute,
                           const std::string& tag) {
  SwigluTiles t;
  t.x = pool.sbuf(P, {2 * chunk}, compute, "swiglu.x" + tag);
  t.g = pool.sbuf(P, {chunk}, compute, "swiglu.g" + tag);
  t.s = pool.sbuf(P, {chunk}, compute, "swiglu.s" + tag);
  t.u = pool.sbuf(P, {chunk}, compute, "swiglu.u" + tag);
  t.y = pool.sbuf(P, {chunk}, compute, "swiglu.y" + tag);
  return t;
}

// The piece's part of every tile.
SwigluTiles part(const SwigluTiles& t, const Piece& p) {
  return {t.x.rows(0, p.rows).cols(0, 2 * p.cols), t.g.rows(0, p.rows).cols(0, p.cols),
          t.s.rows(0, p.rows).cols(0, p.cols), t.u.rows(0, p.rows).cols(0, p.cols),
          t.y.rows(0, p.rows).cols(0, p.cols)};
}

// g = min(gate, limit), s = sigmoid(alpha g), u = clamp(up, -limit, limit).
void clamp_and_gate(NeuronCore& core, const SwigluTiles& t, float alpha, float limit) {
  core.tensor_scalar(t.g, t.gate(), AluOp::kMin, limit);
  core.tensor_scalar(t.u, t.up(), AluOp::kMax, -limit, AluOp::kMin, limit, Engine::kGpSimd);
  core.activation(t.s, Activation::kSigmoid, t.g, alpha);
}

}  // namespace

void clamped_swiglu_forward(NeuronCore& core, const View& out, const View& inp, float alpha,
                            float limit, DType compute) {
  const char* kName = "clamped_swiglu_forward";
  require_compute(kName, compute);
  const int64_t I = check_shapes(kName, inp, out, "out"), A = inp.partitions();

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.5);
  const std::vector<Piece> all = pieces(A, I);
  const int64_t P = std::min(A, kPartitions), chunk = std::min(I, kSwigluChunk);
  std::array<SwigluTiles, 2> buf;
  for (int i = 0; i < 2; ++i) buf[i] = allocate_tiles(pool, P, chunk, compute, std::to_string(i));
  auto load = [&](size_t i) {
    split_copy(core, part(buf[i % 2], all[i]).x, pair_columns(inp, all[i]), queues.loads(),
               [&] { return queues.load(); });
  };
  load(0);
  for (size_t i = 0; i < all.size(); ++i) {
    if (i + 1 < all.size()) load(i + 1);
    const SwigluTiles t = part(buf[i % 2], all[i]);
    clamp_and_gate(core, t, alpha, limit);
    // y = (u + 1) * g * s.
    core.tensor_tensor(t.y, t.g, AluOp::kMultiply, t.s);
    core.tensor_scalar(t.u, t.u, AluOp::kAdd, 1.0f, AluOp::kBypass, 0.0f, Engine::kGpSimd);
    core.tensor_tensor(t.y, t.y, AluOp::kMultiply, t.u);
    split_copy(core, out.rows(all[i].row0, all[i].rows).cols(all[i].col0, all[i].cols), t.y,
               queues.stores(), [&] { return queues.store(); });
  }
}

namespace {

// The backward pass's extra tiles of one piece.
struct GradientTiles {
  View d;    // [P, chunk]: dout
  View dx;   // [P, 2 chunk]: dinp, interleaved
  View m;    // [P, chunk]: a mask, then scratch
  View dgate() const { return dx.slice(0, 0, dx.free_size() / 2, 2); }
  View dup() const { return dx.slice(0, 1, dx.free_size() / 2, 2); }
};

// dgate = dout (u + 1) s (1 + alpha g (1 - s)) where gate <= limit, added into dinp's gate
// columns. Uses y as scratch; u becomes u + 1.
void add_gate_gradient(NeuronCore& core, const SwigluTiles& t, const GradientTiles& g, float alpha,
                       float limit) {
  // y = 1 + alpha g (1 - s) = 1 + alpha g - alpha g s.
  core.tensor_tensor(t.y, t.g, AluOp::kMultiply, t.s);
  core.tensor_scalar(t.y, t.y, AluOp::kMultiply, -alpha);
  core.tensor_scalar(g.m, t.g, AluOp::kMultiply, alpha, AluOp::kAdd, 1.0f, Engine::kGpSimd);
  core.tensor_tensor(t.y, t.y, AluOp::kAdd, g.m);
  core.tensor_tensor(t.y, t.y, AluOp::kMultiply, t.s);
  core.tensor_scalar(t.u, t.u, AluOp::kAdd, 1.0f, AluOp::kBypass, 0.0f, Engine::kGpSimd);
  core.tensor_tensor(t.y, t.y, AluOp::kMultiply, t.u);
  core.tensor_tensor(t.y, t.y, AluOp::kMultiply, g.d);
  core.tensor_scalar(g.m, t.gate(), AluOp::kIsLessEqual, limit, AluOp::kBypass, 0.0f,
                     Engine::kGpSimd);
  core.tensor_tensor(t.y, t.y, AluOp::kMultiply, g.m);
  core.tensor_tensor(g.dgate(), g.dgate(), AluOp::kAdd, t.y);
}

// dup = dout g s where -limit <= up <= limit, added into dinp's up columns. Uses y as scratch.
void add_up_gradient(NeuronCore& core, const SwigluTiles& t, const GradientTiles& g, float limit) {
  core.tensor_tensor(t.y, t.g, AluOp::kMultiply, t.s);
  core.tensor_tensor(t.y, t.y, AluOp::kMultiply, g.d);
  core.tensor_scalar(g.m, t.up(), AluOp::kIsGreaterEqual, -limit);
  core.tensor_tensor(t.y, t.y, AluOp::kMultiply, g.m);
  core.tensor_scalar(g.m, t.up(), AluOp::kIsLessEqual, limit, AluOp::kBypass, 0.0f,
                     Engine::kGpSimd);
  core.tensor_tensor(t.y, t.y, AluOp::kMultiply, g.m);
  core.tensor_tensor(g.dup(), g.dup(), AluOp::kAdd, t.y);
}

}  // namespace

void clamped_swiglu_backward(NeuronCore& core, const View& dinp, const View& inp,
                             const View& dout, float alpha, float limit, DType compute) {
  const char* kName = "clamped_swiglu_backward";
  require_compute(kName, compute);
  const int64_t I = check_shapes(kName, inp, dout, "dout"), A = inp.partitions();
  require_dense_matrix(kName, "dinp", dinp, A, 2 * I);

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.25);  // three loads per store
  const std::vector<Piece> all = pieces(A, I);
  const int64_t P = std::min(A, kPartitions), chunk = std::min(I, kSwigluChunk);
  // An fp32 dinp keeps its precision: the running sum is taken in fp32.
  const DType sum_dtype = dinp.dtype() == DType::kF32 ? DType::kF32 : compute;
  std::array<SwigluTiles, 2> buf;
  std::array<GradientTiles, 2> grad;
  for (int i = 0; i < 2; ++i) {
    const std::string tag = std::to_string(i);
    buf[i] = allocate_tiles(pool, P, chunk, compute, tag);
    grad[i] = {pool.sbuf(P, {chunk}, compute, "swiglu.dout" + tag),
               pool.sbuf(P, {2 * chunk}, sum_dtype, "swiglu.dinp" + tag),
               pool.sbuf(P, {chunk}, compute, "swiglu.mask" + tag)};
  }
  auto grad_part = [&](size_t i) {
    const Piece& p = all[i];
    const GradientTiles& g = grad[i % 2];
    return GradientTiles{g.d.rows(0, p.rows).cols(0, p.cols),
                         g.dx.rows(0, p.rows).cols(0, 2 * p.cols),
                         g.m.rows(0, p.rows).cols(0, p.cols)};
  };
  auto load = [&](size_t i) {
    const Piece& p = all[i];
    auto q = [&] { return queues.load(); };
    split_copy(core, part(buf[i % 2], p).x, pair_columns(inp, p), queues.loads(), q);
    split_copy(core, grad_part(i).d, dout.rows(p.row0, p.rows).cols(p.col0, p.cols),
               queues.loads(), q);
    split_copy(core, grad_part(i).dx, pair_columns(dinp, p), queues.loads(), q);
  };
  load(0);
  for (size_t i = 0; i < all.size(); ++i) {
    if (i + 1 < all.size()) load(i + 1);
    const SwigluTiles t = part(buf[i % 2], all[i]);
    const GradientTiles g = grad_part(i);
    clamp_and_gate(core, t, alpha, limit);
    add_up_gradient(core, t, g, limit);
    add_gate_gradient(core, t, g, alpha, limit);
    split_copy(core, pair_columns(dinp, all[i]), g.dx, queues.stores(),
               [&] { return queues.store(); });
  }
}

}  // namespace switchyard::backend::neuron
