// "cuda" and "cuda-fp32": the backend kernel set on an NVIDIA GPU.
//
// Matrix products go through cuBLASLt (cuda_matmul.h) with the bias, and in bf16 mode the GELU,
// fused into the product's epilogue; everything else is this folder's kernels (*_kernels.cu).
// All work is queued on one stream; the host waits only where the interface hands a value back
// (copies to the host, sum_of_squares), on synchronize(), and for large copies to the device
// (small ones, such as a batch's tokens, are staged in page-locked memory and do not wait). A
// training step (Gpt::begin_step .. finish_step) therefore waits once, at its end.
//
// Precision. "cuda" is bf16 mixed precision: activations are stored as bf16 (activation_bytes()
// is 2) and matrix products read bf16 operands; parameters, their gradients and AdamW's moments
// stay fp32 (master weights), and every reduction is fp32. The bf16 copy of the weights the
// products read (the "shadow" of the parameter allocation) is made on first use and rewritten by
// each AdamW update, so the model needs no knowledge of it. "cuda-fp32" keeps everything fp32
// with true fp32 products (no TF32), for checking against the CPU backend and PyTorch.
//
// Determinism: every kernel reduces in a fixed order (no floating-point atomics), so the same
// inputs give bit-identical results run after run on the same GPU.
#pragma once

#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "backend/cuda/cuda_matmul.h"
#include "backend/cuda/cuda_types.h"
#include "backend/cuda/pinned_staging.h"

namespace switchyard::backend::cuda {

enum class CudaPrecision { kBf16, kFp32 };

class CudaBackend final : public Backend {
 public:
  // Uses GPU 0 (the first one CUDA_VISIBLE_DEVICES shows). Throws Error naming the problem when
  // there is no usable GPU.
  explicit CudaBackend(CudaPrecision precision);
  ~CudaBackend() override;

  std::string name() const override;
  std::string description() const override { return description_; }

  void* allocate(size_t bytes) override;
  void release(void* ptr) override;
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void fill_zero(void* ptr, size_t bytes) override;
  void synchronize() override;
  std::optional<size_t> device_memory_peak_bytes() const override { return peak_bytes_; }

  size_t activation_bytes() const override;
  void activations_to_host(float* dst, const float* src, size_t count) override;
  void activations_from_host(float* dst, const float* src, size_t count) override;
  size_t attention_record_floats(int B, int T, int NH) const override;
  size_t attention_scratch_floats(int B, int T, int NH) const override;

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
  struct Allocation {
    size_t bytes = 0;
    bf16* shadow = nullptr;     // bf16 copy of the whole allocation, once used as matmul weights
    bool shadow_valid = false;  // false after any write the shadow did not see
  };
  bool bf16_mode() const { return precision_ == CudaPrecision::kBf16; }
  // The allocation holding `ptr`; throws Error for memory this backend did not allocate.
  std::map<const char*, Allocation>::iterator allocation_of(const void* ptr, const char* what);
  // Forgets the bf16 copy of whatever allocation `ptr` lies in (it was just overwritten).
  void invalidate_shadow(const void* ptr);
  // The bf16 copy of fp32 parameters at `weights`, made or refreshed as needed.
  const bf16* shadow_of(const float* weights);
  // What the matrix products read for parameters at `weights`: their bf16 copy in bf16 mode, the
  // fp32 values themselves otherwise.
  const void* weights_for_products(const float* weights);
  // Device scratch of at least `bytes`, shared by all kernels (grown, never shrunk).
  void* workspace(size_t bytes);
  // cudaMalloc and cudaFree that keep the memory accounts; allocation failures say what was
  // asked for and what is free.
  void* device_alloc(size_t bytes, const char* what);
  void device_free(void* ptr, size_t bytes);
  // out[N,OC] = inp @ weight^T (+ bias) in the activation type; returns false if the fused GELU
  // epilogue was asked for and cuBLASLt has none (nothing was done).
  bool linear(float* out, const float* inp, const float* weight, const float* bias, int N, int C,
              int OC, float* gelu_pre);
  // adamw_update, clipped by the norm at grad_sum_of_squares when that is not null.
  void adamw(float* params, const float* grads, float* m, float* v, size_t N,
             const AdamWStep& step, const double* grad_sum_of_squares, float clip);

  CudaPrecision precision_;
  std::string description_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Matmul> matmul_;
  std::unique_ptr<PinnedStaging> staging_;
  std::map<const char*, Allocation> allocations_;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  double* sum_result_ = nullptr;  // device double for sum_of_squares
  size_t live_bytes_ = 0, peak_bytes_ = 0;
};

}  // namespace switchyard::backend::cuda
