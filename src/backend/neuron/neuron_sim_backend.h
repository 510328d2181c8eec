// trn1-sim / trn2-sim: the op list (backend/ops.h) run as tile programs on a simulated NeuronCore.
//
// Device memory is host memory, capped at the simulated core's share of HBM, and holds every
// tensor in its own dtype, as HBM would: activations (and their gradients, logits, the KV cache)
// as bf16 on trn*-sim, fp32 on trn*-sim-fp32 (the mode that checks the kernels against the CPU
// backend); parameters, their gradients, AdamW state and statistics as fp32 (master weights, which
// the matmuls read and round to bf16 on the chip). Each op with a tile program is one launch
// (kernel_launch.h) over its tensors in place, and advances the core's simulated clock;
// simulation_report() says how far and where the time went. Ops without a tile program, and forms
// the tile programs do not handle (training attention with heads over 128 dimensions or q, k, v
// not packed in one projection; paged attention with heads over 128 dimensions), run on the host
// through the CPU reference: the report names them, as work the simulated clock did not see. So
// do the routing ops' forms past their kernels' limits (more than 512 experts; more than 128
// choices per row, or k * E over 4096, where a one-hot tile is needed; combining rows of more than
// 8192 columns) and rotary embeddings whose heads do not fit 128 partitions of at most 4096
// elements.
//
// A ":timing" suffix (trn2-sim:timing) runs the core in timing-only mode (neuron/execution_mode.h):
// the same tile programs, instructions, rules and simulated times, without arithmetic. What the
// ops write is then unspecified: device memory is zeroed when allocated and kernels leave it as it
// is, so host code reading results (sampling from logits) sees zeros or stale values, never
// uninitialised memory. Ops that run on the host still compute, on those values, and so does the
// grouping by expert (from the ids memory holds): later launches are sized from its offsets.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/neuron/kernel_support.h"
#include "neuron/config.h"
#include "neuron/execution_mode.h"

namespace switchyard::backend::neuron {

enum class SimPrecision { kBf16, kFp32 };
using ::switchyard::neuron::ExecutionMode;

// A simulator device as its name gives it.
struct SimDevice {
  std::string target;  // "trn1" or "trn2"
  SimPrecision precision = SimPrecision::kBf16;
  ExecutionMode mode = ExecutionMode::kFunctional;
};

class NeuronSimBackend final : public Backend, public SimulatorBackend {
 public:
  // target: "trn1" or "trn2".
  NeuronSimBackend(const std::string& target, SimPrecision precision,
                   ExecutionMode mode = ExecutionMode::kFunctional);
  ~NeuronSimBackend() override;

  std::string name() const override;
  std::string description() const override;

  void* allocate(size_t bytes) override;
  void release(void* ptr) override;
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void fill_zero(void* ptr, size_t bytes) override;
  bool device_memory_is_host_memory() const override { return true; }
  Precision precision() const override;

  // The ops with a tile program, for the dtypes sim_operands.h lists. Attention and its backward
  // pass run natively only in GPT-2's form, and the paged cache ops only in the forms their
  // kernels take, which dtypes alone cannot tell; run() decides.
  bool supports(OpKind kind, std::span<const DType> dtypes) const override;
  using Backend::run;
  void run(const ops::Embedding& op) override;
  void run(const ops::EmbeddingBackward& op) override;
  void run(const ops::LayerNorm& op) override;
  void run(const ops::LayerNormBackward& op) override;
  void run(const ops::RmsNorm& op) override;
  void run(const ops::RmsNormBackward& op) override;
  void run(const ops::Linear& op) override;
  void run(const ops::LinearBackward& op) override;
  // neuron_sim_expert_ops.cc: the grouped expert products (MXFP4 weights decoded on the chip).
  void run(const ops::ExpertLinear& op) override;
  void run(const ops::ExpertLinearBackward& op) override;
  void run(const ops::ClampedSwiglu& op) override;
  void run(const ops::ClampedSwigluBackward& op) override;
  // Rotary embeddings and the mixture-of-experts routing: neuron_sim_moe_ops.cc.
  void run(const ops::Rope& op) override;
  void run(const ops::TopKRouting& op) override;
  void run(const ops::TopKRoutingBackward& op) override;
  void run(const ops::GroupByExpert& op) override;
  void run(const ops::ExpertCombine& op) override;
  void run(const ops::ExpertCombineBackward& op) override;
  void run(const ops::RouterLoadStats& op) override;
  void run(const ops::RouterLoadBackward& op) override;
  void run(const ops::Gelu& op) override;
  void run(const ops::GeluBackward& op) override;
  void run(const ops::Add& op) override;
  void run(const ops::Accumulate& op) override;
  void run(const ops::Cast& op) override;
  void run(const ops::Attention& op) override;
  void run(const ops::AttentionBackward& op) override;
  void run(const ops::AttentionDecode& op) override;
  void run(const ops::KvCacheWrite& op) override;
  void run(const ops::PagedAttention& op) override;
  void run(const ops::CrossEntropy& op) override;
  void run(const ops::CrossEntropyBackward& op) override;
  void run(const ops::SumOfSquares& op) override;
  void run(const ops::AccumulateSum& op) override;
  void run(const ops::AdamW& op) override;

  SimulatorBackend* simulator() override { return this; }
  SimulationReport simulation_report() const override;
  void start_trace() override;
  void finish_trace(const std::string& path) override;
  bool timing_only() const override { return mode_ == ExecutionMode::kTimingOnly; }
  void simulate_all_reduce(int64_t bytes, int ranks) override;
  void wait_for_peers(double ns, const std::string& what) override;
  void trace_collective(const std::string& name, double start_ns, double end_ns) override;

 protected:
  void on_host_fallback(OpKind kind) override;

 private:
  // Throws Error naming the op and the operand unless every operand's dtype is one the op's tile
  // program takes (sim_operands.h) and every operand it needs is there.
  template <typename Op>
  void check_operand_dtypes(const Op& op) const;
  // "trn2-sim attention": the prefix of this backend's errors about an op.
  std::string op_label(const char* op) const;

  std::string target_;
  SimPrecision precision_;
  ExecutionMode mode_;
  DType compute_;  // matmul operands and activation tiles in SBUF
  std::unique_ptr<NeuronCore> core_;
  struct HostBlock {
    size_t bytes = 0;       // what was asked, for the HBM cap
    void* base = nullptr;   // what std::free takes (before alignment)
  };
  std::map<const char*, HostBlock> allocations_;  // aligned start -> block
  size_t allocated_bytes_ = 0;
  uint64_t routing_calls_ = 0;  // seeds timing-only mode's uniform routing
  // Calls of each op that ran on the host, by OpKind.
#define SWITCHYARD_COUNT_OP(Op, name) +1
  std::array<int64_t, 0 SWITCHYARD_OPS(SWITCHYARD_COUNT_OP)> host_calls_{};
#undef SWITCHYARD_COUNT_OP
};

// "trn2-sim" -> (trn2, bf16, functional); "trn2-sim-fp32" -> (trn2, fp32, functional); either
// with the suffix ":timing" (trn2-sim:timing) -> timing-only. nullopt for other names.
std::optional<SimDevice> parse_sim_device(const std::string& name);
// The device's name (the inverse of parse_sim_device).
std::string sim_device_name(const SimDevice& device);
// One line describing a simulator device by name, without creating it.
std::string describe_sim_device(const std::string& name);
// The simulator devices the registry lists (the functional ones; each also runs with ":timing").
const std::vector<std::string>& sim_device_names();

}  // namespace switchyard::backend::neuron
