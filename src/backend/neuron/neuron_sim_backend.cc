#include "backend/neuron/neuron_sim_backend.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include <fmt/format.h>

#include "backend/neuron/fill_kernel.h"
#include "backend/neuron/kernel_launch.h"
#include "backend/neuron/sim_operands.h"
#include "core/error.h"
#include "neuron/neuron_core.h"

namespace switchyard::backend::neuron {

// The fill_zero tile program shares its name with the Backend method that launches it.
namespace kernels = ::switchyard::backend::neuron;

namespace {

constexpr size_t kAlignment = 64;

}  // namespace

bool parse_sim_device(const std::string& name, std::string& target, SimPrecision& precision) {
  for (const char* t : {"trn1", "trn2"}) {
    const std::string base = std::string(t) + "-sim";
    if (name == base || name == base + "-fp32") {
      target = t;
      precision = name == base ? SimPrecision::kBf16 : SimPrecision::kFp32;
      return true;
    }
  }
  return false;
}

const std::vector<std::string>& sim_device_names() {
  static const std::vector<std::string> names = {"trn1-sim", "trn2-sim", "trn1-sim-fp32",
                                                 "trn2-sim-fp32"};
  return names;
}

std::string describe_sim_device(const std::string& name) {
  std::string target;
  SimPrecision precision;
  require(parse_sim_device(name, target, precision), "'{}' is not a simulator device", name);
  const auto c = ::switchyard::neuron::config_for_target(target);
  return fmt::format(
      "simulated {} ({}, 1 of {} cores per chip, {:.0f} GiB HBM share), {}", c.core_name,
      c.target, c.cores_per_chip, static_cast<double>(c.hbm_core_bytes()) / (1 << 30),
      precision == SimPrecision::kBf16 ? "bf16 compute, fp32 master weights"
                                       : "fp32 compute (parity mode)");
}

NeuronSimBackend::NeuronSimBackend(const std::string& target, SimPrecision precision)
    : target_(target),
      precision_(precision),
      compute_(precision == SimPrecision::kBf16 ? DType::kBF16 : DType::kF32),
      core_(std::make_unique<NeuronCore>(::switchyard::neuron::config_for_target(target))) {}

NeuronSimBackend::~NeuronSimBackend() {
  for (auto& [ptr, bytes] : allocations_) std::free(const_cast<char*>(ptr));
}

std::string NeuronSimBackend::name() const {
  return target_ + "-sim" + (precision_ == SimPrecision::kFp32 ? "-fp32" : "");
}

std::string NeuronSimBackend::description() const { return describe_sim_device(name()); }

void* NeuronSimBackend::allocate(size_t bytes) {
  const size_t capacity = static_cast<size_t>(core_->config().hbm_core_bytes());
  require(allocated_bytes_ + bytes <= capacity,
          "{}: cannot allocate {} bytes of device memory: {} of the simulated core's {} bytes of "
          "HBM are in use",
          name(), bytes, allocated_bytes_, capacity);
  const size_t rounded = (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  void* ptr = std::aligned_alloc(kAlignment, rounded);
  if (!ptr) fail("{}: host memory for {} bytes of device memory is exhausted", name(), bytes);
  allocations_[static_cast<const char*>(ptr)] = bytes;
  allocated_bytes_ += bytes;
  return ptr;
}

void NeuronSimBackend::release(void* ptr) {
  if (!ptr) return;
  auto it = allocations_.find(static_cast<const char*>(ptr));
  require(it != allocations_.end(), "{}: release of memory this device did not allocate", name());
  allocated_bytes_ -= it->second;
  allocations_.erase(it);
  std::free(ptr);
}

void NeuronSimBackend::copy_to_device(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
}

void NeuronSimBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
}

void NeuronSimBackend::fill_zero(void* ptr, size_t bytes) {
  // Zero is the same bytes in every dtype: the tile program sees the memory as fp32 words.
  const size_t words = bytes / sizeof(float);
  if (words > 0) {
    Launch launch(*core_);
    kernels::fill_zero(*core_,
                       launch.hbm(ptr, DType::kF32, {static_cast<int64_t>(words)}, "dst"));
    launch.finish();
  }
  // A tail of 2 bytes (an odd count of bf16 elements) is cleared directly.
  std::memset(static_cast<char*>(ptr) + words * sizeof(float), 0, bytes % sizeof(float));
}

Precision NeuronSimBackend::precision() const {
  // Linear layers read the fp32 master weights and round them to the compute dtype on the chip.
  return {.activations = compute_, .matmul_weights = DType::kF32};
}

bool NeuronSimBackend::supports(OpKind kind, std::span<const DType> dtypes) const {
  const std::span<const OperandRule> rules = native_operands(kind);
  if (rules.empty() || rules.size() != dtypes.size()) return false;
  for (size_t i = 0; i < rules.size(); ++i) {
    // An absent operand reports a default Tensor's dtype (fp32).
    const bool absent = rules[i].optional && dtypes[i] == DType::kF32;
    if (!accepts(rules[i].dtypes, dtypes[i]) && !absent) return false;
  }
  return true;
}

void NeuronSimBackend::on_host_fallback(OpKind kind) { ++host_calls_[static_cast<size_t>(kind)]; }

SimulationReport NeuronSimBackend::simulation_report() const {
  const ::switchyard::neuron::RunStats stats = core_->stats();
  const auto& config = core_->config();
  SimulationReport report;
  report.target = config.target;
  report.core = config.core_name;
  report.cores_per_chip = config.cores_per_chip;
  report.total_ns = stats.total_ns;
  for (const auto& engine : stats.engines) report.engines.push_back({engine.name, engine.busy_ns});
  report.hbm_bytes = static_cast<double>(stats.hbm_read_bytes + stats.hbm_write_bytes);
  report.matmul_flops = stats.matmul_flops;
  report.instructions = stats.instructions;
  report.peak_tflops = config.peak_tflops(compute_);
  for (size_t kind = 0; kind < host_calls_.size(); ++kind) {
    if (host_calls_[kind] == 0) continue;
    report.unsimulated_ops.emplace_back(op_name(static_cast<OpKind>(kind)), host_calls_[kind]);
  }
  return report;
}

void NeuronSimBackend::start_trace() {
  core_->clear_trace();
  core_->record_trace(true);
}

void NeuronSimBackend::finish_trace(const std::string& path) {
  core_->record_trace(false);
  core_->write_trace(path);
}

}  // namespace switchyard::backend::neuron
