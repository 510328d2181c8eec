// The CPU backend: the kernel set on the host, with host memory as "device" memory.
//
// Each kernel is the float instantiation of the templates in cpu_kernels.h (oneDNN for the matrix
// products, OpenMP across cores). Kernels run synchronously, so synchronize() is a no-op. Arguments
// that a caller could get wrong cheaply (shapes that do not divide, token ids, cache positions) are
// checked here and reported as switchyard::Error before any kernel runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "backend/backend.h"

namespace switchyard::backend::cpu {

// One line about this machine: CPU model, cores/threads, widest vector ISA, memory, OpenMP threads.
std::string describe_host_cpu();

class CpuBackend final : public Backend {
 public:
  CpuBackend() = default;

  // Peak resident set size of this process (VmHWM), in bytes; 0 where /proc is unavailable.
  static size_t peak_rss_bytes();

  std::string name() const override { return "cpu"; }
  std::string description() const override;

  void* allocate(size_t bytes) override;
  void release(void* ptr) override;
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void fill_zero(void* ptr, size_t bytes) override;

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
  void accumulate(float* dst, const float* src, size_t N) override;
  void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int N,
                             int V) override;
  void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                              float dloss, int N, int V) override;
  double sum_of_squares(const float* x, size_t N) override;
  void adamw_update(float* params, const float* grads, float* m, float* v, size_t N,
                    const AdamWStep& step) override;
  void attention_decode(float* out, const float* qkv, float* k_cache, float* v_cache, int B,
                        int pos, int max_T, int C, int NH) override;
};

}  // namespace switchyard::backend::cpu
