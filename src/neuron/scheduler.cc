// Scheduler: tracks, dependencies, shared ports, HBM bandwidth, the clock and the run's totals.
#include "neuron/scheduler.h"

#include <fmt/format.h>

#include <algorithm>

#include "neuron/cost_model.h"
#include "neuron/instruction_costs.h"

namespace switchyard::neuron {

Scheduler::Scheduler(const CoreConfig& config, const Memories& memories, KernelContext& context,
                     Trace& trace)
    : config_(config),
      memories_(memories),
      context_(context),
      trace_(trace),
      hbm_ledger_(config.hbm_core_gbps(), kHbmBucketNs) {
  const int tracks = kComputeEngines + config_.dma_queues;
  track_free_.assign(tracks, 0.0);
  track_busy_.assign(tracks, 0.0);
  track_count_.assign(tracks, 0);
}

void Scheduler::on_allocate(int32_t id) {
  const Region whole = memories_.whole_region(id);
  deps_.on_allocate(whole.allocation, memories_.memory_of_slot(whole.allocation), whole);
}

void Scheduler::on_release(int32_t id) {
  const Region whole = memories_.whole_region(id);
  deps_.on_release(whole.allocation, memories_.memory_of_slot(whole.allocation), whole);
}

int Scheduler::queue_track(int queue) {
  if (queue == kAnyQueue) {
    queue = next_queue_;
    next_queue_ = (next_queue_ + 1) % config_.dma_queues;
  }
  return kComputeEngines + queue;
}

void Scheduler::finish(const char* op, int track, double start, double end, double done) {
  total_ns_ = std::max(total_ns_, done);
  trace_.add(context_.kernel_id(), track, op, start, end);
  last_timing_ = InstructionTiming{op, start, end, done};
  context_.count_instruction();
}

void Scheduler::schedule(const char* op, int track, const Accesses& accesses, double busy_ns,
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
  finish(op, track, start, end, done);
}

void Scheduler::schedule_elementwise(const char* op, Engine engine, const Accesses& accesses,
                                     double cycles) {
  const double ghz = cost::engine_ghz(config_, engine);
  const double latency_cycles = cost::engine_latency_cycles(engine);
  unsigned ports = 0;
  if (config_.port_conflicts) {
    bool touches_sbuf = false;
    bool touches_psum = false;
    auto note = [&](const Region& r) {
      (memories_.memory_of_slot(r.allocation) == Memory::kPsum ? touches_psum : touches_sbuf) =
          true;
    };
    for (int i = 0; i < accesses.num_reads; ++i) note(accesses.reads[i]);
    for (int i = 0; i < accesses.num_writes; ++i) note(accesses.writes[i]);
    // v2: VectorE and GpSimd share the SBUF port; VectorE and ScalarE share the PSUM port.
    if (touches_sbuf && (engine == Engine::kVector || engine == Engine::kGpSimd))
      ports |= kSbufSharedPort;
    if (touches_psum && (engine == Engine::kVector || engine == Engine::kScalar))
      ports |= kPsumSharedPort;
  }
  schedule(op, track_of(engine), accesses, cycles / ghz, latency_cycles / ghz, ports);
}

void Scheduler::schedule_dma(const char* op, int queue, const Accesses& accesses, int64_t bytes,
                             int64_t hbm_read, int64_t hbm_write, double efficiency) {
  const int track = queue_track(queue);
  const double rate = config_.dma_queue_gbps * efficiency;  // bytes per ns
  const double start = std::max(track_free_[track], deps_.ready_time(accesses));
  // Transfers under 32 KiB hold the queue as long as a 32 KiB one (perf guide: they do not reach
  // full bandwidth).
  double end = start + static_cast<double>(std::max(bytes, cost::kDmaFullBandwidthBytes)) / rate;
  const int64_t hbm_bytes = hbm_read + hbm_write;
  if (hbm_bytes > 0) {
    end = std::max(end, hbm_ledger_.book(start, static_cast<double>(hbm_bytes), rate));
  }
  const double done = end + config_.dma_fixed_latency_ns;
  track_free_[track] = end;
  track_busy_[track] += end - start;
  track_count_[track] += 1;
  hbm_read_bytes_ += hbm_read;
  hbm_write_bytes_ += hbm_write;
  deps_.commit(accesses, end, done);
  finish(op, track, start, end, done);
}

void Scheduler::schedule_tensor(const char* op, const Accesses& load_after,
                                const Accesses& accesses, double load_ns, double multiply_ns) {
  const double load_start =
      std::max({deps_.ready_time(load_after), stationary_loader_free_, last_multiply_start_});
  const double load_end = load_start + load_ns;
  const int track = track_of(Engine::kTensor);
  const double previous_end = track_free_[track];
  const double multiply_start = std::max({load_end, previous_end, deps_.ready_time(accesses)});
  const double multiply_end = multiply_start + multiply_ns;
  // Load time not hidden behind the previous multiply counts as TensorE busy time.
  const double exposed = std::max(0.0, load_end - std::max(load_start, previous_end));
  stationary_loader_free_ = load_end;
  last_multiply_start_ = multiply_start;
  track_free_[track] = multiply_end;
  track_busy_[track] += multiply_ns + exposed;
  track_count_[track] += 1;
  deps_.commit(accesses, multiply_end, multiply_end);
  trace_.add(context_.kernel_id(), kComputeEngines + config_.dma_queues, "load_stationary",
             load_start, load_end);
  finish(op, track, multiply_start, multiply_end, multiply_end);
}

void Scheduler::fence() {
  for (double& free_at : track_free_) free_at = std::max(free_at, total_ns_);
  for (double& free_at : port_free_) free_at = std::max(free_at, total_ns_);
  stationary_loader_free_ = std::max(stationary_loader_free_, total_ns_);
  last_multiply_start_ = std::max(last_multiply_start_, total_ns_);
  deps_.clear();
  hbm_ledger_.forget_before(total_ns_);
}

void Scheduler::wait_for_peers(double ns) {
  fence();
  const double start = total_ns_;
  total_ns_ += ns;
  trace_.add(context_.kernel_id(), track_of(Engine::kGpSimd), "wait_for_peers", start, total_ns_);
  fence();
}

RunStats Scheduler::stats() const {
  RunStats s;
  s.total_ns = total_ns_;
  s.instructions = context_.instructions();
  for (size_t t = 0; t < track_free_.size(); ++t) {
    EngineStats e;
    double ghz = config_.tensor_ghz;
    if (t < kComputeEngines) {
      e.name = engine_name(static_cast<Engine>(t));
      ghz = cost::engine_ghz(config_, static_cast<Engine>(t));
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
  s.sbuf_high_water_bytes = memories_.allocator(Memory::kSbuf).high_water();
  s.psum_high_water_bytes = memories_.allocator(Memory::kPsum).high_water();
  s.hbm_high_water_bytes = memories_.allocator(Memory::kHbm).high_water();
  return s;
}

}  // namespace switchyard::neuron
