#include "backend/neuron/gelu_kernel.h"

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "backend/neuron/dma_queues.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

using ::switchyard::dtype_bytes;
using ::switchyard::nki_dtype_name;
using ::switchyard::is_float;

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

// An HBM float tensor of n elements stored back to back.
// SBUF shape that holds the largest block.
struct BlockShape {
  int64_t partitions = 1;
  int64_t cols = 1;
};
BlockShape largest(const std::vector<FlatBlock>& blocks) {
  BlockShape s;
  for (const FlatBlock& b : blocks) {
    s.partitions = std::max(s.partitions, b.rows);
    s.cols = std::max(s.cols, b.cols);
  }
  return s;
}

}  // namespace

void gelu_forward(NeuronCore& core, const View& out, const View& inp, DType compute) {
  const char* kName = "gelu_forward";
  require_compute(kName, compute);
  const int64_t n = inp.elements();
  require_flat(kName, "inp", inp, n);
  require_flat(kName, "out", out, n);
  if (n == 0) return;

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.5);  // one load per store
  const std::vector<FlatBlock> blocks = flat_blocks(n, kGeluBlockCols);
  const BlockShape shape = largest(blocks);
  std::array<View, 2> x, y;
  for (int i = 0; i < 2; ++i) {
    x[i] = pool.sbuf(shape.partitions, {shape.cols}, compute, "gelu.x" + std::to_string(i));
    y[i] = pool.sbuf(shape.partitions, {shape.cols}, compute, "gelu.y" + std::to_string(i));
  }
  auto tile = [&](const std::array<View, 2>& buf, size_t i) {
    return buf[i % 2].rows(0, blocks[i].rows).cols(0, blocks[i].cols);
  };
  auto load = [&](size_t i) {
    split_copy(core, tile(x, i), block_view(inp, blocks[i]), queues.loads(),
               [&] { return queues.load(); });
  };
  load(0);
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (i + 1 < blocks.size()) load(i + 1);
    core.activation(tile(y, i), Activation::kGeluTanh, tile(x, i));
    split_copy(core, block_view(out, blocks[i]), tile(y, i), queues.stores(),
               [&] { return queues.store(); });
  }
}

void gelu_backward(NeuronCore& core, const View& dinp, const View& inp, const View& dout,
                   DType compute) {
  const char* kName = "gelu_backward";
  require_compute(kName, compute);
  const int64_t n = inp.elements();
  require_flat(kName, "inp", inp, n);
  require_flat(kName, "dout", dout, n);
  require_flat(kName, "dinp", dinp, n);
  if (n == 0) return;

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.25);  // three loads per store
  const std::vector<FlatBlock> blocks = flat_blocks(n, kGeluBackwardBlockCols);
  const BlockShape shape = largest(blocks);
  // Three blocks are in flight, each at a different stage of its chain (x^2 and the
  // polynomials; x (1 + a x^2), x y'(x) and the sigmoids; the products and the store): stage 1
  // of block i is issued before stage 2 of block i - 1 and stage 3 of block i - 2, so that each
  // in-order engine has independent work while it waits for another engine's result. Inputs
  // are in a ring of four buffers (the next block loads meanwhile), scratch in a ring of three.
  constexpr int kStages = 3;
  enum Tile { kX, kDout, kDinp, kSquare, kInner, kSig, kSigNeg, kSlope, kTiles };
  static const char* const kNames[kTiles] = {"x",     "dout", "dinp",        "x2",
                                             "inner", "s",    "one_minus_s", "slope"};
  auto ring = [](int k) { return k < kSquare ? kStages + 1 : kStages; };
  // An fp32 dinp keeps its precision: the running sum is taken in fp32.
  const DType sum_dtype = dinp.dtype() == DType::kF32 ? DType::kF32 : compute;
  std::array<std::array<View, kTiles>, kStages + 1> buf;
  for (int k = 0; k < kTiles; ++k)
    for (int i = 0; i < ring(k); ++i)
      buf[i][k] = pool.sbuf(shape.partitions, {shape.cols}, k == kDinp ? sum_dtype : compute,
                            std::string("gelu.") + kNames[k] + std::to_string(i));
  auto tile = [&](size_t i, int k) {
    return buf[i % ring(k)][k].rows(0, blocks[i].rows).cols(0, blocks[i].cols);
  };
  auto load = [&](size_t i) {
    auto q = [&] { return queues.load(); };
    split_copy(core, tile(i, kX), block_view(inp, blocks[i]), queues.loads(), q);
    split_copy(core, tile(i, kDout), block_view(dout, blocks[i]), queues.loads(), q);
    split_copy(core, tile(i, kDinp), block_view(dinp, blocks[i]), queues.loads(), q);
  };
  const float two_k = 2.0f * kSqrt2OverPi;
  auto stage = [&](int k, size_t i) {
    const View x = tile(i, kX), d = tile(i, kDout), acc = tile(i, kDinp), x2 = tile(i, kSquare),
               inner = tile(i, kInner), s = tile(i, kSig), one_minus_s = tile(i, kSigNeg),
               slope = tile(i, kSlope);
    if (k == 0) {
      // slope = y'(x) = 2k (1 + 3 * 0.044715 x^2); inner = 1 + 0.044715 x^2.
      core.activation(x2, Activation::kSquare, x);
      core.tensor_scalar(slope, x2, AluOp::kMultiply, 3.0f * kCubic * two_k, AluOp::kAdd, two_k,
                         Engine::kGpSimd);
      core.tensor_scalar(inner, x2, AluOp::kMultiply, kCubic, AluOp::kAdd, 1.0f);
    } else if (k == 1) {
      // inner = x + 0.044715 x^3, slope = x y'(x); s = sigmoid(2k inner) and 1 - s, taken as
      // sigmoid(-2k inner) rather than by a cancelling subtraction.
      core.tensor_tensor(inner, inner, AluOp::kMultiply, x);
      core.tensor_tensor(slope, slope, AluOp::kMultiply, x, Engine::kGpSimd);
      core.activation(s, Activation::kSigmoid, inner, two_k);
      core.activation(one_minus_s, Activation::kSigmoid, inner, -two_k);
    } else {
      // dinp += dout * s * (1 + x y'(x) (1 - s)).
      core.tensor_tensor(s, s, AluOp::kMultiply, d);
      core.tensor_tensor(slope, slope, AluOp::kMultiply, one_minus_s);
      core.activation(slope, Activation::kIdentity, slope, 1.0f, 1.0f);
      core.tensor_tensor(slope, slope, AluOp::kMultiply, s);
      core.tensor_tensor(acc, acc, AluOp::kAdd, slope, Engine::kGpSimd);
      split_copy(core, block_view(dinp, blocks[i]), acc, queues.stores(),
                 [&] { return queues.store(); });
    }
  };
  const int64_t count = static_cast<int64_t>(blocks.size());
  load(0);
  for (int64_t step = 0; step < count + kStages - 1; ++step) {
    // The buffers block step + 1 loads into were last used by block step - 3, done last step.
    if (step + 1 < count) load(static_cast<size_t>(step + 1));
    for (int k = 0; k < kStages; ++k) {
      const int64_t i = step - k;
      if (i >= 0 && i < count) stage(k, static_cast<size_t>(i));
    }
  }
}

}  // namespace switchyard::backend::neuron
