// NeuronCore: scheduling (engine queues, dependencies, shared ports, HBM bandwidth), results and
// the Chrome trace.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "neuron/cost_model.h"
#include "neuron/neuron_core.h"

namespace switchyard::neuron {

double NeuronCore::engine_ghz(Engine engine) const {
  switch (engine) {
    case Engine::kTensor:
      return config_.tensor_ghz;
    case Engine::kVector:
      return config_.vector_ghz;
    case Engine::kScalar:
      return config_.scalar_ghz;
    case Engine::kGpSimd:
      return config_.gpsimd_ghz;
  }
  return 1.0;
}

int NeuronCore::queue_track(int queue) {
  if (queue == kAnyQueue) {
    queue = next_queue_;
    next_queue_ = (next_queue_ + 1) % config_.dma_queues;
  }
  return kComputeEngines + queue;
}

double NeuronCore::schedule(const char* op, int track, const Accesses& accesses, double busy_ns,
                            double latency_ns, unsigned ports) {
  double start = std::max(track_free_[track], deps_.ready_time(accesses));
  for (int port = 0; port < 3; ++port) {
    if (ports & (1u << port)) start = std::max(start, port_free_[port]);
  }
  double end = start + busy_ns;
  double done = end + latency_ns;
  for (int port = 0; port < 3; ++port) {
    if (ports & (1u << port)) port_free_[port] = end;
  }
  track_free_[track] = end;
  track_busy_[track] += busy_ns;
  track_count_[track] += 1;
  deps_.commit(accesses, end, done);
  total_ns_ = std::max(total_ns_, done);
  trace(op, track, start, end);
  last_timing_ = InstructionTiming{op, start, end, done};
  ++instruction_count_;
  return end;
}

void NeuronCore::fence() {
  for (double& free_at : track_free_) free_at = std::max(free_at, total_ns_);
  for (double& free_at : port_free_) free_at = std::max(free_at, total_ns_);
  stationary_loader_free_ = std::max(stationary_loader_free_, total_ns_);
  last_multiply_start_ = std::max(last_multiply_start_, total_ns_);
  deps_.clear();
  hbm_ledger_.forget_before(total_ns_);
}

void NeuronCore::trace(const char* op, int track, double start_ns, double end_ns) {
  if (trace_on_) trace_.push_back(TraceEvent{kernel_, track, op, start_ns, end_ns});
}

double NeuronCore::elementwise_cycles(const char* op, Engine engine, int64_t n, int inputs,
                                      std::initializer_list<const View*> operands,
                                      bool fast_mode_eligible) {
  // An innermost stride over 16 bytes halves SBUF/PSUM bandwidth (perf guide).
  int64_t stride_factor = 1;
  bool contiguous = true;
  bool all_sbuf = true;
  bool all_16bit = true;
  for (const View* v : operands) {
    int64_t inner = v->free_dims() ? v->free_dim(v->free_dims() - 1).stride : 1;
    if (v->free_dims() && v->free_dim(v->free_dims() - 1).size > 1 &&
        inner * dtype_bytes(v->dtype()) > cost::kWideStrideBytes)
      stride_factor = cost::kWideStrideFactor;
    if (inner != 1) contiguous = false;
    if (v->memory() != Memory::kSbuf) all_sbuf = false;
    if (v->dtype() != DType::kBF16 && v->dtype() != DType::kF16) all_16bit = false;
  }
  switch (engine) {
    case Engine::kScalar:
      return static_cast<double>(std::max(cost::kScalarMinCycles, n * stride_factor));
    case Engine::kGpSimd:
      return static_cast<double>(cost::kGpSimdFixedCycles + n * inputs * stride_factor);
    case Engine::kVector: {
      double cycles = static_cast<double>(n * inputs * stride_factor);
      if (config_.vector_fast_mode && fast_mode_eligible && contiguous && all_sbuf) {
        cycles /= all_16bit ? cost::kVectorFastModeDivisor16 : cost::kVectorFastModeDivisorOther;
      }
      return std::max(static_cast<double>(cost::kVectorMinIssueCycles), cycles);
    }
    case Engine::kTensor:
      break;
  }
  rule_error(op, "TensorE does not run elementwise instructions");
}

void NeuronCore::schedule_elementwise(const char* op, Engine engine, const Accesses& accesses,
                                      double cycles) {
  double ghz = engine_ghz(engine);
  double latency_cycles = engine == Engine::kVector   ? cost::kVectorFixedLatencyCycles
                          : engine == Engine::kScalar ? cost::kScalarFixedLatencyCycles
                                                      : 0;  // GpSimd's fixed part is in cycles
  unsigned ports = 0;
  if (config_.port_conflicts) {
    bool touches_sbuf = false;
    bool touches_psum = false;
    for (int i = 0; i < accesses.num_reads; ++i)
      (allocations_[accesses.reads[i].allocation].memory == Memory::kPsum ? touches_psum
                                                                          : touches_sbuf) = true;
    for (int i = 0; i < accesses.num_writes; ++i)
      (allocations_[accesses.writes[i].allocation].memory == Memory::kPsum ? touches_psum
                                                                           : touches_sbuf) = true;
    // v2: VectorE and GpSimd share the SBUF port; VectorE and ScalarE share the PSUM port.
    if (touches_sbuf && (engine == Engine::kVector || engine == Engine::kGpSimd))
      ports |= kSbufSharedPort;
    if (touches_psum && (engine == Engine::kVector || engine == Engine::kScalar))
      ports |= kPsumSharedPort;
  }
  schedule(op, track_of(engine), accesses, cycles / ghz, latency_cycles / ghz, ports);
}

void NeuronCore::schedule_dma(const char* op, int queue, const Accesses& accesses, int64_t bytes,
                              int64_t hbm_read, int64_t hbm_write, double efficiency) {
  int track = queue_track(queue);
  double rate = config_.dma_queue_gbps * efficiency;  // bytes per ns
  double start = std::max(track_free_[track], deps_.ready_time(accesses));
  // Transfers under 32 KiB hold the queue as long as a 32 KiB one (perf guide: they do not reach
  // full bandwidth).
  double end = start + static_cast<double>(std::max(bytes, cost::kDmaFullBandwidthBytes)) / rate;
  int64_t hbm_bytes = hbm_read + hbm_write;
  if (hbm_bytes > 0) {
    end = std::max(end, hbm_ledger_.book(start, static_cast<double>(hbm_bytes), rate));
  }
  double done = end + config_.dma_fixed_latency_ns;
  track_free_[track] = end;
  track_busy_[track] += end - start;
  track_count_[track] += 1;
  hbm_read_bytes_ += hbm_read;
  hbm_write_bytes_ += hbm_write;
  deps_.commit(accesses, end, done);
  total_ns_ = std::max(total_ns_, done);
  trace(op, track, start, end);
  last_timing_ = InstructionTiming{op, start, end, done};
  ++instruction_count_;
}

RunStats NeuronCore::stats() const {
  RunStats s;
  s.total_ns = total_ns_;
  s.instructions = instruction_count_;
  for (size_t t = 0; t < track_free_.size(); ++t) {
    EngineStats e;
    double ghz = config_.tensor_ghz;
    if (t < kComputeEngines) {
      e.name = engine_name(static_cast<Engine>(t));
      ghz = engine_ghz(static_cast<Engine>(t));
    } else {
      e.name = fmt::format("DMA{}", t - kComputeEngines);
    }
    e.busy_ns = track_busy_[t];
    e.busy_cycles = track_busy_[t] * ghz;
    e.utilization = total_ns_ > 0 ? track_busy_[t] / total_ns_ : 0.0;
    e.instructions = track_count_[t];
    s.engines.push_back(e);
  }
  s.hbm_read_bytes = hbm_read_bytes_;
  s.hbm_write_bytes = hbm_write_bytes_;
  s.hbm_gbps =
      total_ns_ > 0 ? static_cast<double>(hbm_read_bytes_ + hbm_write_bytes_) / total_ns_ : 0.0;
  s.matmul_flops = matmul_flops_;
  s.tflops = total_ns_ > 0 ? matmul_flops_ / total_ns_ / 1e3 : 0.0;
  s.sbuf_high_water_bytes = sbuf_allocator_.high_water();
  s.psum_high_water_bytes = psum_allocator_.high_water();
  s.hbm_high_water_bytes = hbm_allocator_.high_water();
  return s;
}

void NeuronCore::write_trace(const std::string& path) const {
  nlohmann::json events = nlohmann::json::array();
  int tracks = kComputeEngines + config_.dma_queues + 1;
  for (int t = 0; t < tracks; ++t) {
    std::string name;
    if (t < kComputeEngines) {
      name = engine_name(static_cast<Engine>(t));
    } else if (t < kComputeEngines + config_.dma_queues) {
      name = fmt::format("DMA queue {}", t - kComputeEngines);
    } else {
      name = "TensorE LoadStationary";
    }
    events.push_back(
        {{"ph", "M"}, {"name", "thread_name"}, {"pid", 0}, {"tid", t}, {"args", {{"name", name}}}});
    events.push_back({{"ph", "M"},
                      {"name", "thread_sort_index"},
                      {"pid", 0},
                      {"tid", t},
                      {"args", {{"sort_index", t}}}});
  }
  events.push_back({{"ph", "M"},
                    {"name", "process_name"},
                    {"pid", 0},
                    {"args", {{"name", fmt::format("{} {}", config_.target, config_.core_name)}}}});
  for (const TraceEvent& e : trace_) {
    events.push_back({{"ph", "X"},
                      {"name", fmt::format("{}.{}", kernels_[e.kernel], e.op)},
                      {"cat", kernels_[e.kernel]},
                      {"pid", 0},
                      {"tid", e.track},
                      {"ts", e.start_ns / 1e3},
                      {"dur", (e.end_ns - e.start_ns) / 1e3}});
  }
  nlohmann::json doc = {{"traceEvents", events}, {"displayTimeUnit", "ns"}};
  std::FILE* f = std::fopen(path.c_str(), "wb");
  require(f != nullptr, "cannot open trace file '{}' for writing", path);
  std::string text = doc.dump();
  size_t written = std::fwrite(text.data(), 1, text.size(), f);
  int closed = std::fclose(f);
  require(written == text.size() && closed == 0, "failed writing trace file '{}'", path);
}

}  // namespace switchyard::neuron
