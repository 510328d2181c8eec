// A Backend that forwards every call to another backend and times it, so that `bench train
// --profile` can say where a step's time goes, kernel by kernel, on any device.
//
// Each call waits for the wrapped backend to finish (synchronize()) before the clock stops: on
// asynchronous devices that serialises host and device, so profiled steps run somewhat slower than
// unprofiled ones; the shares are what matter. The wrapped backend must outlive this one.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/backend.h"

namespace switchyard::backend {

struct KernelTime {
  std::string kernel;  // the Backend method, e.g. "matmul_backward"
  int64_t calls = 0;
  double ms = 0;
};

class ProfilingBackend final : public Backend {
 public:
  explicit ProfilingBackend(Backend& inner) : inner_(inner) {}

  // Time per kernel since construction or the last reset(), largest first.
  std::vector<KernelTime> kernel_times() const;
  void reset() { times_.clear(); }

  std::string name() const override { return inner_.name(); }
  std::string description() const override { return inner_.description(); }
  void* allocate(size_t bytes) override { return inner_.allocate(bytes); }
  void release(void* ptr) override { inner_.release(ptr); }
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void fill_zero(void* ptr, size_t bytes) override;
  void synchronize() override { inner_.synchronize(); }
  std::optional<SimulationReport> simulation_report() const override {
    return inner_.simulation_report();
  }
  void start_trace() override { inner_.start_trace(); }
  void finish_trace(const std::string& path) override { inner_.finish_trace(path); }
  size_t activation_bytes() const override { return inner_.activation_bytes(); }
  std::optional<size_t> device_memory_peak_bytes() const override {
    return inner_.device_memory_peak_bytes();
  }
  void activations_to_host(float* dst, const float* src, size_t count) override;
  void activations_from_host(float* dst, const float* src, size_t count) override;
  size_t attention_record_floats(int B, int T, int NH) const override {
    return inner_.attention_record_floats(B, T, NH);
  }
  size_t attention_scratch_floats(int B, int T, int NH) const override {
    return inner_.attention_scratch_floats(B, T, NH);
  }

  void encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                       int T, int C) override;
  void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B,
                        int T, int C) override;
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                         const float* weight, const float* bias, int N, int C) override;
  void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, const float* mean,
                          const float* rstd, int N, int C) override;
  void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                      int C, int OC) override;
  void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, int N, int C, int OC) override;
  void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C,
                         int NH) override;
  void attention_backward(float* dqkv, float* scratch, const float* dout, const float* out,
                          const float* qkv, const float* att, int B, int T, int C,
                          int NH) override;
  void gelu_forward(float* out, const float* inp, size_t N) override;
  void gelu_backward(float* dinp, const float* inp, const float* dout, size_t N) override;
  void residual_forward(float* out, const float* a, const float* b, size_t N) override;
  void residual_layernorm_forward(float* residual, float* out, float* mean, float* rstd,
                                  const float* a, const float* b, const float* weight,
                                  const float* bias, int N, int C) override;
  void matmul_gelu_forward(float* pre, float* out, const float* inp, const float* weight,
                           const float* bias, int N, int C, int OC) override;
  void accumulate(float* dst, const float* src, size_t N) override;
  void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int N,
                             int V) override;
  void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                              float dloss, int N, int V) override;
  double sum_of_squares(const float* x, size_t N) override;
  void adamw_update(float* params, const float* grads, float* m, float* v, size_t N,
                    const AdamWStep& step) override;
  void accumulate_sum(double* total, const float* x, size_t N, double scale) override;
  void sum_of_squares_to(double* total, const float* x, size_t N) override;
  void adamw_update_clipped(float* params, const float* grads, float* m, float* v, size_t N,
                            const AdamWStep& step, const double* grad_sum_of_squares,
                            float clip) override;
  void attention_decode(float* out, const float* qkv, float* k_cache, float* v_cache, int B,
                        int pos, int max_T, int C, int NH) override;

 private:
  // Runs fn() on the wrapped backend and charges its time (until the device is idle) to `kernel`.
  template <typename Fn>
  auto timed(const char* kernel, Fn&& fn) {
    const auto start = std::chrono::steady_clock::now();
    if constexpr (std::is_void_v<decltype(fn())>) {
      fn();
      charge(kernel, start);
    } else {
      auto result = fn();
      charge(kernel, start);
      return result;
    }
  }
  void charge(const char* kernel, std::chrono::steady_clock::time_point start);

  Backend& inner_;
  std::map<std::string, KernelTime> times_;
};

}  // namespace switchyard::backend
