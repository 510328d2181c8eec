// When each instruction runs on the simulated core, and the simulated clock.
//
// Each compute engine and each DMA queue is a track that runs its instructions in issue order.
// An instruction starts when its track is free and the earlier instructions whose memory it
// reads or overwrites are done (DependencyTracker); on v2, engines sharing an SBUF or PSUM port
// also wait for each other. DMA transfers share the core's HBM bandwidth (BandwidthLedger).
// TensorE loads a matmul's stationary operand in the background while the previous multiply
// runs. Costs come from instruction_costs.h; nothing here looks at values, so both execution
// modes schedule alike. Every scheduled instruction is counted and added to the trace.
#pragma once

#include <cstdint>
#include <vector>

#include "neuron/bandwidth_ledger.h"
#include "neuron/config.h"
#include "neuron/dependency_tracker.h"
#include "neuron/isa.h"
#include "neuron/kernel_context.h"
#include "neuron/memories.h"
#include "neuron/run_stats.h"
#include "neuron/trace.h"
#include "neuron/view.h"

namespace switchyard::neuron {

class Scheduler {
 public:
  Scheduler(const CoreConfig& config, const Memories& memories, KernelContext& context,
            Trace& trace);

  // ---- Per instruction (the arguments of the NeuronCore method of the same name), after the
  // rules have accepted it. Defined in scheduler_instructions.cc.
  void dma_copy(const View& dst, const View& src, int queue);
  void dma_gather(const View& dst, const View& table, const View& indices, int queue);
  // `rows_written`: the rows the scatter moves (skipped rows move no bytes).
  void dma_scatter(const char* op, const View& table, const View& src, const View& indices,
                   bool accumulate, int queue, int64_t rows_written);
  void matmul(const View& out, const View& stationary, const View& moving, bool start);
  void transpose(const View& out, const View& in);
  void activation(const char* op, const View& out, const View& in, const View* reduce_out,
                  const Operand& scale, const Operand& bias);
  void tensor_tensor(const View& out, const View& a, AluOp alu, const View& b, Engine engine);
  void tensor_scalar(const View& out, const View& in, const Operand& s0, const Operand& s1,
                     Engine engine);
  void tensor_reduce(const View& out, AluOp alu, const View& in, Engine engine);
  void tensor_copy(const View& out, const View& in, Engine engine);
  void reciprocal(const View& out, const View& in, Engine engine);
  void memset(const View& out, Engine engine);
  void select(const View& out, const View& predicate, const View& on_true, const View& on_false,
              Engine engine);
  void mxfp4_decode(const View& out, const View& codes, const View& scales, Engine engine);
  void iota(const View& out);
  void affine_select(const View& out, const View& in);

  // Allocation `id` now covers / no longer covers its memory (dependencies on reused bytes).
  void on_allocate(int32_t id);
  void on_release(int32_t id);
  // Every instruction issued after the fence starts once everything issued before it is done.
  void fence();
  // Everything issued so far finishes, then the core waits `ns` for other cores (a collective's
  // handshake) before anything issued later starts. Shown in the trace on GpSimd's track; no
  // engine counts it as busy.
  void wait_for_peers(double ns);

  double now_ns() const { return total_ns_; }
  const InstructionTiming& last_timing() const { return last_timing_; }
  RunStats stats() const;

 private:
  // Port bits for v2 contention.
  static constexpr unsigned kSbufSharedPort = 1;
  static constexpr unsigned kPsumSharedPort = 2;
  static constexpr double kHbmBucketNs = 250.0;

  int track_of(Engine engine) const { return static_cast<int>(engine); }
  int queue_track(int queue);
  // Places an instruction on `track` after its dependencies (and the ports it uses): busy for
  // busy_ns, its results visible latency_ns after it ends.
  void schedule(const char* op, int track, const Accesses& accesses, double busy_ns,
                double latency_ns, unsigned ports);
  void schedule_elementwise(const char* op, Engine engine, const Accesses& accesses,
                            double cycles);
  void schedule_dma(const char* op, int queue, const Accesses& accesses, int64_t bytes,
                    int64_t hbm_read, int64_t hbm_write, double efficiency);
  // A TensorE instruction: its LoadStationary waits for `load_after` (and the loader, and the
  // start of the previous multiply), its multiply for the load, the engine and `accesses`.
  void schedule_tensor(const char* op, const Accesses& load_after, const Accesses& accesses,
                       double load_ns, double multiply_ns);
  // Records an instruction that ran on `track` from start to end (results visible at done).
  void finish(const char* op, int track, double start, double end, double done);
  Region region_of(const View& view) const { return memories_.region_of(view); }

  const CoreConfig& config_;
  const Memories& memories_;
  KernelContext& context_;
  Trace& trace_;

  DependencyTracker deps_;
  std::vector<double> track_free_;  // per compute engine, then per DMA queue
  std::vector<double> track_busy_;
  std::vector<int64_t> track_count_;
  double port_free_[3] = {0, 0, 0};
  BandwidthLedger hbm_ledger_;  // the core's share of HBM bandwidth
  double stationary_loader_free_ = 0;
  double last_multiply_start_ = 0;
  int next_queue_ = 0;
  double total_ns_ = 0;
  int64_t hbm_read_bytes_ = 0;
  int64_t hbm_write_bytes_ = 0;
  double matmul_flops_ = 0;
  InstructionTiming last_timing_;
};

}  // namespace switchyard::neuron
