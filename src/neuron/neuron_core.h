// NeuronCore: a functional and timed simulator of one Trainium-class NeuronCore.
//
// A kernel allocates tiles in HBM, SBUF and PSUM, then issues instructions on the engines:
// DMA queues (copies, gathers, scatters), TensorE (matmul, transpose), ScalarE (activation),
// VectorE and GpSimd (elementwise, reductions, memset, iota, select). Each instruction
//   1. checks the hardware rules and throws switchyard::Error naming the kernel, the instruction
//      and the rule it breaks;
//   2. executes at once on real values (fp32 internally, results rounded to the destination
//      dtype with round-to-nearest-even), so the host can read results back immediately;
//   3. is scheduled: it starts when its engine (each engine and DMA queue runs its own queue in
//      order) is free and the instructions whose memory it reads or overwrites are done
//      (dependencies are tracked automatically by address range), and costs what the published
//      cost model says (cost_model.h).
// stats() summarises the simulated time, engine busy times, HBM traffic and FLOPs; write_trace()
// writes a Chrome trace-event JSON (one track per engine and DMA queue) that Perfetto opens.
//
// Memory is filled with NaN when allocated, so a kernel reading memory it never wrote sees NaN.
// The host-side read()/write() move data without taking simulated time.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "neuron/bandwidth_ledger.h"
#include "neuron/config.h"
#include "neuron/dependency_tracker.h"
#include "neuron/isa.h"
#include "neuron/range_allocator.h"
#include "neuron/view.h"

namespace switchyard::neuron {

// Use any DMA queue (round-robin).
inline constexpr int kAnyQueue = -1;

// What an indirect store does with a negative row index: reject it, or skip the row.
enum class NegativeIndex { kError, kSkip };

struct EngineStats {
  std::string name;        // "TensorE", ..., "DMA3"
  double busy_ns = 0;      // time spent executing instructions
  double busy_cycles = 0;  // busy_ns at the engine's clock (DMA queues: TensorE clock)
  double utilization = 0;  // busy_ns / total_ns
  int64_t instructions = 0;
};

// When the most recently issued instruction ran (simulated nanoseconds).
struct InstructionTiming {
  const char* op = "";
  double start_ns = 0;  // began executing on its engine or queue
  double end_ns = 0;    // engine or queue free again
  double done_ns = 0;   // results visible to dependent instructions
};

struct RunStats {
  double total_ns = 0;               // when the last instruction's result is visible
  std::vector<EngineStats> engines;  // TensorE, VectorE, ScalarE, GpSimd, then each DMA queue
  int64_t instructions = 0;
  int64_t hbm_read_bytes = 0;
  int64_t hbm_write_bytes = 0;
  double hbm_gbps = 0;                // (read + write) / total_ns
  double matmul_flops = 0;            // 2*K*M*N summed over matmuls (transposes excluded)
  double tflops = 0;                  // matmul_flops / total_ns
  int64_t sbuf_high_water_bytes = 0;  // per partition
  int64_t psum_high_water_bytes = 0;  // per partition
  int64_t hbm_high_water_bytes = 0;

  // tflops as a percentage of the core's published peak for matmul inputs of `dtype`.
  double percent_of_peak(const CoreConfig& config, DType dtype) const {
    return 100.0 * tflops / config.peak_tflops(dtype);
  }
};

class NeuronCore {
 public:
  explicit NeuronCore(CoreConfig config);
  NeuronCore(const NeuronCore&) = delete;
  NeuronCore& operator=(const NeuronCore&) = delete;

  const CoreConfig& config() const { return config_; }

  // Names the kernel that the following instructions belong to (errors and trace use it).
  void set_kernel(std::string name);
  const std::string& kernel() const { return kernels_[kernel_]; }

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
  const std::string& allocation_name(const View& view) const;
  // Largest contiguous free range per partition, in bytes.
  int64_t sbuf_largest_free() const { return sbuf_allocator_.largest_free(); }
  int64_t psum_largest_free() const { return psum_allocator_.largest_free(); }

  // Host access (no simulated time): values as fp32, partition-major then free dims row-major.
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
  void fence();

  // ---- Results.
  double now_ns() const { return total_ns_; }
  const InstructionTiming& last_timing() const { return last_timing_; }
  RunStats stats() const;
  // Chrome trace-event JSON of the instructions issued while record_trace(true) was on.
  void record_trace(bool on) { trace_on_ = on; }
  void clear_trace() { trace_.clear(); }
  void write_trace(const std::string& path) const;

 private:
  struct Allocation {
    std::string name;
    Memory memory;
    int64_t offset = 0;  // SBUF/PSUM: byte offset within each partition; HBM: virtual address
    int64_t bytes = 0;   // per partition (SBUF/PSUM) or total (HBM)
    int64_t partitions = 0;
    bool live = false;
    int32_t generation = 0;            // bumped each time the slot is reused
    std::vector<uint8_t> hbm_data;     // HBM only: owned bytes
    uint8_t* hbm_external = nullptr;   // HBM only: the caller's bytes (hbm_attach)
    uint8_t* hbm_bytes() { return hbm_external ? hbm_external : hbm_data.data(); }
  };
  // A view's allocation id is generation << kSlotBits | slot. Slots of released allocations are
  // reused (a long training run makes millions of allocations), and the generation tells a view
  // of the released allocation from one of the slot's new tenant.
  static constexpr int kSlotBits = 16;
  static constexpr int32_t kSlotMask = (1 << kSlotBits) - 1;
  static int32_t slot_of(int32_t id) { return id & kSlotMask; }
  // The allocation `id` names, or nullptr if it names none (never allocated, or released and its
  // slot reused).
  const Allocation* find_allocation(int32_t id) const;
  // The allocation of a view that check_view has accepted.
  const Allocation& allocation_of(const View& v) const { return allocations_[slot_of(v.allocation())]; }
  std::vector<uint8_t> take_spare_hbm_buffer(int64_t bytes);
  void keep_spare_hbm_buffer(std::vector<uint8_t> buffer);
  struct TraceEvent {
    int32_t kernel;
    int32_t track;
    const char* op;
    double start_ns;
    double end_ns;
  };
  // Port bits for v2 contention.
  static constexpr unsigned kSbufSharedPort = 1;
  static constexpr unsigned kPsumSharedPort = 2;

  View allocate(Memory memory, int64_t partitions, const std::vector<int64_t>& free_shape,
                DType dtype, const std::string& name, uint8_t* external = nullptr);
  View hbm_tensor(const std::vector<int64_t>& shape, DType dtype, const std::string& name,
                  uint8_t* external);
  // Rule checks.
  [[noreturn]] void rule_error(const char* op, const std::string& message) const;
  void check_view(const char* op, const char* role, const View& view, bool written) const;
  void check_engine_operand(const char* op, const char* role, Engine engine, const View& view,
                            bool written) const;
  void check_psum_closed(const char* op, const char* role, const View& view) const;
  // Checks the per-partition scalar operands ([P, 1] columns; immediates need nothing) of an
  // instruction writing `out`, and records them as reads in `accesses`.
  void read_scalar_operands(const char* op, const char* role, Engine engine, const View& out,
                            std::initializer_list<const Operand*> operands, Accesses& accesses) const;
  Region region_of(const View& view) const;
  uint8_t* element_base(const View& view, int64_t partition) const;
  // Gathers a view's elements into fp32 (partition-major) / scatters with rounding.
  void load(const View& view, float* out) const;
  void store(const View& view, const float* values);
  // The same for partition (row) p of the view alone.
  void load_partition(const View& view, int64_t p, float* out) const;
  void store_partition(const View& view, int64_t p, const float* values);
  // Whether an elementwise instruction may load, compute and store one partition at a time
  // (while the row is in the host's cache) and give the same result as loading every input
  // first: true unless an input shares physical partitions with `out` at a different index.
  // Engine operands are in SBUF/PSUM, where partitions never share bytes.
  static bool rowwise_safe(const View& out, std::initializer_list<const View*> inputs);
  // The functional part of an elementwise instruction writing `out`: row(p, dst) reads partition
  // p of the inputs and writes out's row p, as fp32 values, to dst: out's own memory when out is
  // fp32 and that is safe, otherwise result + p * out.free_size(), stored (rounded) afterwards.
  // Fused per partition when rowwise_safe, otherwise every row is computed before any is stored.
  // Defined in neuron_core_elementwise.cc, its only user.
  template <typename RowFn>
  void compute_rows(const View& out, std::initializer_list<const View*> inputs, float* result,
                    RowFn&& row);
  // Row p of `in` as fp32 values: its own memory when it is fp32 and contiguous, otherwise
  // loaded into `staging`.
  const float* input_row(const View& in, int64_t p, float* staging) const;
  // Row p of `in` written to dst as fp32 values (nothing to do when dst already is that row).
  void load_row(const View& in, int64_t p, float* dst) const;
  // Raw element bytes of a view, in the same order (bit-exact copies).
  void gather_bytes(const View& view, uint8_t* out) const;
  void scatter_bytes(const View& view, const uint8_t* in);
  void gather_partition_bytes(const View& view, int64_t p, uint8_t* out) const;
  void scatter_partition_bytes(const View& view, int64_t p, const uint8_t* in);
  // dst = src (with a dtype cast) one partition at a time, while its row is in cache, when one end
  // is in SBUF and the two are different allocations (so no row can overwrite another's source);
  // false, with nothing copied, otherwise.
  bool copy_by_partition(const View& dst, const View& src);
  // A per-partition scalar operand as `partitions` values, in scratch buffer `scratch_index`.
  std::span<float> load_operand(const Operand& s, int64_t partitions, int scratch_index) const;
  // Uninitialised fp32 working storage for an instruction's operands: buffer `index` (0..3) of
  // `n` values, reused by every instruction so that none allocates. An instruction uses distinct
  // indices for buffers it holds at once; the span lives until the next call with that index.
  std::span<float> scratch(int index, int64_t n) const;

  void activation_impl(const View& out, Activation function, const View& in, const View* reduce_out,
                       Operand scale, Operand bias);
  // Scheduling.
  int track_of(Engine engine) const { return static_cast<int>(engine); }
  int queue_track(int queue);
  double schedule(const char* op, int track, const Accesses& accesses, double busy_ns,
                  double latency_ns, unsigned ports);
  void trace(const char* op, int track, double start_ns, double end_ns);
  double engine_ghz(Engine engine) const;
  double elementwise_cycles(const char* op, Engine engine, int64_t n, int inputs,
                            std::initializer_list<const View*> operands, bool fast_mode_eligible);
  void schedule_elementwise(const char* op, Engine engine, const Accesses& accesses, double cycles);
  void schedule_dma(const char* op, int queue, const Accesses& accesses, int64_t bytes,
                    int64_t hbm_read, int64_t hbm_write, double efficiency);

  CoreConfig config_;
  std::vector<std::string> kernels_{"main"};
  int32_t kernel_ = 0;
  int64_t instruction_count_ = 0;

  std::vector<Allocation> allocations_;  // by slot
  std::vector<int32_t> free_slots_;
  mutable std::array<std::vector<float>, 4> scratch_;
  // Owned HBM buffers of released tensors, kept for the next allocations: a fresh buffer per
  // kernel launch would cost page faults on every launch.
  std::vector<std::vector<uint8_t>> spare_hbm_buffers_;
  RangeAllocator hbm_allocator_;
  RangeAllocator sbuf_allocator_;
  RangeAllocator psum_allocator_;
  // Host bytes between consecutive partitions of SBUF / PSUM: the partition size plus padding.
  // Partitions of a power-of-two multiple of 4 KiB apart map the same elements of every row to
  // the same few host cache sets, which halved the speed of the matmul kernel writing PSUM rows.
  static constexpr int64_t kHostPartitionPadding = 256;
  int64_t sbuf_host_stride() const { return config_.sbuf_partition_bytes + kHostPartitionPadding; }
  int64_t psum_host_stride() const { return config_.psum_partition_bytes + kHostPartitionPadding; }
  std::vector<uint8_t> sbuf_;  // partitions x sbuf_host_stride()
  std::vector<uint8_t> psum_;  // partitions x psum_host_stride()

  // Open PSUM accumulation groups (exact out regions).
  std::vector<Region> open_groups_;

  DependencyTracker deps_;
  std::vector<double> track_free_;  // per compute engine, then per DMA queue
  std::vector<double> track_busy_;
  std::vector<int64_t> track_count_;
  double port_free_[3] = {0, 0, 0};
  static constexpr double kHbmBucketNs = 250.0;
  BandwidthLedger hbm_ledger_;  // the core's share of HBM bandwidth
  double stationary_loader_free_ = 0;
  double last_multiply_start_ = 0;
  int next_queue_ = 0;
  double total_ns_ = 0;
  int64_t hbm_read_bytes_ = 0;
  int64_t hbm_write_bytes_ = 0;
  double matmul_flops_ = 0;

  InstructionTiming last_timing_;
  bool trace_on_ = false;
  std::vector<TraceEvent> trace_;
};

}  // namespace switchyard::neuron
