// Executor: ScalarE, VectorE and GpSimd instructions, in fp32 with results rounded to the output
// dtype.
#include <algorithm>
#include <cstring>

#include "core/dtype.h"
#include "neuron/executor.h"
#include "neuron/parallel.h"

namespace switchyard::neuron {

template <typename RowFn>
void Executor::compute_rows(const View& out, std::initializer_list<const View*> inputs,
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

const float* Executor::input_row(const View& in, int64_t p, float* staging) const {
  if (in.dtype() == DType::kF32 && in.rows_contiguous())
    return reinterpret_cast<const float*>(element_base(in, p));
  load_partition(in, p, staging);
  return staging;
}

void Executor::load_row(const View& in, int64_t p, float* dst) const {
  const float* src = input_row(in, p, dst);
  if (src != dst) std::memmove(dst, src, static_cast<size_t>(in.free_size()) * sizeof(float));
}

void Executor::tensor_tensor(const View& out, const View& a, AluOp alu, const View& b) {
  const int64_t n = out.elements();
  const int64_t F = out.free_size();
  std::span<float> x = scratch(0, n);
  std::span<float> y = scratch(1, n);
  compute_rows(out, {&a, &b}, x.data(), [&](int64_t p, float* row) {
    const float* b_row = input_row(b, p, y.data() + p * F);
    load_row(a, p, row);
    apply_alu(alu, row, b_row, 1, F);
  });
}

void Executor::tensor_scalar(const View& out, const View& in, AluOp op0, const Operand& s0,
                             AluOp op1, const Operand& s1) {
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
}

void Executor::tensor_reduce(const View& out, AluOp alu, const View& in, int axes) {
  const ReduceShape shape = reduce_shape(in, axes);
  const int64_t inner = shape.inner;
  const int64_t outer = shape.outer;
  int64_t F = in.free_size();
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
}

void Executor::tensor_copy(const View& out, const View& in) {
  std::span<float> x = scratch(0, in.elements());
  load(in, x.data());
  store(out, x.data());
}

void Executor::reciprocal(const View& out, const View& in) {
  std::span<float> x = scratch(0, in.elements());
  load(in, x.data());
  for (float& e : x) e = 1.0f / e;
  store(out, x.data());
}

void Executor::memset(const View& out, float value) {
  std::span<float> x = scratch(0, out.elements());
  std::fill(x.begin(), x.end(), value);
  store(out, x.data());
}

void Executor::select(const View& out, const View& predicate, const View& on_true,
                      const View& on_false) {
  int64_t n = out.elements();
  std::span<float> c = scratch(0, n);
  std::span<float> t = scratch(1, n);
  std::span<float> f = scratch(2, n);
  load(predicate, c.data());
  load(on_true, t.data());
  load(on_false, f.data());
  for (int64_t i = 0; i < n; ++i) t[i] = c[i] != 0.0f ? t[i] : f[i];
  store(out, t.data());
}

void Executor::mxfp4_decode(const View& out, const View& codes, const View& scales) {
  // Value v of a partition is the E2M1 code in nibble v % 2 (low first) of code byte v / 2, times
  // 2^(s - 127) for the scale byte s of its run: the very product decode_mxfp4_block forms.
  const int64_t P = out.partitions();
  const int64_t F = out.free_size();
  const int64_t groups = scales.free_size();
  const int64_t group = F / groups;
  std::span<float> result = scratch(0, P * F);
  auto* code_bytes = reinterpret_cast<uint8_t*>(scratch(1, (P * F / 2 + 3) / 4).data());
  auto* scale_bytes = reinterpret_cast<uint8_t*>(scratch(2, (P * groups + 3) / 4).data());
  compute_rows(out, {&codes, &scales}, result.data(), [&](int64_t p, float* row) {
    uint8_t* c = code_bytes + p * (F / 2);
    uint8_t* s = scale_bytes + p * groups;
    gather_partition_bytes(codes, p, c);
    gather_partition_bytes(scales, p, s);
    for (int64_t g = 0; g < groups; ++g) {
      const float scale = e8m0_to_float(s[g]);
      for (int64_t v = g * group; v < (g + 1) * group; v += 2) {
        row[v] = kFp4E2M1Values[c[v / 2] & 0xF] * scale;
        row[v + 1] = kFp4E2M1Values[c[v / 2] >> 4] * scale;
      }
    }
  });
}

namespace {

// base + partition_step * p + sum_d free_steps[d] * i_d over a view's elements, in load order.
std::vector<double> affine_values(const View& v, double base, double partition_step,
                                  const std::vector<float>& free_steps) {
  std::vector<double> values;
  values.reserve(static_cast<size_t>(v.elements()));
  int dims = v.free_dims();
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

void Executor::iota(const View& out, float base, float partition_step,
                    const std::vector<float>& free_steps) {
  std::vector<double> values = affine_values(out, base, partition_step, free_steps);
  std::vector<float> x(values.begin(), values.end());
  store(out, x.data());
}

void Executor::affine_select(const View& out, const View& in, float base, float partition_step,
                             const std::vector<float>& free_steps, AluOp cmp, float fill) {
  std::vector<double> values = affine_values(out, base, partition_step, free_steps);
  std::span<float> x = scratch(0, in.elements());
  load(in, x.data());
  for (size_t i = 0; i < x.size(); ++i) {
    if (apply_alu(cmp, static_cast<float>(values[i]), 0.0f) == 0.0f) x[i] = fill;
  }
  store(out, x.data());
}

void Executor::activation(const View& out, Activation function, const View& in,
                          const View* reduce_out, const Operand& scale, const Operand& bias) {
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
}

}  // namespace switchyard::neuron
