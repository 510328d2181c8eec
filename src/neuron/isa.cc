#include "neuron/isa.h"

#include <cmath>

namespace switchyard::neuron {

const char* engine_name(Engine engine) {
  switch (engine) {
    case Engine::kTensor:
      return "TensorE";
    case Engine::kVector:
      return "VectorE";
    case Engine::kScalar:
      return "ScalarE";
    case Engine::kGpSimd:
      return "GpSimd";
  }
  return "?";
}

const char* alu_op_name(AluOp op) {
  switch (op) {
    case AluOp::kBypass:
      return "bypass";
    case AluOp::kAdd:
      return "add";
    case AluOp::kSubtract:
      return "subtract";
    case AluOp::kMultiply:
      return "multiply";
    case AluOp::kDivide:
      return "divide";
    case AluOp::kMax:
      return "max";
    case AluOp::kMin:
      return "min";
    case AluOp::kPow:
      return "pow";
    case AluOp::kIsEqual:
      return "is_equal";
    case AluOp::kNotEqual:
      return "not_equal";
    case AluOp::kIsGreater:
      return "is_greater";
    case AluOp::kIsGreaterEqual:
      return "is_greater_equal";
    case AluOp::kIsLess:
      return "is_less";
    case AluOp::kIsLessEqual:
      return "is_less_equal";
  }
  return "?";
}

float apply_alu(AluOp op, float a, float b) {
  switch (op) {
    case AluOp::kBypass:
      return a;
    case AluOp::kAdd:
      return a + b;
    case AluOp::kSubtract:
      return a - b;
    case AluOp::kMultiply:
      return a * b;
    case AluOp::kDivide:
      return a / b;
    case AluOp::kMax:
      return (a > b || std::isnan(a)) ? a : b;  // NaN propagates
    case AluOp::kMin:
      return (a < b || std::isnan(a)) ? a : b;
    case AluOp::kPow:
      return std::pow(a, b);
    case AluOp::kIsEqual:
      return a == b ? 1.0f : 0.0f;
    case AluOp::kNotEqual:
      return a != b ? 1.0f : 0.0f;
    case AluOp::kIsGreater:
      return a > b ? 1.0f : 0.0f;
    case AluOp::kIsGreaterEqual:
      return a >= b ? 1.0f : 0.0f;
    case AluOp::kIsLess:
      return a < b ? 1.0f : 0.0f;
    case AluOp::kIsLessEqual:
      return a <= b ? 1.0f : 0.0f;
  }
  return a;
}

const char* activation_name(Activation function) {
  switch (function) {
    case Activation::kIdentity:
      return "identity";
    case Activation::kExp:
      return "exp";
    case Activation::kLog:
      return "log";
    case Activation::kTanh:
      return "tanh";
    case Activation::kGeluTanh:
      return "gelu_tanh";
    case Activation::kSilu:
      return "silu";
    case Activation::kSigmoid:
      return "sigmoid";
    case Activation::kRelu:
      return "relu";
    case Activation::kSqrt:
      return "sqrt";
    case Activation::kRsqrt:
      return "rsqrt";
    case Activation::kReciprocal:
      return "reciprocal";
    case Activation::kSquare:
      return "square";
  }
  return "?";
}

float apply_activation(Activation function, float x) {
  switch (function) {
    case Activation::kIdentity:
      return x;
    case Activation::kExp:
      return std::exp(x);
    case Activation::kLog:
      return std::log(x);
    case Activation::kTanh:
      return std::tanh(x);
    case Activation::kGeluTanh: {
      constexpr float kSqrt2OverPi = 0.7978845608028654f;
      return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
    }
    case Activation::kSilu:
      return x / (1.0f + std::exp(-x));
    case Activation::kSigmoid:
      return 1.0f / (1.0f + std::exp(-x));
    case Activation::kRelu:
      return x < 0.0f ? 0.0f : x;  // NaN propagates
    case Activation::kSqrt:
      return std::sqrt(x);
    case Activation::kRsqrt:
      return 1.0f / std::sqrt(x);
    case Activation::kReciprocal:
      return 1.0f / x;
    case Activation::kSquare:
      return x * x;
  }
  return x;
}


namespace {

// Applies f elementwise; a scalar second operand is hoisted so the loop vectorises.
template <typename F>
void each(float* a, const float* b, int64_t b_stride, int64_t n, F f) {
  if (b_stride == 0) {
    const float s = *b;
    for (int64_t i = 0; i < n; ++i) a[i] = f(a[i], s);
  } else {
    for (int64_t i = 0; i < n; ++i) a[i] = f(a[i], b[i * b_stride]);
  }
}

template <typename F>
void each(float* x, int64_t n, float scale, float bias, F f) {
  for (int64_t i = 0; i < n; ++i) x[i] = f(x[i] * scale + bias);
}

}  // namespace

void apply_alu(AluOp op, float* a, const float* b, int64_t b_stride, int64_t n) {
  switch (op) {
    case AluOp::kBypass:
      return;
    case AluOp::kAdd:
      return each(a, b, b_stride, n, [](float x, float y) { return x + y; });
    case AluOp::kSubtract:
      return each(a, b, b_stride, n, [](float x, float y) { return x - y; });
    case AluOp::kMultiply:
      return each(a, b, b_stride, n, [](float x, float y) { return x * y; });
    case AluOp::kDivide:
      return each(a, b, b_stride, n, [](float x, float y) { return x / y; });
    default:  // the rest are rare in kernels: one element at a time
      return each(a, b, b_stride, n, [op](float x, float y) { return apply_alu(op, x, y); });
  }
}

void apply_activation(Activation function, float* x, int64_t n, float scale, float bias) {
  switch (function) {
    case Activation::kIdentity:
      return each(x, n, scale, bias, [](float v) { return v; });
    case Activation::kSquare:
      return each(x, n, scale, bias, [](float v) { return v * v; });
    case Activation::kSqrt:
      return each(x, n, scale, bias, [](float v) { return std::sqrt(v); });
    case Activation::kRsqrt:
      return each(x, n, scale, bias, [](float v) { return 1.0f / std::sqrt(v); });
    case Activation::kReciprocal:
      return each(x, n, scale, bias, [](float v) { return 1.0f / v; });
    case Activation::kExp:
      return each(x, n, scale, bias, [](float v) { return std::exp(v); });
    default:
      return each(x, n, scale, bias, [function](float v) { return apply_activation(function, v); });
  }
}

}  // namespace switchyard::neuron
