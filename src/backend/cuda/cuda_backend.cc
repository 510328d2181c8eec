#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/cuda/attention_kernels.h"
#include "backend/cuda/cross_entropy_kernels.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/elementwise_kernels.h"
#include "backend/cuda/encoder_kernels.h"
#include "backend/cuda/layernorm_kernels.h"
#include "backend/cuda/optimizer_kernels.h"
#include "core/dtype.h"
#include "core/error.h"

namespace switchyard::backend::cuda {

namespace {

double gib(size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

void check_shape(bool ok, const char* kernel, const char* expected) {
  require(ok, "cuda {}: invalid shape, expected {}", kernel, expected);
}

template <typename Act>
Act* act(float* p) {
  return reinterpret_cast<Act*>(p);
}
template <typename Act>
const Act* act(const float* p) {
  return reinterpret_cast<const Act*>(p);
}

}  // namespace

CudaBackend::CudaBackend(CudaPrecision precision) : precision_(precision) {
  const CudaDeviceInfo info = probe_cuda_device(0);
  require(info.available, "device '{}' cannot run here: {}", name(), info.detail);
  check_cuda(cudaSetDevice(0), "device selection");
  check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream creation");
  matmul_ = std::make_unique<Matmul>(stream_);
  staging_ = std::make_unique<PinnedStaging>(stream_);
  live_bytes_ = peak_bytes_ = Matmul::kWorkspaceBytes;
  sum_result_ = static_cast<double*>(device_alloc(sizeof(double), "the sum-of-squares result"));
  description_ = info.detail + (bf16_mode() ? ", bf16 compute, fp32 master weights"
                                            : ", fp32 compute (parity mode, no TF32)");
}

CudaBackend::~CudaBackend() {
  cudaStreamSynchronize(stream_);
  staging_.reset();
  matmul_.reset();
  for (auto& [ptr, a] : allocations_) {
    if (a.shadow) cudaFree(a.shadow);
    cudaFree(const_cast<char*>(ptr));
  }
  if (workspace_) cudaFree(workspace_);
  if (sum_result_) cudaFree(sum_result_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::string CudaBackend::name() const { return bf16_mode() ? "cuda" : "cuda-fp32"; }

// ---- memory ----

void* CudaBackend::device_alloc(size_t bytes, const char* what) {
  void* ptr = nullptr;
  const cudaError_t status = cudaMalloc(&ptr, std::max<size_t>(bytes, 1));
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    fail("out of GPU memory: {} needs {} bytes ({:.2f} GiB), but only {:.2f} GiB of the GPU's "
         "{:.2f} GiB are free ({:.2f} GiB held by this process; use a smaller batch or sequence)",
         what, bytes, gib(bytes), gib(free_bytes), gib(total_bytes), gib(live_bytes_));
  }
  check_cuda(status, what);
  live_bytes_ += bytes;
  peak_bytes_ = std::max(peak_bytes_, live_bytes_);
  return ptr;
}

void CudaBackend::device_free(void* ptr, size_t bytes) {
  if (!ptr) return;
  check_cuda(cudaFree(ptr), "free");  // waits for the device: no queued kernel still uses it
  live_bytes_ -= bytes;
}

void* CudaBackend::allocate(size_t bytes) {
  void* ptr = device_alloc(bytes, "an allocation of device memory");
  allocations_[static_cast<const char*>(ptr)] = Allocation{bytes};
  return ptr;
}

void CudaBackend::release(void* ptr) {
  if (!ptr) return;
  auto it = allocations_.find(static_cast<const char*>(ptr));
  require(it != allocations_.end(), "cuda: release of memory this device did not allocate");
  const Allocation a = it->second;
  allocations_.erase(it);
  if (a.shadow) device_free(a.shadow, a.bytes / sizeof(float) * sizeof(bf16));
  device_free(ptr, a.bytes);
}

std::map<const char*, CudaBackend::Allocation>::iterator CudaBackend::allocation_of(
    const void* ptr, const char* what) {
  const char* p = static_cast<const char*>(ptr);
  auto it = allocations_.upper_bound(p);
  require(it != allocations_.begin(), "cuda {}: pointer is not in memory this device allocated",
          what);
  --it;
  require(p < it->first + std::max<size_t>(it->second.bytes, 1),
          "cuda {}: pointer is not in memory this device allocated", what);
  return it;
}

void CudaBackend::invalidate_shadow(const void* ptr) {
  allocation_of(ptr, "write")->second.shadow_valid = false;
}

const bf16* CudaBackend::shadow_of(const float* weights) {
  auto it = allocation_of(weights, "matmul weights");
  Allocation& a = it->second;
  const size_t floats = a.bytes / sizeof(float);
  if (!a.shadow) {
    a.shadow = static_cast<bf16*>(device_alloc(floats * sizeof(bf16), "the bf16 copy of the weights"));
  }
  if (!a.shadow_valid) {
    convert_to_bf16(a.shadow, reinterpret_cast<const float*>(it->first), floats, stream_);
    a.shadow_valid = true;
  }
  const size_t offset = static_cast<size_t>(reinterpret_cast<const char*>(weights) - it->first);
  return a.shadow + offset / sizeof(float);
}

void* CudaBackend::workspace(size_t bytes) {
  if (bytes <= workspace_bytes_) return workspace_;
  if (workspace_) {
    device_free(workspace_, workspace_bytes_);
    workspace_ = nullptr;
    workspace_bytes_ = 0;
  }
  workspace_ = device_alloc(bytes, "kernel scratch memory");
  workspace_bytes_ = bytes;
  return workspace_;
}

void CudaBackend::copy_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  invalidate_shadow(dst);
  if (staging_->upload(dst, src, bytes)) return;
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "copy to device");
  // The host buffer may be reused as soon as this returns.
  check_cuda(cudaStreamSynchronize(stream_), "copy to device");
}

void CudaBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "copy to host");
  check_cuda(cudaStreamSynchronize(stream_), "copy to host");
}

void CudaBackend::fill_zero(void* ptr, size_t bytes) {
  if (bytes == 0) return;
  invalidate_shadow(ptr);
  check_cuda(cudaMemsetAsync(ptr, 0, bytes, stream_), "fill");
}

void CudaBackend::synchronize() { check_cuda(cudaStreamSynchronize(stream_), "synchronize"); }

size_t CudaBackend::activation_bytes() const { return bf16_mode() ? sizeof(bf16) : sizeof(float); }

void CudaBackend::activations_to_host(float* dst, const float* src, size_t count) {
  if (!bf16_mode()) return copy_to_host(dst, src, count * sizeof(float));
  std::vector<uint16_t> bits(count);
  copy_to_host(bits.data(), src, count * sizeof(uint16_t));
  for (size_t i = 0; i < count; ++i) dst[i] = bf16_to_float(bits[i]);
}

void CudaBackend::activations_from_host(float* dst, const float* src, size_t count) {
  if (!bf16_mode()) return copy_to_device(dst, src, count * sizeof(float));
  std::vector<uint16_t> bits(count);
  for (size_t i = 0; i < count; ++i) bits[i] = float_to_bf16(src[i]);
  copy_to_device(dst, bits.data(), count * sizeof(uint16_t));
}

size_t CudaBackend::attention_record_floats(int B, int T, int NH) const {
  return static_cast<size_t>(B) * NH * T;  // the log-sum-exp of each query row
}

size_t CudaBackend::attention_scratch_floats(int B, int T, int NH) const {
  return (attention_backward_workspace_bytes(B, T, NH) + sizeof(float) - 1) / sizeof(float);
}

// ---- kernels: each runs its template on the activation type ----

// Calls fn(Act{}) with Act = bf16 or float, as the precision says.
#define SWITCHYARD_WITH_ACT(...)                 \
  do {                                           \
    if (bf16_mode()) {                           \
      using Act = bf16;                          \
      __VA_ARGS__;                               \
    } else {                                     \
      using Act = float;                         \
      __VA_ARGS__;                               \
    }                                            \
  } while (0)

void CudaBackend::encoder_forward(float* out, const int32_t* tokens, const float* wte,
                                  const float* wpe, int B, int T, int C) {
  check_shape(B >= 0 && T >= 0 && C > 0, "encoder_forward", "B, T >= 0 and C > 0");
  SWITCHYARD_WITH_ACT(cuda::encoder_forward<Act>(act<Act>(out), tokens, wte, wpe, B, T, C, stream_));
}

void CudaBackend::encoder_backward(float* dwte, float* dwpe, const float* dout,
                                   const int32_t* tokens, int B, int T, int C) {
  check_shape(B >= 0 && T >= 0 && C > 0, "encoder_backward", "B, T >= 0 and C > 0");
  void* ws = workspace(encoder_backward_workspace_bytes(B, T));
  SWITCHYARD_WITH_ACT(
      cuda::encoder_backward<Act>(dwte, dwpe, act<Act>(dout), tokens, B, T, C, ws, stream_));
}

void CudaBackend::layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                    const float* weight, const float* bias, int N, int C) {
  check_shape(N >= 0 && C > 0, "layernorm_forward", "N >= 0 and C > 0");
  SWITCHYARD_WITH_ACT(cuda::layernorm_forward<Act>(act<Act>(out), mean, rstd, act<Act>(inp), weight,
                                                   bias, N, C, stream_));
}

void CudaBackend::residual_layernorm_forward(float* residual, float* out, float* mean, float* rstd,
                                             const float* a, const float* b, const float* weight,
                                             const float* bias, int N, int C) {
  check_shape(N >= 0 && C > 0, "residual_layernorm_forward", "N >= 0 and C > 0");
  SWITCHYARD_WITH_ACT(cuda::residual_layernorm_forward<Act>(act<Act>(residual), act<Act>(out), mean,
                                                            rstd, act<Act>(a), act<Act>(b), weight,
                                                            bias, N, C, stream_));
}

void CudaBackend::layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                     const float* inp, const float* weight, const float* mean,
                                     const float* rstd, int N, int C) {
  check_shape(N >= 0 && C > 0, "layernorm_backward", "N >= 0 and C > 0");
  void* ws = workspace(layernorm_backward_workspace_bytes(N, C));
  SWITCHYARD_WITH_ACT(cuda::layernorm_backward<Act>(act<Act>(dinp), dweight, dbias, act<Act>(dout),
                                                    act<Act>(inp), weight, mean, rstd, N, C, ws,
                                                    stream_));
}

const void* CudaBackend::weights_for_products(const float* weights) {
  return bf16_mode() ? static_cast<const void*>(shadow_of(weights)) : weights;
}

// Row-major out[N,OC] = inp[N,C] @ weight[OC,C]^T is, column-major, out^T[OC,N] = W^T' inp^T:
// A is the weight matrix read transposed (m = OC, k = C), B the inputs (n = N).
bool CudaBackend::linear(float* out, const float* inp, const float* weight, const float* bias,
                         int N, int C, int OC, float* gelu_pre) {
  const MatrixType type = bf16_mode() ? MatrixType::kBF16 : MatrixType::kF32;
  GemmCall call{.trans_a = true, .m = OC, .n = N, .k = C,
                .a = weights_for_products(weight), .lda = C, .a_type = type,
                .b = inp, .ldb = C, .b_type = type,
                .d = out, .ldd = OC, .d_type = type};
  if (bias) {
    call.epilogue = Epilogue::kBias;
    call.bias = weights_for_products(bias);
  }
  if (gelu_pre) {
    // cuBLASLt's GELU is the tanh form; it is used where bf16 rounding dwarfs any difference from
    // the separate kernel, and only with a bias (its GELU epilogue includes one).
    if (!bf16_mode() || !bias || OC % 8 != 0) return false;
    call.epilogue = Epilogue::kGeluAuxBias;
    call.aux = gelu_pre;
    call.aux_ld = OC;
  }
  return matmul_->run(call);
}

void CudaBackend::matmul_forward(float* out, const float* inp, const float* weight,
                                 const float* bias, int N, int C, int OC) {
  check_shape(N >= 0 && C > 0 && OC >= 0, "matmul_forward", "N, OC >= 0 and C > 0");
  linear(out, inp, weight, bias, N, C, OC, nullptr);
}

void CudaBackend::matmul_gelu_forward(float* pre, float* out, const float* inp,
                                      const float* weight, const float* bias, int N, int C,
                                      int OC) {
  check_shape(N >= 0 && C > 0 && OC >= 0, "matmul_gelu_forward", "N, OC >= 0 and C > 0");
  if (linear(out, inp, weight, bias, N, C, OC, pre)) return;
  linear(pre, inp, weight, bias, N, C, OC, nullptr);
  gelu_forward(out, pre, static_cast<size_t>(N) * OC);
}

void CudaBackend::matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                  const float* inp, const float* weight, int N, int C, int OC) {
  check_shape(N >= 0 && C > 0 && OC >= 0, "matmul_backward", "N, OC >= 0 and C > 0");
  const MatrixType type = bf16_mode() ? MatrixType::kBF16 : MatrixType::kF32;
  if (dinp) {
    // dinp^T[C,N] += W^T[C,OC] dout^T[OC,N]: the row-major weight is W^T column-major.
    matmul_->run({.m = C, .n = N, .k = OC,
                  .a = weights_for_products(weight), .lda = C, .a_type = type,
                  .b = dout, .ldb = OC, .b_type = type,
                  .d = dinp, .ldd = C, .d_type = type, .beta = 1});
  }
  // dW^T[C,OC] += inp^T[C,N] dout[N,OC]; dW stays fp32 (a parameter gradient) in both modes.
  matmul_->run({.trans_b = true, .m = C, .n = OC, .k = N,
                .a = inp, .lda = C, .a_type = type,
                .b = dout, .ldb = OC, .b_type = type,
                .d = dweight, .ldd = C, .d_type = MatrixType::kF32, .beta = 1});
  if (dbias) {
    void* ws = workspace(bias_backward_workspace_bytes(N, OC));
    SWITCHYARD_WITH_ACT(cuda::bias_backward<Act>(dbias, act<Act>(dout), N, OC, ws, stream_));
  }
}

void CudaBackend::attention_forward(float* out, float* att, const float* qkv, int B, int T, int C,
                                    int NH) {
  check_shape(B >= 0 && T >= 0 && NH > 0 && C > 0 && C % NH == 0, "attention_forward",
              "B, T >= 0 and C a positive multiple of NH");
  require(C / NH <= kAttentionMaxHeadSize, "cuda attention_forward: head size {} is above the {} supported",
          C / NH, kAttentionMaxHeadSize);
  SWITCHYARD_WITH_ACT(
      cuda::attention_forward<Act>(act<Act>(out), att, act<Act>(qkv), B, T, C, NH, stream_));
}

void CudaBackend::attention_backward(float* dqkv, float* scratch, const float* dout,
                                     const float* out, const float* qkv, const float* att, int B,
                                     int T, int C, int NH) {
  check_shape(B >= 0 && T >= 0 && NH > 0 && C > 0 && C % NH == 0, "attention_backward",
              "B, T >= 0 and C a positive multiple of NH");
  require(C / NH <= kAttentionMaxHeadSize, "cuda attention_backward: head size {} is above the {} supported",
          C / NH, kAttentionMaxHeadSize);
  SWITCHYARD_WITH_ACT(cuda::attention_backward<Act>(act<Act>(dqkv), scratch, act<Act>(dout),
                                                    act<Act>(out), act<Act>(qkv), att, B, T, C, NH,
                                                    stream_));
}

void CudaBackend::attention_decode(float* out, const float* qkv, float* k_cache, float* v_cache,
                                   int B, int pos, int max_T, int C, int NH) {
  check_shape(B >= 0 && NH > 0 && C > 0 && C % NH == 0, "attention_decode",
              "B >= 0 and C a positive multiple of NH");
  require(pos >= 0 && pos < max_T,
          "cuda attention_decode: position {} is outside the KV cache [0, {})", pos, max_T);
  require(C / NH <= kAttentionMaxHeadSize, "cuda attention_decode: head size {} is above the {} supported",
          C / NH, kAttentionMaxHeadSize);
  SWITCHYARD_WITH_ACT(cuda::attention_decode<Act>(act<Act>(out), act<Act>(qkv), act<Act>(k_cache),
                                                  act<Act>(v_cache), B, pos, max_T, C, NH,
                                                  stream_));
}

void CudaBackend::gelu_forward(float* out, const float* inp, size_t N) {
  SWITCHYARD_WITH_ACT(cuda::gelu_forward<Act>(act<Act>(out), act<Act>(inp), N, stream_));
}

void CudaBackend::gelu_backward(float* dinp, const float* inp, const float* dout, size_t N) {
  SWITCHYARD_WITH_ACT(
      cuda::gelu_backward<Act>(act<Act>(dinp), act<Act>(inp), act<Act>(dout), N, stream_));
}

void CudaBackend::residual_forward(float* out, const float* a, const float* b, size_t N) {
  SWITCHYARD_WITH_ACT(
      cuda::residual_forward<Act>(act<Act>(out), act<Act>(a), act<Act>(b), N, stream_));
}

void CudaBackend::accumulate(float* dst, const float* src, size_t N) {
  SWITCHYARD_WITH_ACT(cuda::accumulate<Act>(act<Act>(dst), act<Act>(src), N, stream_));
}

// Targets are device memory here; the model range-checks them on the host before copying.
void CudaBackend::cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                                        int N, int V) {
  check_shape(N >= 0 && V > 0, "cross_entropy_forward", "N >= 0 and V > 0");
  SWITCHYARD_WITH_ACT(
      cuda::cross_entropy_forward<Act>(losses, act<Act>(logits), targets, N, V, stream_));
}

void CudaBackend::cross_entropy_backward(float* dlogits, const float* logits,
                                         const int32_t* targets, float dloss, int N, int V) {
  check_shape(N >= 0 && V > 0, "cross_entropy_backward", "N >= 0 and V > 0");
  SWITCHYARD_WITH_ACT(cuda::cross_entropy_backward<Act>(act<Act>(dlogits), act<Act>(logits),
                                                        targets, dloss, N, V, stream_));
}

double CudaBackend::sum_of_squares(const float* x, size_t N) {
  if (N == 0) return 0.0;
  sum_of_squares_to(sum_result_, x, N);
  double result = 0;
  copy_to_host(&result, sum_result_, sizeof(double));
  return result;
}

void CudaBackend::sum_of_squares_to(double* total, const float* x, size_t N) {
  cuda::sum_of_squares(total, x, N, workspace(sum_workspace_bytes(N)), stream_);
}

void CudaBackend::accumulate_sum(double* total, const float* x, size_t N, double scale) {
  cuda::accumulate_sum(total, x, N, scale, workspace(sum_workspace_bytes(N)), stream_);
}

void CudaBackend::adamw_update(float* params, const float* grads, float* m, float* v, size_t N,
                               const AdamWStep& step) {
  adamw(params, grads, m, v, N, step, nullptr, 0.0f);
}

void CudaBackend::adamw_update_clipped(float* params, const float* grads, float* m, float* v,
                                       size_t N, const AdamWStep& step,
                                       const double* grad_sum_of_squares, float clip) {
  require(grad_sum_of_squares != nullptr, "cuda adamw_update_clipped: no gradient norm given");
  adamw(params, grads, m, v, N, step, grad_sum_of_squares, clip);
}

void CudaBackend::adamw(float* params, const float* grads, float* m, float* v, size_t N,
                        const AdamWStep& step, const double* grad_sum_of_squares, float clip) {
  require(step.step >= 1, "cuda adamw_update: step must be >= 1 (1-based), got {}", step.step);
  require(step.beta1 >= 0 && step.beta1 < 1 && step.beta2 >= 0 && step.beta2 < 1,
          "cuda adamw_update: betas must be in [0, 1), got {} and {}", step.beta1, step.beta2);
  if (N == 0) return;
  // Keep the bf16 copy of the weights current in the same pass, if there is a valid one;
  // otherwise it is remade from the master weights when next used.
  bf16* shadow = nullptr;
  auto it = allocation_of(params, "adamw_update parameters");
  if (it->second.shadow && it->second.shadow_valid) {
    shadow = it->second.shadow +
             static_cast<size_t>(reinterpret_cast<const char*>(params) - it->first) / sizeof(float);
  }
  cuda::adamw_update(params, grads, m, v, shadow, N, step.learning_rate, step.beta1, step.beta2,
                     step.epsilon, step.weight_decay, step.step, step.grad_scale,
                     grad_sum_of_squares, clip, stream_);
}

#undef SWITCHYARD_WITH_ACT

}  // namespace switchyard::backend::cuda
