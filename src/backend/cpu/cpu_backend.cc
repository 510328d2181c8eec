#include "backend/cpu/cpu_backend.h"

#include "backend/cpu/cpu_adamw.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/thread_adapter.h"
#include "core/error.h"

namespace switchyard::backend::cpu {
namespace {

constexpr size_t kAlignment = 64;
// Copies and fills above this size are split across threads; below it one core saturates memory.
constexpr size_t kParallelCopyBytes = size_t{8} << 20;

double gib(size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

size_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<size_t>(pages) * static_cast<size_t>(page_size);
}

void check_shape(bool ok, const char* kernel, const char* expected) {
  require(ok, "cpu {}: invalid shape, expected {}", kernel, expected);
}

template <typename Fn>
void split_bytes(size_t bytes, Fn&& fn) {
  if (bytes == 0) return;  // pointers may be null then, and memcpy/memset must not see them
  if (bytes < kParallelCopyBytes) {
    fn(size_t{0}, bytes);
    return;
  }
  constexpr size_t kChunk = size_t{1} << 20;
  const long chunks = static_cast<long>((bytes + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < chunks; ++i) {
    const size_t begin = static_cast<size_t>(i) * kChunk;
    fn(begin, std::min(kChunk, bytes - begin));
  }
}

}  // namespace

size_t CpuBackend::peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      return static_cast<size_t>(std::strtoull(line.c_str() + 6, nullptr, 10)) * 1024;  // in kB
    }
  }
  return 0;
}

std::string CpuBackend::description() const { return describe_host_cpu(); }

void* CpuBackend::allocate(size_t bytes) {
  // Refuse what cannot fit in RAM up front: with overcommit the allocation could "succeed" and the
  // process die later when it touches the pages, and sanitizer allocators abort on absurd sizes.
  const size_t physical = physical_memory_bytes();
  if ((bytes > physical && physical != 0) || bytes > SIZE_MAX - kAlignment) {
    fail(
        "out of host memory: could not allocate {} bytes ({:.2f} GiB); this machine has {:.2f} GiB",
        bytes, gib(bytes), gib(physical));
  }
  const size_t rounded = (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  void* ptr = std::aligned_alloc(kAlignment, rounded);
  if (ptr == nullptr) {
    fail("out of host memory: could not allocate {} bytes ({:.2f} GiB)", bytes, gib(bytes));
  }
  return ptr;
}

void CpuBackend::release(void* ptr) { std::free(ptr); }

void CpuBackend::copy_to_device(void* dst, const void* src, size_t bytes) {
  split_bytes(bytes, [&](size_t begin, size_t n) {
    std::memcpy(static_cast<char*>(dst) + begin, static_cast<const char*>(src) + begin, n);
  });
}

void CpuBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  copy_to_device(dst, src, bytes);
}

void CpuBackend::fill_zero(void* ptr, size_t bytes) {
  split_bytes(bytes,
              [&](size_t begin, size_t n) { std::memset(static_cast<char*>(ptr) + begin, 0, n); });
}

void CpuBackend::encoder_forward(float* out, const int32_t* tokens, const float* wte,
                                 const float* wpe, int B, int T, int C) {
  check_shape(B >= 0 && T >= 0 && C >= 0, "encoder_forward", "B, T, C >= 0");
  cpu::encoder_forward(out, tokens, wte, wpe, B, T, C);
}

void CpuBackend::encoder_backward(float* dwte, float* dwpe, const float* dout,
                                  const int32_t* tokens, int B, int T, int C) {
  check_shape(B >= 0 && T >= 0 && C >= 0, "encoder_backward", "B, T, C >= 0");
  cpu::encoder_backward(dwte, dwpe, dout, tokens, B, T, C);
}

void CpuBackend::layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                   const float* weight, const float* bias, int N, int C) {
  check_shape(N >= 0 && C > 0, "layernorm_forward", "N >= 0 and C > 0");
  cpu::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C);
}

void CpuBackend::layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                    const float* inp, const float* weight, const float* mean,
                                    const float* rstd, int N, int C) {
  check_shape(N >= 0 && C > 0, "layernorm_backward", "N >= 0 and C > 0");
  cpu::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

void CpuBackend::matmul_forward(float* out, const float* inp, const float* weight,
                                const float* bias, int N, int C, int OC) {
  adapt_threads();
  check_shape(N >= 0 && C >= 0 && OC >= 0, "matmul_forward", "N, C, OC >= 0");
  cpu::matmul_forward(out, inp, weight, bias, N, C, OC);
}

void CpuBackend::matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                 const float* inp, const float* weight, int N, int C, int OC) {
  adapt_threads();
  check_shape(N >= 0 && C >= 0 && OC >= 0, "matmul_backward", "N, C, OC >= 0");
  cpu::matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}

void CpuBackend::attention_forward(float* out, float* att, const float* qkv, int B, int T, int C,
                                   int NH) {
  adapt_threads();
  check_shape(B >= 0 && T >= 0 && NH > 0 && C > 0 && C % NH == 0, "attention_forward",
              "B, T >= 0 and C a positive multiple of NH");
  cpu::attention_forward(out, att, qkv, B, T, C, NH);
}

void CpuBackend::attention_backward(float* dqkv, float* scratch, const float* dout,
                                    const float* /*out: the record holds the probabilities*/,
                                    const float* qkv, const float* att, int B, int T, int C,
                                    int NH) {
  adapt_threads();
  check_shape(B >= 0 && T >= 0 && NH > 0 && C > 0 && C % NH == 0, "attention_backward",
              "B, T >= 0 and C a positive multiple of NH");
  cpu::attention_backward(dqkv, scratch, dout, qkv, att, B, T, C, NH);
}

void CpuBackend::gelu_forward(float* out, const float* inp, size_t N) {
  cpu::gelu_forward(out, inp, N);
}

void CpuBackend::gelu_backward(float* dinp, const float* inp, const float* dout, size_t N) {
  cpu::gelu_backward(dinp, inp, dout, N);
}

void CpuBackend::residual_forward(float* out, const float* a, const float* b, size_t N) {
  cpu::residual_forward(out, a, b, N);
}

void CpuBackend::accumulate(float* dst, const float* src, size_t N) {
  cpu::accumulate(dst, src, N);
}

namespace {
void check_targets(const char* kernel, const int32_t* targets, int N, int V) {
  check_shape(N >= 0 && V > 0, kernel, "N >= 0 and V > 0");
  for (int n = 0; n < N; ++n) {
    require(targets[n] >= 0 && targets[n] < V, "cpu {}: target {} at row {} is outside [0, {})",
            kernel, targets[n], n, V);
  }
}
}  // namespace

void CpuBackend::cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                                       int N, int V) {
  adapt_threads();
  check_targets("cross_entropy_forward", targets, N, V);
  cpu::cross_entropy_forward(losses, logits, targets, N, V);
}

void CpuBackend::cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                                        float dloss, int N, int V) {
  check_targets("cross_entropy_backward", targets, N, V);
  cpu::cross_entropy_backward(dlogits, logits, targets, dloss, N, V);
}

double CpuBackend::sum_of_squares(const float* x, size_t N) { return cpu::sum_of_squares(x, N); }

void CpuBackend::adamw_update(float* params, const float* grads, float* m, float* v, size_t N,
                              const AdamWStep& step) {
  adapt_threads();
  require(step.step >= 1, "cpu adamw_update: step must be >= 1 (1-based), got {}", step.step);
  require(step.beta1 >= 0 && step.beta1 < 1 && step.beta2 >= 0 && step.beta2 < 1,
          "cpu adamw_update: betas must be in [0, 1), got {} and {}", step.beta1, step.beta2);
  if (adamw_update_streaming(params, grads, m, v, N, step.learning_rate, step.beta1, step.beta2,
                             step.epsilon, step.weight_decay, step.step, step.grad_scale)) {
    return;
  }
  cpu::adamw_update(params, grads, m, v, N, step.learning_rate, step.beta1, step.beta2,
                    step.epsilon, step.weight_decay, step.step, step.grad_scale);
}

void CpuBackend::attention_decode(float* out, const float* qkv, float* k_cache, float* v_cache,
                                  int B, int pos, int max_T, int C, int NH) {
  adapt_threads();
  check_shape(B >= 0 && NH > 0 && C > 0 && C % NH == 0, "attention_decode",
              "B >= 0 and C a positive multiple of NH");
  require(pos >= 0 && pos < max_T,
          "cpu attention_decode: position {} is outside the KV cache [0, {})", pos, max_T);
  cpu::attention_decode(out, qkv, k_cache, v_cache, B, pos, max_T, C, NH);
}

}  // namespace switchyard::backend::cpu
