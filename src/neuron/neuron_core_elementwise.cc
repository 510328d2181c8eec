// NeuronCore: ScalarE, VectorE and GpSimd instructions. All compute in fp32 and round the result
// to the output dtype; costs follow cost_model.h.
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "neuron/cost_model.h"
#include "neuron/neuron_core.h"
#include "neuron/parallel.h"

namespace switchyard::neuron {

namespace {

bool is_comparison(AluOp op) {
  return op == AluOp::kIsEqual || op == AluOp::kNotEqual || op == AluOp::kIsGreater ||
         op == AluOp::kIsGreaterEqual || op == AluOp::kIsLess || op == AluOp::kIsLessEqual;
}

}  // namespace

// Shared checks of an elementwise instruction: the engine may run it, every operand is valid for
// it, and all operands cover the same partitions count with the same free size as out.
#define SY_REQUIRE_ENGINE(op, engine, allowed)                                                \
  do {                                                                                        \
    if (!(allowed)) rule_error(op, fmt::format("{} cannot run {}", engine_name(engine), op)); \
  } while (0)

template <typename RowFn>
void NeuronCore::compute_rows(const View& out, std::initializer_list<const View*> inputs,
                              float* result, RowFn&& row) {
  const int64_t F = out.free_size();
  if (!rowwise_safe(out, inputs)) {
    for_each_partition(out.partitions(), out.elements(),
                       [&](int64_t p) { row(p, result + p * F); });
    store(out, result);
    return;
  }
  // An fp32 output needs no rounding: rows are computed in place in SBUF/PSUM, unless that
  // could overwrite an input before it is read (an input in the same tile, other than a first
  // input that is exactly the output).
  bool direct = out.dtype() == DType::kF32 && out.rows_contiguous();
  bool first = true;
  for (const View* in : inputs) {
    if (in->allocation() == out.allocation() && !(first && in->same_pattern(out))) direct = false;
    first = false;
  }
  for_each_partition(out.partitions(), out.elements(), [&](int64_t p) {
    if (direct) {
      row(p, reinterpret_cast<float*>(element_base(out, p)));
    } else {
      row(p, result + p * F);
      store_partition(out, p, result + p * F);
    }
  });
}

const float* NeuronCore::input_row(const View& in, int64_t p, float* staging) const {
  if (in.dtype() == DType::kF32 && in.rows_contiguous())
    return reinterpret_cast<const float*>(element_base(in, p));
  load_partition(in, p, staging);
  return staging;
}

void NeuronCore::load_row(const View& in, int64_t p, float* dst) const {
  const float* src = input_row(in, p, dst);
  if (src != dst) std::memmove(dst, src, static_cast<size_t>(in.free_size()) * sizeof(float));
}

void NeuronCore::tensor_tensor(const View& out, const View& a, AluOp alu, const View& b,
                               Engine engine) {
  const char* op = "tensor_tensor";
  SY_REQUIRE_ENGINE(op, engine, engine == Engine::kVector || engine == Engine::kGpSimd);
  check_engine_operand(op, "out", engine, out, true);
  check_engine_operand(op, "a", engine, a, false);
  check_engine_operand(op, "b", engine, b, false);
  if (alu == AluOp::kBypass) rule_error(op, "bypass is not a binary operation");
  for (const View* v : {&a, &b}) {
    if (v->partitions() != out.partitions() || v->free_size() != out.free_size())
      rule_error(op, fmt::format("operand {} does not match out {} ({} x {} elements)",
                                 v->describe(), out.describe(), out.partitions(), out.free_size()));
  }
  const int64_t n = out.elements();
  const int64_t F = out.free_size();
  std::span<float> x = scratch(0, n);
  std::span<float> y = scratch(1, n);
  compute_rows(out, {&a, &b}, x.data(), [&](int64_t p, float* row) {
    const float* b_row = input_row(b, p, y.data() + p * F);
    load_row(a, p, row);
    apply_alu(alu, row, b_row, 1, F);
  });

  Accesses acc;
  acc.read(region_of(a));
  acc.read(region_of(b));
  acc.write(region_of(out));
  double cycles = elementwise_cycles(op, engine, out.free_size(), 2, {&out, &a, &b}, false);
  // Exception (perf guide): bf16 SBUF tensor_tensor add/subtract/multiply streams at N, not 2N.
  bool bf16_sbuf = true;
  for (const View* v : {&out, &a, &b})
    bf16_sbuf = bf16_sbuf && v->dtype() == DType::kBF16 && v->memory() == Memory::kSbuf;
  if (engine == Engine::kVector && bf16_sbuf &&
      (alu == AluOp::kAdd || alu == AluOp::kSubtract || alu == AluOp::kMultiply)) {
    cycles = elementwise_cycles(op, engine, out.free_size(), 1, {&out, &a, &b}, false);
  }
  schedule_elementwise(op, engine, acc, cycles);
}

void NeuronCore::read_scalar_operands(const char* op, const char* role, Engine engine,
                                      const View& out, std::initializer_list<const Operand*> operands,
                                      Accesses& accesses) const {
  for (const Operand* s : operands) {
    if (!s->is_view()) continue;
    check_engine_operand(op, role, engine, s->view(), false);
    if (s->view().partitions() != out.partitions() || s->view().free_size() != 1)
      rule_error(op, fmt::format("{} {} must be [{}, 1]", role, s->view().describe(),
                                 out.partitions()));
    accesses.read(region_of(s->view()));
  }
}

void NeuronCore::tensor_scalar(const View& out, const View& in, AluOp op0, Operand s0, AluOp op1,
                               Operand s1, Engine engine) {
  const char* op = "tensor_scalar";
  SY_REQUIRE_ENGINE(op, engine, engine == Engine::kVector || engine == Engine::kGpSimd);
  check_engine_operand(op, "out", engine, out, true);
  check_engine_operand(op, "in", engine, in, false);
  if (in.partitions() != out.partitions() || in.free_size() != out.free_size())
    rule_error(op, fmt::format("in {} does not match out {}", in.describe(), out.describe()));
  Accesses acc;
  acc.read(region_of(in));
  read_scalar_operands(op, "scalar operand", engine, out, {&s0, &s1}, acc);
  acc.write(region_of(out));
  int64_t P = out.partitions();
  int64_t F = out.free_size();
  std::span<float> x = scratch(0, P * F);
  std::span<float> a = load_operand(s0, P, 1);
  std::span<float> b = load_operand(s1, P, 2);
  compute_rows(out, {&in}, x.data(), [&](int64_t p, float* row) {
    load_row(in, p, row);
    apply_alu(op0, row, &a[p], 0, F);
    apply_alu(op1, row, &b[p], 0, F);
  });
  schedule_elementwise(op, engine, acc, elementwise_cycles(op, engine, F, 1, {&out, &in}, true));
}

void NeuronCore::tensor_reduce(const View& out, AluOp alu, const View& in, int axes,
                               Engine engine) {
  const char* op = "tensor_reduce";
  SY_REQUIRE_ENGINE(op, engine, engine == Engine::kVector || engine == Engine::kGpSimd);
  check_engine_operand(op, "out", engine, out, true);
  check_engine_operand(op, "in", engine, in, false);
  if (alu != AluOp::kAdd && alu != AluOp::kMax && alu != AluOp::kMin && alu != AluOp::kMultiply)
    rule_error(op, fmt::format("reduction op must be add, max, min or multiply, got {}",
                               alu_op_name(alu)));
  if (axes < 1) rule_error(op, fmt::format("axes must be >= 1, got {}", axes));
  int reduced = std::min(axes, std::max(in.free_dims(), 1));
  int64_t inner = 1;
  for (int d = in.free_dims() - reduced; d < in.free_dims(); ++d) inner *= in.free_dim(d).size;
  int64_t F = in.free_size();
  int64_t outer = F / inner;
  if (out.partitions() != in.partitions() || out.free_size() != outer)
    rule_error(op, fmt::format("out {} must be [{}, {}] (in {} reduced over its {} innermost free "
                               "dimensions)",
                               out.describe(), in.partitions(), outer, in.describe(), reduced));
  int64_t P = in.partitions();
  std::span<float> x = scratch(0, P * F);
  std::span<float> r = scratch(1, P * outer);
  load(in, x.data());
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t o = 0; o < outer; ++o) {
      const float* row = x.data() + p * F + o * inner;
      float value = row[0];
      for (int64_t i = 1; i < inner; ++i) value = apply_alu(alu, value, row[i]);
      r[p * outer + o] = value;
    }
  }
  store(out, r.data());
  Accesses acc;
  acc.read(region_of(in));
  acc.write(region_of(out));
  double cycles = elementwise_cycles(op, engine, F, 1, {&in}, false);
  // Exception (perf guide): bf16 tensor_reduce add/max at N/2.
  if (engine == Engine::kVector && in.dtype() == DType::kBF16 &&
      (alu == AluOp::kAdd || alu == AluOp::kMax)) {
    cycles = std::max(static_cast<double>(cost::kVectorMinIssueCycles),
                      cycles / cost::kVectorBf16ReduceDivisor);
  }
  schedule_elementwise(op, engine, acc, cycles);
}

void NeuronCore::tensor_copy(const View& out, const View& in, Engine engine) {
  const char* op = "tensor_copy";
  SY_REQUIRE_ENGINE(op, engine, engine != Engine::kTensor);
  check_engine_operand(op, "out", engine, out, true);
  check_engine_operand(op, "in", engine, in, false);
  if (in.partitions() != out.partitions() || in.free_size() != out.free_size())
    rule_error(op, fmt::format("in {} does not match out {}", in.describe(), out.describe()));
  std::span<float> x = scratch(0, in.elements());
  load(in, x.data());
  store(out, x.data());
  Accesses acc;
  acc.read(region_of(in));
  acc.write(region_of(out));
  schedule_elementwise(op, engine, acc,
                       elementwise_cycles(op, engine, out.free_size(), 1, {&out, &in}, true));
}

void NeuronCore::reciprocal(const View& out, const View& in, Engine engine) {
  const char* op = "reciprocal";
  SY_REQUIRE_ENGINE(op, engine, engine == Engine::kVector || engine == Engine::kGpSimd);
  check_engine_operand(op, "out", engine, out, true);
  check_engine_operand(op, "in", engine, in, false);
  if (in.partitions() != out.partitions() || in.free_size() != out.free_size())
    rule_error(op, fmt::format("in {} does not match out {}", in.describe(), out.describe()));
  std::span<float> x = scratch(0, in.elements());
  load(in, x.data());
  for (float& e : x) e = 1.0f / e;
  store(out, x.data());
  Accesses acc;
  acc.read(region_of(in));
  acc.write(region_of(out));
  double cycles = elementwise_cycles(op, engine, out.free_size(), 1, {&out, &in}, false);
  if (engine == Engine::kVector) cycles *= cost::kVectorReciprocalFactor;  // perf guide: 8N
  schedule_elementwise(op, engine, acc, cycles);
}

void NeuronCore::memset(const View& out, float value, Engine engine) {
  const char* op = "memset";
  SY_REQUIRE_ENGINE(op, engine, engine != Engine::kTensor);
  check_engine_operand(op, "out", engine, out, true);
  std::span<float> x = scratch(0, out.elements());
  std::fill(x.begin(), x.end(), value);
  store(out, x.data());
  Accesses acc;
  acc.write(region_of(out));
  schedule_elementwise(op, engine, acc,
                       elementwise_cycles(op, engine, out.free_size(), 1, {&out}, false));
}

void NeuronCore::select(const View& out, const View& predicate, const View& on_true,
                        const View& on_false, Engine engine) {
  const char* op = "select";
  SY_REQUIRE_ENGINE(op, engine, engine == Engine::kVector || engine == Engine::kGpSimd);
  check_engine_operand(op, "out", engine, out, true);
  check_engine_operand(op, "predicate", engine, predicate, false);
  check_engine_operand(op, "on_true", engine, on_true, false);
  check_engine_operand(op, "on_false", engine, on_false, false);
  for (const View* v : {&predicate, &on_true, &on_false}) {
    if (v->partitions() != out.partitions() || v->free_size() != out.free_size())
      rule_error(op,
                 fmt::format("operand {} does not match out {}", v->describe(), out.describe()));
  }
  int64_t n = out.elements();
  std::span<float> c = scratch(0, n);
  std::span<float> t = scratch(1, n);
  std::span<float> f = scratch(2, n);
  load(predicate, c.data());
  load(on_true, t.data());
  load(on_false, f.data());
  for (int64_t i = 0; i < n; ++i) t[i] = c[i] != 0.0f ? t[i] : f[i];
  store(out, t.data());
  Accesses acc;
  acc.read(region_of(predicate));
  acc.read(region_of(on_true));
  acc.read(region_of(on_false));
  acc.write(region_of(out));
  schedule_elementwise(op, engine, acc,
                       elementwise_cycles(op, engine, out.free_size(), 3,
                                          {&out, &predicate, &on_true, &on_false}, false));
}

namespace {

// base + partition_step * p + sum_d free_steps[d] * i_d over a view's elements, in load order.
std::vector<double> affine_values(const View& v, double base, double partition_step,
                                  const std::vector<float>& free_steps) {
  std::vector<double> values;
  values.reserve(static_cast<size_t>(v.elements()));
  int dims = v.free_dims();
  std::vector<int64_t> index(static_cast<size_t>(dims), 0);
  for (int64_t p = 0; p < v.partitions(); ++p) {
    for (int64_t i = 0; i < v.free_size(); ++i) {
      int64_t rest = i;
      double value = base + partition_step * static_cast<double>(p);
      for (int d = dims - 1; d >= 0; --d) {
        int64_t id = rest % v.free_dim(d).size;
        rest /= v.free_dim(d).size;
        value += static_cast<double>(free_steps[static_cast<size_t>(d)]) * static_cast<double>(id);
      }
      values.push_back(value);
    }
  }
  return values;
}

}  // namespace

void NeuronCore::iota(const View& out, float base, float partition_step,
                      const std::vector<float>& free_steps) {
  const char* op = "iota";
  check_engine_operand(op, "out", Engine::kGpSimd, out, true);
  if (static_cast<int>(free_steps.size()) != out.free_dims())
    rule_error(op, fmt::format("needs one step per free dimension of out {} ({}), got {}",
                               out.describe(), out.free_dims(), free_steps.size()));
  std::vector<double> values = affine_values(out, base, partition_step, free_steps);
  std::vector<float> x(values.begin(), values.end());
  store(out, x.data());
  Accesses acc;
  acc.write(region_of(out));
  schedule_elementwise(op, Engine::kGpSimd, acc,
                       static_cast<double>(cost::kGpSimdFixedCycles + out.free_size()));
}

void NeuronCore::affine_select(const View& out, const View& in, float base, float partition_step,
                               const std::vector<float>& free_steps, AluOp cmp, float fill) {
  const char* op = "affine_select";
  check_engine_operand(op, "out", Engine::kGpSimd, out, true);
  check_engine_operand(op, "in", Engine::kGpSimd, in, false);
  if (!is_comparison(cmp))
    rule_error(op, fmt::format("cmp must be a comparison, got {}", alu_op_name(cmp)));
  if (in.partitions() != out.partitions() || in.free_size() != out.free_size())
    rule_error(op, fmt::format("in {} does not match out {}", in.describe(), out.describe()));
  if (static_cast<int>(free_steps.size()) != out.free_dims())
    rule_error(op, fmt::format("needs one step per free dimension of out {} ({}), got {}",
                               out.describe(), out.free_dims(), free_steps.size()));
  std::vector<double> values = affine_values(out, base, partition_step, free_steps);
  std::span<float> x = scratch(0, in.elements());
  load(in, x.data());
  for (size_t i = 0; i < x.size(); ++i) {
    if (apply_alu(cmp, static_cast<float>(values[i]), 0.0f) == 0.0f) x[i] = fill;
  }
  store(out, x.data());
  Accesses acc;
  acc.read(region_of(in));
  acc.write(region_of(out));
  schedule_elementwise(op, Engine::kGpSimd, acc,
                       static_cast<double>(cost::kGpSimdFixedCycles + out.free_size()));
}

void NeuronCore::activation(const View& out, Activation function, const View& in, Operand scale,
                            Operand bias) {
  activation_impl(out, function, in, nullptr, scale, bias);
}

void NeuronCore::activation_reduce(const View& out, Activation function, const View& in,
                                   const View& reduce_out, Operand scale, Operand bias) {
  activation_impl(out, function, in, &reduce_out, scale, bias);
}

void NeuronCore::activation_impl(const View& out, Activation function, const View& in,
                                 const View* reduce_out, Operand scale, Operand bias) {
  const char* op = reduce_out ? "activation_reduce" : "activation";
  Engine engine = Engine::kScalar;
  check_engine_operand(op, "out", engine, out, true);
  check_engine_operand(op, "in", engine, in, false);
  if (in.partitions() != out.partitions() || in.free_size() != out.free_size())
    rule_error(op, fmt::format("in {} does not match out {}", in.describe(), out.describe()));
  Accesses acc;
  acc.read(region_of(in));
  read_scalar_operands(op, "scale/bias operand", engine, out, {&scale, &bias}, acc);
  if (reduce_out) {
    check_engine_operand(op, "reduce_out", engine, *reduce_out, true);
    if (reduce_out->partitions() != out.partitions() || reduce_out->free_size() != 1)
      rule_error(op, fmt::format("reduce_out {} must be [{}, 1]", reduce_out->describe(),
                                 out.partitions()));
  }
  acc.write(region_of(out));
  if (reduce_out) acc.write(region_of(*reduce_out));
  int64_t P = out.partitions();
  int64_t F = out.free_size();
  std::span<float> x = scratch(0, P * F);
  std::span<float> a = load_operand(scale, P, 2);
  std::span<float> b = load_operand(bias, P, 3);
  std::span<float> sums = scratch(1, P);
  std::fill(sums.begin(), sums.end(), 0.0f);
  compute_rows(out, {&in}, x.data(), [&](int64_t p, float* row) {
    load_row(in, p, row);
    apply_activation(function, row, F, a[p], b[p]);
    if (reduce_out) {
      float sum = 0.0f;  // in order, as the engine accumulates
      for (int64_t f = 0; f < F; ++f) sum += row[f];
      sums[p] = sum;
    }
  });
  if (reduce_out) store(*reduce_out, sums.data());
  double cycles = elementwise_cycles(op, engine, F, 1, {&out, &in}, false);
  if (reduce_out) cycles += cost::kScalarReduceCycles;
  schedule_elementwise(op, engine, acc, cycles);
}

}  // namespace switchyard::neuron
