#include "backend/neuron/neuron_sim_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include <fmt/format.h>

#include "backend/neuron/all_reduce_kernel.h"
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
constexpr const char* kTimingSuffix = ":timing";

}  // namespace

std::optional<SimDevice> parse_sim_device(const std::string& name) {
  SimDevice device;
  std::string base = name;
  if (base.ends_with(kTimingSuffix)) {
    base.resize(base.size() - std::string(kTimingSuffix).size());
    device.mode = ExecutionMode::kTimingOnly;
  }
  for (const char* t : {"trn1", "trn2"}) {
    const std::string sim = std::string(t) + "-sim";
    if (base == sim || base == sim + "-fp32") {
      device.target = t;
      device.precision = base == sim ? SimPrecision::kBf16 : SimPrecision::kFp32;
      return device;
    }
  }
  return std::nullopt;
}

std::string sim_device_name(const SimDevice& device) {
  return device.target + "-sim" + (device.precision == SimPrecision::kFp32 ? "-fp32" : "") +
         (device.mode == ExecutionMode::kTimingOnly ? kTimingSuffix : "");
}

const std::vector<std::string>& sim_device_names() {
  static const std::vector<std::string> names = {"trn1-sim", "trn2-sim", "trn1-sim-fp32",
                                                 "trn2-sim-fp32"};
  return names;
}

std::string describe_sim_device(const std::string& name) {
  const std::optional<SimDevice> device = parse_sim_device(name);
  require(device.has_value(), "'{}' is not a simulator device", name);
  const auto c = ::switchyard::neuron::config_for_target(device->target);
  const std::string mode =
      device->mode == ExecutionMode::kTimingOnly
          ? "timing only: simulated times without arithmetic, outputs unspecified"
          : fmt::format("{}{} times it without arithmetic (outputs unspecified)", name,
                        kTimingSuffix);
  return fmt::format(
      "simulated {} ({}, 1 of {} cores per chip, {:.0f} GiB HBM share), {}; {}", c.core_name,
      c.target, c.cores_per_chip, static_cast<double>(c.hbm_core_bytes()) / (1 << 30),
      device->precision == SimPrecision::kBf16 ? "bf16 compute, fp32 master weights"
                                               : "fp32 compute (parity mode)",
      mode);
}

NeuronSimBackend::NeuronSimBackend(const std::string& target, SimPrecision precision,
                                   ExecutionMode mode)
    : target_(target),
      precision_(precision),
      mode_(mode),
      compute_(precision == SimPrecision::kBf16 ? DType::kBF16 : DType::kF32),
      core_(std::make_unique<NeuronCore>(::switchyard::neuron::config_for_target(target), mode)) {}

NeuronSimBackend::~NeuronSimBackend() {
  for (auto& [ptr, block] : allocations_) std::free(block.base);
}

std::string NeuronSimBackend::name() const {
  return sim_device_name({target_, precision_, mode_});
}

std::string NeuronSimBackend::description() const { return describe_sim_device(name()); }

void* NeuronSimBackend::allocate(size_t bytes) {
  const size_t capacity = static_cast<size_t>(core_->config().hbm_core_bytes());
  require(allocated_bytes_ + bytes <= capacity,
          "{}: cannot allocate {} bytes of device memory: {} of the simulated core's {} bytes of "
          "HBM are in use",
          name(), bytes, allocated_bytes_, capacity);
  const size_t rounded = (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  // Timing-only kernels write nothing, yet what host code reads back must be defined: that
  // memory starts zeroed (calloc maps large blocks as zero pages, which cost nothing until used).
  void* base = mode_ == ExecutionMode::kTimingOnly ? std::calloc(rounded + kAlignment, 1)
                                                   : std::aligned_alloc(kAlignment, rounded);
  if (!base) fail("{}: host memory for {} bytes of device memory is exhausted", name(), bytes);
  void* ptr = base;
  if (mode_ == ExecutionMode::kTimingOnly) {
    const uintptr_t address = reinterpret_cast<uintptr_t>(base);
    ptr = reinterpret_cast<void*>((address + kAlignment - 1) / kAlignment * kAlignment);
  }
  allocations_[static_cast<const char*>(ptr)] = {bytes, base};
  allocated_bytes_ += bytes;
  return ptr;
}

void NeuronSimBackend::release(void* ptr) {
  if (!ptr) return;
  auto it = allocations_.find(static_cast<const char*>(ptr));
  require(it != allocations_.end(), "{}: release of memory this device did not allocate", name());
  allocated_bytes_ -= it->second.bytes;
  void* base = it->second.base;
  allocations_.erase(it);
  std::free(base);
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
  report.peak_hbm_gbps = config.hbm_core_gbps();
  report.shared_sbuf_port = config.port_conflicts;
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

void NeuronSimBackend::simulate_all_reduce(int64_t bytes, int ranks) {
  require(bytes > 0 && ranks >= 2, "{}: an all-reduce needs bytes > 0 and 2 or more ranks, got {} and {}",
          name(), bytes, ranks);
  // The ring's buffers in the activations' dtype; zeroed in functional mode so that the adds
  // read defined values (their sums are never used).
  const int64_t n = std::max<int64_t>(1, bytes / static_cast<int64_t>(dtype_bytes(compute_)));
  const View own = core_->hbm_alloc({n}, compute_, "all_reduce.own");
  const View peer = core_->hbm_alloc({n}, compute_, "all_reduce.peer");
  if (mode_ == ExecutionMode::kFunctional) {
    const std::vector<float> zeros(static_cast<size_t>(n), 0.0f);
    core_->write(own, zeros);
    core_->write(peer, zeros);
  }
  core_->fence();
  kernels::ring_all_reduce(*core_, own, peer, ranks, compute_);
  core_->fence();
  core_->release(peer);
  core_->release(own);
}

void NeuronSimBackend::wait_for_peers(double ns, const std::string& what) {
  require(ns >= 0, "{}: a wait of {} ns", name(), ns);
  KernelScope scope(*core_, what);
  core_->wait_for_peers(ns);
}

void NeuronSimBackend::trace_collective(const std::string& name, double start_ns, double end_ns) {
  core_->trace_collective(name, start_ns, end_ns);
}

}  // namespace switchyard::backend::neuron
