// What the GPU tests share: tensors in a backend's memory with values moved as fp32, the same
// tensor on a GPU and on the CPU reference, views into packed projections, and whether a device
// can run here.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "relative_error.h"

namespace switchyard {

using backend::Backend;

// Why `device` cannot run here, or "" when it can.
inline std::string unavailable_reason(const std::string& device) {
  for (const backend::BackendInfo& info : backend::list_backends()) {
    if (info.name == device) return info.available ? "" : info.detail;
  }
  return "not registered";
}

// One dense tensor in a backend's memory. Float values move as fp32 on the host (bf16 tensors
// are rounded on the way in and widened on the way out); int32 ids are copied as they are.
class DeviceTensor {
 public:
  DeviceTensor(Backend& backend, DType dtype, std::initializer_list<int64_t> shape)
      : backend_(backend) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    data_ = backend.allocate(std::max<size_t>(1, storage_bytes(dtype, n)));
    tensor_ = Tensor::dense(data_, dtype, shape);
  }
  DeviceTensor(Backend& backend, DType dtype, std::initializer_list<int64_t> shape,
               const std::vector<float>& values)
      : DeviceTensor(backend, dtype, shape) {
    write(values);
  }
  DeviceTensor(Backend& backend, const std::vector<int32_t>& ids)
      : DeviceTensor(backend, DType::kI32, {static_cast<int64_t>(ids.size())}) {
    backend.copy_to_device(data_, ids.data(), ids.size() * sizeof(int32_t));
  }
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;
  ~DeviceTensor() { backend_.release(data_); }

  const Tensor& tensor() const { return tensor_; }
  // The same memory as a flat [numel] tensor (for AdamW, SumOfSquares).
  Tensor flat() const { return Tensor::dense(data_, tensor_.dtype, {tensor_.numel()}); }
  void zero() { backend_.fill_zero(data_, std::max<size_t>(1, tensor_.bytes())); }
  void write(const std::vector<float>& values) {
    ASSERT_EQ(static_cast<int64_t>(values.size()), tensor_.numel());
    backend::from_host_f32(backend_, tensor_, values.data());
  }
  std::vector<float> read() const { return backend::to_host_f32(backend_, tensor_); }
  std::vector<int32_t> read_i32() const {
    std::vector<int32_t> values(static_cast<size_t>(tensor_.numel()));
    backend_.copy_to_host(values.data(), data_, values.size() * sizeof(int32_t));
    return values;
  }
  double read_f64() const {
    double value = 0;
    backend_.copy_to_host(&value, data_, sizeof(double));
    return value;
  }

 private:
  Backend& backend_;
  void* data_ = nullptr;
  Tensor tensor_;
};

// The same tensor on the GPU and on the CPU reference. The CPU gets the values as the GPU holds
// them (rounded to bf16 in bf16 mode), so that both compute from the same inputs.
struct Pair {
  DeviceTensor gpu, cpu;
  Pair(Backend& g, Backend& c, DType gpu_dtype, std::initializer_list<int64_t> shape,
       const std::vector<float>& values)
      : gpu(g, gpu_dtype, shape, values), cpu(c, DType::kF32, shape, gpu.read()) {}
  Pair(Backend& g, Backend& c, const std::vector<int32_t>& ids) : gpu(g, ids), cpu(c, ids) {}
  // Zeros of `dtype` on both (fp64 step statistics).
  Pair(Backend& g, Backend& c, DType dtype, std::initializer_list<int64_t> shape)
      : gpu(g, dtype, shape), cpu(c, dtype, shape) {
    gpu.zero();
    cpu.zero();
  }
  double error() const { return relative_error(gpu.read(), cpu.read()); }
};

// [rows, heads, head_dim] view of columns col0 .. col0 + heads * head_dim of a [rows, width]
// tensor (q, k or v inside a packed projection).
inline Tensor heads_view(const Tensor& t, int64_t col0, int64_t heads, int64_t head_dim) {
  Tensor view = Tensor::dense(t.data, t.dtype, {t.shape[0], heads, head_dim});
  view.strides[0] = t.shape[1];
  view.data = static_cast<char*>(t.data) + col0 * dtype_bytes(t.dtype);
  return view;
}

// A GPU device (the test's parameter: "cuda" or "cuda-fp32") and the CPU reference; skips, saying
// why, where the device cannot run.
class GpuAgainstCpu : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string reason = unavailable_reason(GetParam());
    if (!reason.empty()) GTEST_SKIP() << GetParam() << " cannot run here: " << reason;
    gpu_ = backend::create_backend(GetParam());
    cpu_ = backend::create_backend("cpu");
  }
  bool bf16() const { return GetParam() == "cuda"; }
  // What the activation type allows: fp32 to within reordering of sums, bf16 to its 8 bits.
  double tol() const { return bf16() ? 2e-2 : 1e-5; }
  DType act_dtype() const { return gpu_->precision().activations; }
  Pair act(std::initializer_list<int64_t> shape, const std::vector<float>& v) {
    return Pair(*gpu_, *cpu_, act_dtype(), shape, v);
  }
  Pair fp32(std::initializer_list<int64_t> shape, const std::vector<float>& v) {
    return Pair(*gpu_, *cpu_, DType::kF32, shape, v);
  }
  // Linear weights as the products read them (the bf16 copy in bf16 mode).
  Pair weights(std::initializer_list<int64_t> shape, const std::vector<float>& v) {
    return Pair(*gpu_, *cpu_, gpu_->precision().matmul_weights, shape, v);
  }
  Pair ids(const std::vector<int32_t>& t) { return Pair(*gpu_, *cpu_, t); }
  // Runs the op make(on) builds on each backend, `on` picking that backend's tensor of a Pair.
  template <typename MakeOp>
  void run_both(MakeOp make) {
    gpu_->run(make([](const Pair& p) { return p.gpu.tensor(); }));
    cpu_->run(make([](const Pair& p) { return p.cpu.tensor(); }));
  }

  std::unique_ptr<Backend> gpu_, cpu_;
};

// Prints a measured error (the test's name says where it comes from) and returns it.
inline double measured(const char* what, double error) {
  std::printf("  %-10s relative error %.2e\n", what, error);
  return error;
}

}  // namespace switchyard
