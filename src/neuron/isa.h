// Operation codes of the simulated instruction set (NKI names in comments).
#pragma once

#include <cstdint>

namespace switchyard::neuron {

// Compute engines. DMA queues are numbered separately (0 .. CoreConfig::dma_queues - 1).
enum class Engine { kTensor, kVector, kScalar, kGpSimd };
inline constexpr int kComputeEngines = 4;
const char* engine_name(Engine engine);  // "TensorE", "VectorE", "ScalarE", "GpSimd"

// Use any DMA queue (round-robin).
inline constexpr int kAnyQueue = -1;

// What an indirect store does with a negative row index: reject it, or skip the row.
enum class NegativeIndex { kError, kSkip };

// Arithmetic/logic ops of VectorE and GpSimd (nl.add, nl.subtract, ...). Comparisons give 1 or 0.
enum class AluOp {
  kBypass,  // no operation: the first operand passes through (second op of tensor_scalar)
  kAdd,
  kSubtract,
  kMultiply,
  kDivide,
  kMax,
  kMin,
  kPow,
  kIsEqual,
  kNotEqual,
  kIsGreater,
  kIsGreaterEqual,
  kIsLess,
  kIsLessEqual,
};
const char* alu_op_name(AluOp op);
float apply_alu(AluOp op, float a, float b);
// a[i] = op(a[i], b[i * b_stride]) for i < n (b_stride 0: one scalar for all): the same results
// as apply_alu, with the op chosen once per array rather than per element.
void apply_alu(AluOp op, float* a, const float* b, int64_t b_stride, int64_t n);

// ScalarE activation functions (nl.exp, nl.tanh, ...).
enum class Activation {
  kIdentity,
  kExp,
  kLog,
  kTanh,
  kGeluTanh,  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), GPT-2's gelu
  kSilu,
  kSigmoid,
  kRelu,
  kSqrt,
  kRsqrt,
  kReciprocal,
  kSquare,
};
const char* activation_name(Activation function);
float apply_activation(Activation function, float x);
// x[i] = function(x[i] * scale + bias) for i < n, as apply_activation.
void apply_activation(Activation function, float* x, int64_t n, float scale, float bias);

}  // namespace switchyard::neuron
