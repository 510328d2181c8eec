// "cpu-bf16": the CPU backend in bf16 mixed precision, as "cuda" is on NVIDIA GPUs.
//
// precision() is {activations bf16, matmul_weights bf16}: activations, their gradients, logits
// and the KV cache are stored as bf16, and linear layers read bf16 weights: a trained model's
// matrices are fp32 held as halves (model/parameter_storage.h), whose high halves are those
// weights; AdamW (CpuBackend's) updates the halves in place and the embedding here reads them.
// Gradients, AdamW's moments, statistics, softmaxes and losses stay fp32. Memory is host memory, as CpuBackend's.
//
// Native here (cpu_bf16_ops.cc): Linear and LinearBackward through oneDNN's bf16 matmul (AMX or
// AVX-512 BF16 where the CPU has them, fp32 accumulation; a few rows, as decoding has, stream the
// bf16 weights instead: through the bf16 dot-product instruction where the build has it,
// bf16_dot_linear.h, otherwise widened to fp32 by the batch-invariant product); the experts'
// products the same way over bf16 weights, and over MXFP4 ones where the build has that
// instruction (a few rows decode the blocks in registers, more decode panels of them to bf16 for
// oneDNN: mxfp4_bf16_gemm.h); the cross-entropy over bf16 logits a row at a time (logits are the
// largest activations: widening them whole would double the step's peak memory), and the paged KV
// cache kept in bf16 (paged attention widens each key and value as it reads it, so a decode step
// reads the cache's bf16 bytes, not an fp32 copy of the whole pool); attention over windows
// widens each task's heads (in L1 and L2) and runs the fp32 kernel on them. LayerNorm, GELU and the
// residual adds, forward and backward (cpu_bf16_rowwise.cc), run the fp32 kernels over chunks a
// thread widens into L1 and narrows back. Every other op runs CpuBackend's fp32 kernels: directly
// where its operands are fp32 (the optimizer, gradient norms), otherwise over fp32 copies of its
// bf16 operands, widened and narrowed again in parallel (Backend::run_on_host, host_fallback.h),
// so the math inside (attention, RMSNorm, RoPE, the MoE ops) is fp32.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"

namespace switchyard::backend::cpu {

// Where the CPU computes bf16 products natively, from its feature flags.
enum class Bf16Units { kAmx, kAvx512Bf16, kNone };
Bf16Units host_bf16_units();
// "AMX", "AVX-512 BF16 (no AMX)" or a sentence saying that products are emulated.
std::string describe_bf16_units(Bf16Units units);

class BlockedWeights;

class CpuBf16Backend final : public Backend {
 public:
  CpuBf16Backend();
  ~CpuBf16Backend() override;
  std::string name() const override { return "cpu-bf16"; }
  std::string description() const override;
  Precision precision() const override { return {DType::kBF16, DType::kBF16}; }

  void* allocate(size_t bytes) override { return host_.allocate(bytes); }
  void* allocate_zeroed(size_t bytes) override { return host_.allocate_zeroed(bytes); }
  size_t make_resident(void* ptr, size_t bytes) override {
    return host_.make_resident(ptr, bytes);
  }
  void release(void* ptr) override { host_.release(ptr); }
  void copy_to_device(void* dst, const void* src, size_t bytes) override {
    host_.copy_to_device(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    host_.copy_to_host(dst, src, bytes);
  }
  void fill_zero(void* ptr, size_t bytes) override { host_.fill_zero(ptr, bytes); }
  bool device_memory_is_host_memory() const override { return true; }

  // CpuBackend's forms, and Linear and LinearBackward over bf16 activations and weights.
  bool supports(OpKind kind, std::span<const DType> dtypes) const override;
  using Backend::supports;
  using Backend::run;
  void run(const ops::Linear& op) override;
  void run(const ops::LinearBackward& op) override;
  // Expert products over bf16 weights (MXFP4 ones take the fp32 reference).
  void run(const ops::ExpertLinear& op) override;
  // The embedding over tables held as fp32 halves (a trained model's), into bf16 rows.
  void run(const ops::Embedding& op) override;
  void run(const ops::KvCacheWrite& op) override;
  void run(const ops::PagedAttention& op) override;
  // Attention over windows (training, evaluation) over bf16 q, k, v and out, each task widening
  // its own heads: the math is CpuBackend's fp32 kernel's.
  void run(const ops::Attention& op) override;
  void run(const ops::AttentionBackward& op) override;
  void run(const ops::CrossEntropy& op) override;
  void run(const ops::CrossEntropyBackward& op) override;
  // cpu_bf16_rowwise.cc: the fp32 kernels over L1-sized widened chunks of bf16 activations.
  void run(const ops::Gelu& op) override;
  void run(const ops::GeluBackward& op) override;
  void run(const ops::Add& op) override;
  void run(const ops::Accumulate& op) override;
  void run(const ops::LayerNorm& op) override;
  void run(const ops::LayerNormBackward& op) override;

 private:
  // The operand dtypes cpu_bf16_rowwise.cc runs natively.
  bool native_rowwise(OpKind kind, std::span<const DType> dtypes) const;

  CpuBackend host_;
  // Blocked copies of stamped weights for a continuous batch's products (blocked_weights.h).
  std::unique_ptr<BlockedWeights> blocked_;
  std::vector<float> scratch_;  // fp32 rows of few-row products (the weight-streaming path)
};

}  // namespace switchyard::backend::cpu
