// The CPU backend: every op on the host, with host memory as "device" memory.
//
// Each op runs the float instantiation of the templates in cpu_kernels.h, attention_kernels.h,
// norm_rope_kernels.h, moe_kernels.h and expert_linear_kernels.h (oneDNN for the matrix products,
// OpenMP across cores); cpu_ops.cc, cpu_norm_rope_ops.cc and cpu_moe_ops.cc hold the ops. Ops run
// synchronously, so synchronize() is a no-op. Operands are checked (operand_checks.h: dtypes,
// shapes that fit together, token ids, cache slots, expert ids and offsets) and mistakes reported
// as switchyard::Error before any kernel runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

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

  // Zeroed buffers of 4 MiB or more (the model's parameters, gradients and moments, the KV cache)
  // are mapped pages of their own, on 2 MiB pages where the kernel gives them, never written by
  // allocate_zeroed (fresh pages read as zeros); everything else comes from the heap.
  void* allocate(size_t bytes) override;
  void* allocate_zeroed(size_t bytes) override;
  // Touches every page of a mapped buffer from its start (a write that keeps each byte touched),
  // on as many threads as copies use, within a budget: an eighth of the machine's memory for
  // all buffers held at once, so that a pool sized for long contexts (a server's) still costs
  // memory only as it is used. Other buffers are left alone and reported resident (the heap
  // buffers allocate_zeroed hands out are written by it).
  size_t make_resident(void* ptr, size_t bytes) override;
  void release(void* ptr) override;
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void fill_zero(void* ptr, size_t bytes) override;
  bool device_memory_is_host_memory() const override { return true; }

  // Every op, for fp32 activations and weights (cpu_ops.cc): the reference the other backends
  // fall back to. Inference weights also run as they are stored: bf16 or MXFP4 weights in Linear
  // and ExpertLinear (always the batch-invariant product, decoding as it reads), a bf16 table in
  // Embedding; they have no backward pass here.
  bool supports(OpKind kind, std::span<const DType> dtypes) const override;
#define SWITCHYARD_CPU_RUN(Op, name) void run(const ops::Op& op) override;
  SWITCHYARD_OPS(SWITCHYARD_CPU_RUN)
#undef SWITCHYARD_CPU_RUN

 private:
  std::mutex mapped_mutex_;
  struct Mapping {
    size_t length = 0;
    size_t resident = 0;  // bytes make_resident touched
  };
  std::unordered_map<void*, Mapping> mapped_;  // mapped buffers
  size_t resident_ = 0;                        // the mapped buffers' resident bytes, summed
};

}  // namespace switchyard::backend::cpu
