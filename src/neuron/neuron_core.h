// NeuronCore: a functional and timed simulator of one Trainium-class NeuronCore.
//
// A kernel allocates tiles in HBM, SBUF and PSUM, then issues instructions on the engines:
// DMA queues (copies, gathers, scatters), TensorE (matmul, transpose), ScalarE (activation),
// VectorE and GpSimd (elementwise, reductions, memset, iota, select). Each instruction
//   1. is checked against the hardware rules (rules.h), which throw switchyard::Error naming the
//      kernel, the instruction and the rule it breaks;
//   2. in functional mode, executes at once on real values (executor.h: fp32 internally, results
//      rounded to the destination dtype with round-to-nearest-even), so the host can read
//      results back immediately; in timing-only mode (execution_mode.h) it computes nothing;
//   3. is scheduled (scheduler.h): it starts when its engine (each engine and DMA queue runs its
//      own queue in order) is free and the instructions whose memory it reads or overwrites are
//      done (dependencies are tracked automatically by address range), and costs what the
//      published cost model says (instruction_costs.h, cost_model.h).
// stats() summarises the simulated time, engine busy times, HBM traffic and FLOPs; write_trace()
// writes a Chrome trace-event JSON (trace.h) that Perfetto opens. The memories and their
// allocations are in memories.h.
//
// In functional mode memory is filled with NaN when allocated, so a kernel reading memory it
// never wrote sees NaN. The host-side read()/write() move data without taking simulated time.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "neuron/config.h"
#include "neuron/execution_mode.h"
#include "neuron/executor.h"
#include "neuron/isa.h"
#include "neuron/kernel_context.h"
#include "neuron/memories.h"
#include "neuron/rules.h"
#include "neuron/run_stats.h"
#include "neuron/scheduler.h"
#include "neuron/trace.h"
#include "neuron/view.h"

namespace switchyard::neuron {

class NeuronCore {
 public:
  explicit NeuronCore(CoreConfig config, ExecutionMode mode = ExecutionMode::kFunctional);
  NeuronCore(const NeuronCore&) = delete;
  NeuronCore& operator=(const NeuronCore&) = delete;

  const CoreConfig& config() const { return config_; }
  ExecutionMode mode() const { return mode_; }

  // Names the kernel that the following instructions belong to (errors and trace use it).
  void set_kernel(std::string name) { context_.set_kernel(std::move(name)); }
  const std::string& kernel() const { return context_.kernel_name(); }

  // ---- Memory. Allocation beyond capacity throws at once, saying what was asked and what is free.
  // HBM tensor of `shape` (1 to 5 dims; the first is the row dimension of the returned view, a
  // 1-D tensor is one row).
  View hbm_alloc(const std::vector<int64_t>& shape, DType dtype, const std::string& name);
  // SBUF / PSUM tile of `partitions` (<= 128) x free_shape (up to 4 dims). The tile's bytes are
  // reserved in every partition. PSUM tiles of at most one bank (2 KiB per partition) never
  // straddle a bank boundary; larger ones start on a bank boundary.
  View sbuf_alloc(int64_t partitions, const std::vector<int64_t>& free_shape, DType dtype,
                  const std::string& name);
  View psum_alloc(int64_t partitions, const std::vector<int64_t>& free_shape, DType dtype,
                  const std::string& name);
  // HBM tensor like hbm_alloc whose bytes are the caller's `data` (which must outlive the
  // allocation): for a backend whose device memory already holds the tensor in this dtype, so
  // that a kernel reads and writes it in place. Takes HBM capacity like any tensor; its contents
  // are the caller's, not NaN.
  View hbm_attach(void* data, const std::vector<int64_t>& shape, DType dtype,
                  const std::string& name);
  // Frees the allocation `view` belongs to; later instructions using it throw.
  void release(const View& view);
  const std::string& allocation_name(const View& view) const { return memories_.name_of(view); }
  // Largest contiguous free range per partition, in bytes.
  int64_t sbuf_largest_free() const { return memories_.allocator(Memory::kSbuf).largest_free(); }
  int64_t psum_largest_free() const { return memories_.allocator(Memory::kPsum).largest_free(); }

  // Host access (no simulated time): values as fp32, partition-major then free dims row-major.
  // In timing-only mode the core's memories hold no values: reads give zeros and writes are
  // dropped, except for HBM tensors attached from caller memory, which are read and written.
  std::vector<float> read(const View& view) const;
  void read(const View& view, std::span<float> out) const;  // out holds view.elements() values
  void write(const View& view, std::span<const float> values);  // rounds to the view's dtype

  // ---- DMA (queue 0 .. dma_queues-1, or kAnyQueue). Endpoints in HBM or SBUF; dtype cast allowed.
  // Copies src to dst; both must have the same partition count and free size.
  void dma_copy(const View& dst, const View& src, int queue = kAnyQueue);
  // Embedding gather: dst row p = table row indices[p] (table: HBM view whose rows are the
  // table rows; indices: SBUF int32 [P, 1]; dst: SBUF [P, row size]).
  void dma_gather(const View& dst, const View& table, const View& indices, int queue = kAnyQueue);
  // Scatter: table row indices[p] = (or += with accumulate) src row p, in partition order. With
  // NegativeIndex::kSkip a negative index drops its row (its descriptor writes nothing), as an
  // indirect store skips rows marked absent; otherwise every index must be a row of the table.
  void dma_scatter(const View& table, const View& src, const View& indices, bool accumulate,
                   int queue = kAnyQueue, NegativeIndex negative = NegativeIndex::kError);

  // ---- TensorE.
  // out[M, N] (+)= stationary[K, M]^T @ moving[K, N]: K <= 128 partitions, M <= 128, N <= 512,
  // out an fp32 PSUM view within one bank. `start` opens an accumulation group (zeroes out),
  // without it the matmul accumulates into the open group of exactly this out region; `stop`
  // closes the group, after which out may be read. At most 8 groups are open at once.
  void matmul(const View& out, const View& stationary, const View& moving, bool start, bool stop);
  // out[F, P] = in[P, F]^T through the PE array (P, F <= 128; out in PSUM).
  void transpose(const View& out, const View& in);

  // ---- ScalarE: out = func(in * scale + bias), scale and bias immediates or [P, 1] columns.
  // activation_reduce also writes reduce_out ([P, 1]) = the free-axis sum of the outputs (in fp32,
  // before rounding to out's dtype).
  void activation(const View& out, Activation function, const View& in, Operand scale = 1.0f,
                  Operand bias = 0.0f);
  void activation_reduce(const View& out, Activation function, const View& in,
                         const View& reduce_out, Operand scale = 1.0f, Operand bias = 0.0f);

  // ---- VectorE (or GpSimd, engine argument; ScalarE also copies).
  void tensor_tensor(const View& out, const View& a, AluOp op, const View& b,
                     Engine engine = Engine::kVector);
  // out = (in op0 s0) op1 s1; op1 = kBypass skips the second op.
  void tensor_scalar(const View& out, const View& in, AluOp op0, Operand s0,
                     AluOp op1 = AluOp::kBypass, Operand s1 = 0.0f,
                     Engine engine = Engine::kVector);
  // Reduces the innermost `axes` free dimensions (default: all) with op (add, max, min,
  // multiply); out's free size is the product of the remaining dimensions.
  void tensor_reduce(const View& out, AluOp op, const View& in, int axes = kMaxFreeDims,
                     Engine engine = Engine::kVector);
  void tensor_copy(const View& out, const View& in, Engine engine = Engine::kVector);
  void reciprocal(const View& out, const View& in, Engine engine = Engine::kVector);
  void memset(const View& out, float value, Engine engine = Engine::kVector);
  // out = predicate != 0 ? on_true : on_false, elementwise.
  void select(const View& out, const View& predicate, const View& on_true, const View& on_false,
              Engine engine = Engine::kVector);

  // ---- MXFP4 decode (VectorE or GpSimd), what NeuronCore-v2/v3 need to multiply MXFP4 weights:
  // their TensorE takes no FP4 (v4's multiplies MXFP4 directly and needs no decode step).
  // out[p, v] = E2M1(nibble v % 2, low first, of codes[p, v / 2]) * 2^(scales[p, v / run] - 127),
  // run = out's free size / scales' free size (even; an MXFP4 block is 32), over the views'
  // elements in order. codes and scales are uint8 SBUF tiles (bytes as DMA brought them from
  // HBM), out an SBUF float tile; an E8M0 byte of 255 gives NaN. Decoding to bf16 or fp32 is
  // exact: every value is the product core/dtype.h's decode_mxfp4_block forms. Costs
  // cost::kMxfp4DecodePasses elementwise passes over out.
  void mxfp4_decode(const View& out, const View& codes, const View& scales,
                    Engine engine = Engine::kVector);

  // ---- GpSimd.
  // out[p, i0..i3] = base + partition_step * p + sum_d free_steps[d] * i_d (p counts from 0).
  void iota(const View& out, float base, float partition_step,
            const std::vector<float>& free_steps);
  // out = (base + partition_step * p + sum_d free_steps[d] * i_d) cmp 0 ? in : fill, with cmp one
  // of the comparison AluOps (a causal mask: p - i >= 0).
  void affine_select(const View& out, const View& in, float base, float partition_step,
                     const std::vector<float>& free_steps, AluOp cmp, float fill);

  // A kernel-launch boundary: every instruction issued after the fence starts once everything
  // issued before it is done (as when a host launches kernels one after another).
  void fence() { scheduler_.fence(); }
  // A fence, then `ns` of waiting on other cores (a collective's handshake): scheduler.h.
  void wait_for_peers(double ns) { scheduler_.wait_for_peers(ns); }

  // ---- Results.
  double now_ns() const { return scheduler_.now_ns(); }
  const InstructionTiming& last_timing() const { return scheduler_.last_timing(); }
  RunStats stats() const { return scheduler_.stats(); }
  // Chrome trace-event JSON of the instructions issued while record_trace(true) was on.
  void record_trace(bool on) { trace_.record(on); }
  void clear_trace() { trace_.clear(); }
  void write_trace(const std::string& path) const { trace_.write(path, config_, context_); }
  // A collective that ran beside this core from start_ns to end_ns of its clock (a data-parallel
  // step's, on the simulated interconnect): a slice on the trace's collectives track, nothing more.
  void trace_collective(std::string name, double start_ns, double end_ns) {
    trace_.add_collective(std::move(name), start_ns, end_ns);
  }

 private:
  View allocate(Memory memory, int64_t partitions, const std::vector<int64_t>& free_shape,
                DType dtype, const std::string& name, uint8_t* external = nullptr);
  View hbm_tensor(const std::vector<int64_t>& shape, DType dtype, const std::string& name,
                  uint8_t* external);
  bool executes() const { return mode_ == ExecutionMode::kFunctional; }

  // Declared in construction order: each part refers to those above it.
  CoreConfig config_;
  ExecutionMode mode_;
  KernelContext context_;
  Memories memories_;
  Rules rules_;
  Executor executor_;
  Trace trace_;
  Scheduler scheduler_;
};

}  // namespace switchyard::neuron
