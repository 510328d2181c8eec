// "cuda" and "cuda-fp32": the op list (backend/ops.h) on an NVIDIA GPU.
//
// Matrix products go through cuBLASLt (cuda_matmul.h) with the bias, and in bf16 mode the GELU,
// fused into the product's epilogue; the experts' grouped products and everything else are this
// folder's kernels (*_kernels.cu). cuda_ops.cc, cuda_norm_rope_ops.cc, cuda_moe_ops.cc and
// cuda_attention_ops.cc check each op's operands and run it natively, or, for the few forms the
// kernels do not handle (attention heads over 128 dims, the backward pass of linear weights of
// another dtype than the products read, more than 32 routing choices), through the CPU reference
// on the host (Backend::run_on_host). Linear weights of the other float dtype (a frozen
// checkpoint's) are converted on the device, a slice at a time.
// All work is queued on one stream; the host waits only where the interface hands a value back
// (copies to the host), on synchronize(), and for large copies to the device (small ones, such as
// a batch's tokens, are staged in page-locked memory and do not wait). A training step
// (Model::begin_step .. finish_step) therefore waits once, at its end.
//
// Precision. "cuda" is bf16 mixed precision: precision() is {activations bf16, matmul_weights
// bf16}, so activations are stored as bf16 and linear layers read the bf16 weight copy the model
// keeps (and AdamW refreshes through params_copy); parameters, their gradients and AdamW's
// moments stay fp32 (master weights), and every reduction is fp32. "cuda-fp32" keeps everything
// fp32 with true fp32 products (no TF32), for checking against the CPU backend and PyTorch.
// Activation operands of another dtype than precision().activations are a caller's mistake and
// throw Error.
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

  Precision precision() const override;
  // Row statistics (one log-sum-exp per query row and head) for the specs the flash kernels run;
  // the CPU reference's probabilities for the others, which run on the host.
  size_t attention_record_floats(const ops::AttentionSpec& spec, int batch,
                                 int seq) const override;
  size_t attention_scratch_floats(const ops::AttentionSpec& spec, int batch,
                                  int seq) const override;

  // By dtypes alone; attention also needs GPT-2's form (see cuda_attention_ops.cc) to run
  // natively.
  bool supports(OpKind kind, std::span<const DType> dtypes) const override;
  using Backend::run;
  void run(const ops::Embedding& op) override;
  void run(const ops::EmbeddingBackward& op) override;
  void run(const ops::LayerNorm& op) override;
  void run(const ops::LayerNormBackward& op) override;
  void run(const ops::AddLayerNorm& op) override;
  void run(const ops::RmsNorm& op) override;
  void run(const ops::RmsNormBackward& op) override;
  void run(const ops::Linear& op) override;
  void run(const ops::LinearBackward& op) override;
  void run(const ops::LinearGelu& op) override;
  void run(const ops::Gelu& op) override;
  void run(const ops::GeluBackward& op) override;
  void run(const ops::Add& op) override;
  void run(const ops::Accumulate& op) override;
  void run(const ops::Cast& op) override;
  void run(const ops::Rope& op) override;
  void run(const ops::TopKRouting& op) override;
  void run(const ops::TopKRoutingBackward& op) override;
  void run(const ops::GroupByExpert& op) override;
  void run(const ops::ExpertLinear& op) override;
  void run(const ops::ExpertLinearBackward& op) override;
  void run(const ops::ClampedSwiglu& op) override;
  void run(const ops::ClampedSwigluBackward& op) override;
  void run(const ops::ExpertCombine& op) override;
  void run(const ops::ExpertCombineBackward& op) override;
  void run(const ops::RouterLoadStats& op) override;
  void run(const ops::RouterLoadBackward& op) override;
  void run(const ops::Attention& op) override;
  void run(const ops::AttentionBackward& op) override;
  void run(const ops::KvCacheWrite& op) override;
  void run(const ops::PagedAttention& op) override;
  void run(const ops::AttentionDecode& op) override;
  void run(const ops::CrossEntropy& op) override;
  void run(const ops::CrossEntropyBackward& op) override;
  void run(const ops::SumOfSquares& op) override;
  void run(const ops::AccumulateSum& op) override;
  void run(const ops::AdamW& op) override;

 private:
  bool bf16_mode() const { return precision_ == CudaPrecision::kBf16; }
  // The element type of activations and of the weights the products read.
  DType activation_dtype() const { return bf16_mode() ? DType::kBF16 : DType::kF32; }
  // Throws Error unless [ptr, ptr + bytes) lies in one allocation of this device.
  void require_device_memory(const void* ptr, size_t bytes, const char* what) const;
  // Device scratch of at least `bytes`, shared by all kernels (grown, never shrunk).
  void* workspace(size_t bytes);
  // cudaMalloc and cudaFree that keep the memory accounts; allocation failures say what was
  // asked for and what is free.
  void* device_alloc(size_t bytes, const char* what);
  void device_free(void* ptr, size_t bytes);
  // out[N,OC] = inp @ weight^T (+ bias, fp32) in the activation type, with GELU fused into the
  // epilogue when gelu_pre is given (it receives the pre-activation). Returns false, having done
  // nothing, when the fused GELU was asked for and cuBLASLt has none.
  bool linear(void* out, const void* inp, const void* weight, const float* bias, int N, int C,
              int OC, void* gelu_pre);
  // linear() for weights [OC, C] of the other float dtype than the products read, converted a
  // slice of rows at a time in scratch memory.
  void linear_converting_weights(void* out, const void* inp, const Tensor& weight,
                                 const float* bias, int N, int C, int OC);

  CudaPrecision precision_;
  std::string description_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Matmul> matmul_;
  std::unique_ptr<PinnedStaging> staging_;
  std::map<const char*, size_t> allocations_;  // start -> bytes
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  size_t live_bytes_ = 0, peak_bytes_ = 0;
};

}  // namespace switchyard::backend::cuda
