#include "backend/profiling_backend.h"

#include <algorithm>

namespace switchyard::backend {

std::vector<KernelTime> ProfilingBackend::kernel_times() const {
  std::vector<KernelTime> out;
  for (const auto& [kernel, t] : times_) out.push_back(t);
  std::sort(out.begin(), out.end(), [](const KernelTime& a, const KernelTime& b) { return a.ms > b.ms; });
  return out;
}

void ProfilingBackend::charge(const char* kernel, std::chrono::steady_clock::time_point start) {
  inner_.synchronize();
  KernelTime& t = times_[kernel];
  t.kernel = kernel;
  t.calls += 1;
  t.ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

void ProfilingBackend::copy_to_device(void* dst, const void* src, size_t bytes) {
  timed("copy_to_device", [&] { inner_.copy_to_device(dst, src, bytes); });
}

void ProfilingBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  timed("copy_to_host", [&] { inner_.copy_to_host(dst, src, bytes); });
}

void ProfilingBackend::activations_to_host(float* dst, const float* src, size_t count) {
  timed("activations_to_host", [&] { inner_.activations_to_host(dst, src, count); });
}

void ProfilingBackend::activations_from_host(float* dst, const float* src, size_t count) {
  timed("activations_from_host", [&] { inner_.activations_from_host(dst, src, count); });
}

void ProfilingBackend::fill_zero(void* ptr, size_t bytes) {
  timed("fill_zero", [&] { inner_.fill_zero(ptr, bytes); });
}

void ProfilingBackend::encoder_forward(float* out, const int32_t* tokens, const float* wte,
                                       const float* wpe, int B, int T, int C) {
  timed("encoder_forward", [&] { inner_.encoder_forward(out, tokens, wte, wpe, B, T, C); });
}

void ProfilingBackend::encoder_backward(float* dwte, float* dwpe, const float* dout,
                                        const int32_t* tokens, int B, int T, int C) {
  timed("encoder_backward", [&] { inner_.encoder_backward(dwte, dwpe, dout, tokens, B, T, C); });
}

void ProfilingBackend::layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                         const float* weight, const float* bias, int N, int C) {
  timed("layernorm_forward",
        [&] { inner_.layernorm_forward(out, mean, rstd, inp, weight, bias, N, C); });
}

void ProfilingBackend::layernorm_backward(float* dinp, float* dweight, float* dbias,
                                          const float* dout, const float* inp, const float* weight,
                                          const float* mean, const float* rstd, int N, int C) {
  timed("layernorm_backward", [&] {
    inner_.layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  });
}

void ProfilingBackend::matmul_forward(float* out, const float* inp, const float* weight,
                                      const float* bias, int N, int C, int OC) {
  timed("matmul_forward", [&] { inner_.matmul_forward(out, inp, weight, bias, N, C, OC); });
}

void ProfilingBackend::matmul_backward(float* dinp, float* dweight, float* dbias,
                                       const float* dout, const float* inp, const float* weight,
                                       int N, int C, int OC) {
  timed("matmul_backward",
        [&] { inner_.matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC); });
}

void ProfilingBackend::attention_forward(float* out, float* att, const float* qkv, int B, int T,
                                         int C, int NH) {
  timed("attention_forward", [&] { inner_.attention_forward(out, att, qkv, B, T, C, NH); });
}

void ProfilingBackend::attention_backward(float* dqkv, float* scratch, const float* dout,
                                          const float* out, const float* qkv, const float* att, int B, int T, int C,
                                          int NH) {
  timed("attention_backward",
        [&] { inner_.attention_backward(dqkv, scratch, dout, out, qkv, att, B, T, C, NH); });
}

void ProfilingBackend::gelu_forward(float* out, const float* inp, size_t N) {
  timed("gelu_forward", [&] { inner_.gelu_forward(out, inp, N); });
}

void ProfilingBackend::gelu_backward(float* dinp, const float* inp, const float* dout, size_t N) {
  timed("gelu_backward", [&] { inner_.gelu_backward(dinp, inp, dout, N); });
}

void ProfilingBackend::residual_forward(float* out, const float* a, const float* b, size_t N) {
  timed("residual_forward", [&] { inner_.residual_forward(out, a, b, N); });
}

void ProfilingBackend::residual_layernorm_forward(float* residual, float* out, float* mean,
                                                  float* rstd, const float* a, const float* b,
                                                  const float* weight, const float* bias, int N,
                                                  int C) {
  timed("residual_layernorm_forward", [&] {
    inner_.residual_layernorm_forward(residual, out, mean, rstd, a, b, weight, bias, N, C);
  });
}

void ProfilingBackend::matmul_gelu_forward(float* pre, float* out, const float* inp,
                                           const float* weight, const float* bias, int N, int C,
                                           int OC) {
  timed("matmul_gelu_forward",
        [&] { inner_.matmul_gelu_forward(pre, out, inp, weight, bias, N, C, OC); });
}

void ProfilingBackend::accumulate(float* dst, const float* src, size_t N) {
  timed("accumulate", [&] { inner_.accumulate(dst, src, N); });
}

void ProfilingBackend::cross_entropy_forward(float* losses, const float* logits,
                                             const int32_t* targets, int N, int V) {
  timed("cross_entropy_forward",
        [&] { inner_.cross_entropy_forward(losses, logits, targets, N, V); });
}

void ProfilingBackend::cross_entropy_backward(float* dlogits, const float* logits,
                                              const int32_t* targets, float dloss, int N, int V) {
  timed("cross_entropy_backward",
        [&] { inner_.cross_entropy_backward(dlogits, logits, targets, dloss, N, V); });
}

double ProfilingBackend::sum_of_squares(const float* x, size_t N) {
  return timed("sum_of_squares", [&] { return inner_.sum_of_squares(x, N); });
}

void ProfilingBackend::adamw_update(float* params, const float* grads, float* m, float* v,
                                    size_t N, const AdamWStep& step) {
  timed("adamw_update", [&] { inner_.adamw_update(params, grads, m, v, N, step); });
}

void ProfilingBackend::accumulate_sum(double* total, const float* x, size_t N, double scale) {
  timed("accumulate_sum", [&] { inner_.accumulate_sum(total, x, N, scale); });
}

void ProfilingBackend::sum_of_squares_to(double* total, const float* x, size_t N) {
  timed("sum_of_squares", [&] { inner_.sum_of_squares_to(total, x, N); });
}

void ProfilingBackend::adamw_update_clipped(float* params, const float* grads, float* m, float* v,
                                            size_t N, const AdamWStep& step,
                                            const double* grad_sum_of_squares, float clip) {
  timed("adamw_update", [&] {
    inner_.adamw_update_clipped(params, grads, m, v, N, step, grad_sum_of_squares, clip);
  });
}

void ProfilingBackend::attention_decode(float* out, const float* qkv, float* k_cache,
                                        float* v_cache, int B, int pos, int max_T, int C, int NH) {
  timed("attention_decode",
        [&] { inner_.attention_decode(out, qkv, k_cache, v_cache, B, pos, max_T, C, NH); });
}

}  // namespace switchyard::backend
