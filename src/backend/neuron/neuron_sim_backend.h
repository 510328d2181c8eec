// trn1-sim / trn2-sim: the op list (backend/ops.h) run as tile programs on a simulated NeuronCore.
//
// Device memory is host memory, capped at the simulated core's share of HBM, and holds every
// tensor in its own dtype, as HBM would: activations (and their gradients, logits, the KV cache)
// as bf16 on trn*-sim, fp32 on trn*-sim-fp32 (the mode that checks the kernels against the CPU
// backend); parameters, their gradients, AdamW state and statistics as fp32 (master weights, which
// the matmuls read and round to bf16 on the chip). Each op with a tile program is one launch
// (kernel_launch.h) over its tensors in place, and advances the core's simulated clock;
// simulation_report() says how far and where the time went. Ops without a tile program, and forms
// the tile programs do not handle (training attention that is grouped-query, windowed, with sinks
// or in a layout other than GPT-2's packed q, k, v; paged attention with heads over 128
// dimensions), run on the host through the CPU reference: the report names them, as work the
// simulated clock did not see.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/neuron/kernel_support.h"
#include "neuron/config.h"

namespace switchyard::backend::neuron {

enum class SimPrecision { kBf16, kFp32 };

class NeuronSimBackend final : public Backend, public SimulatorBackend {
 public:
  // target: "trn1" or "trn2".
  NeuronSimBackend(const std::string& target, SimPrecision precision);
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
  void run(const ops::ClampedSwiglu& op) override;
  void run(const ops::ClampedSwigluBackward& op) override;
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
  DType compute_;  // matmul operands and activation tiles in SBUF
  std::unique_ptr<NeuronCore> core_;
  std::map<const char*, size_t> allocations_;  // start -> bytes, for release() and the HBM cap
  size_t allocated_bytes_ = 0;
  // Calls of each op that ran on the host, by OpKind.
#define SWITCHYARD_COUNT_OP(Op, name) +1
  std::array<int64_t, 0 SWITCHYARD_OPS(SWITCHYARD_COUNT_OP)> host_calls_{};
#undef SWITCHYARD_COUNT_OP
};

// "trn2-sim" -> ("trn2", bf16); "trn2-sim-fp32" -> ("trn2", fp32). False for other names.
bool parse_sim_device(const std::string& name, std::string& target, SimPrecision& precision);
// One line describing a simulator device by name, without creating it.
std::string describe_sim_device(const std::string& name);
// The simulator devices the registry lists.
const std::vector<std::string>& sim_device_names();

}  // namespace switchyard::backend::neuron
