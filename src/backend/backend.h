// The backend interface: the memory a device owns and the ops (backend/ops.h) it runs.
//
// The model is written once as a sequence of ops; nothing above this interface knows which chip
// runs. Every op has a default: composite ops compose simpler ones, every other op runs the CPU
// reference on the host (directly where device memory is host memory, through copies otherwise),
// so a backend overrides run() only for what it accelerates. supports() says which ops a backend
// runs natively, for callers that choose between forms.
//
// Tensors passed to ops point into memory from allocate() (host memory for the CPU backend).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "backend/ops.h"
#include "core/tensor.h"

namespace switchyard::backend {

using ops::AdamWStep;

// Where a simulator backend's simulated device time went, summed over all work so far. Callers
// take the difference of two reports to time a span of work (one training step, say).
struct SimulationReport {
  std::string target;       // "trn2"
  std::string core;         // "NeuronCore-v3"
  int cores_per_chip = 1;   // the simulated core is one of these; a chip runs that many copies
  double total_ns = 0;      // simulated time of all work issued so far
  struct Engine {
    std::string name;       // "TensorE", "VectorE", "ScalarE", "GpSimd", "DMA0", ...
    double busy_ns = 0;
  };
  std::vector<Engine> engines;
  double hbm_bytes = 0;     // read + written
  double matmul_flops = 0;
  int64_t instructions = 0;  // issued so far, over all engines and DMA queues
  double peak_tflops = 0;   // per core, for the dtype the backend's matmuls use
  double peak_hbm_gbps = 0; // per core: its share of the chip's HBM bandwidth
  bool shared_sbuf_port = false;  // VectorE and GpSimd take turns on one SBUF port (trn1)
  // Ops the backend has no tile program for, run on the host instead: their time is not in the
  // simulated clock. Name and calls.
  std::vector<std::pair<std::string, int64_t>> unsimulated_ops;
};

class SimulatorBackend;

// The element types a backend computes in. Activations (and their gradients, logits, the KV
// cache) are stored as `activations`; linear layers read their weights as `matmul_weights`: fp32
// master weights, or bf16 ones, which the model keeps as a copy or as the high halves of its
// master weights (model/parameter_storage.h).
struct Precision {
  DType activations = DType::kF32;
  DType matmul_weights = DType::kF32;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Registry name, e.g. "cpu".
  virtual std::string name() const = 0;
  // One line describing the device this backend runs on.
  virtual std::string description() const = 0;

  // ---- memory ----
  // Allocates `bytes` of device memory (64-byte aligned); throws Error naming the size on failure.
  virtual void* allocate(size_t bytes) = 0;
  // allocate() of memory that reads as zeros. The CPU backend hands out large buffers as fresh
  // pages, zero without being written, so that a buffer costs resident memory only as it is used
  // (or as make_resident asks).
  virtual void* allocate_zeroed(size_t bytes) {
    void* ptr = allocate(bytes);
    fill_zero(ptr, bytes);
    return ptr;
  }
  // Asks for the first `bytes` of an allocate_zeroed buffer (ptr: its start) to be backed by
  // memory now, its contents kept, so that the first writes later (a KV cache's fresh blocks, in
  // the middle of a decode step) do not stop for page faults. Returns how many of those bytes are
  // resident: all of them where memory is committed when allocated (the default), fewer where
  // the backend keeps a budget.
  virtual size_t make_resident(void* ptr, size_t bytes) {
    (void)ptr;
    return bytes;
  }
  virtual void release(void* ptr) = 0;
  virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill_zero(void* ptr, size_t bytes) = 0;
  // Waits for all queued work (no-op where kernels run synchronously).
  virtual void synchronize() {}
  // True where device memory is host memory (the CPU and the simulators): the host fallback then
  // runs the CPU reference on the tensors in place (when it takes their dtypes; host_fallback.h).
  virtual bool device_memory_is_host_memory() const { return false; }
  // Most device memory held at once so far (allocations and the backend's own scratch), on
  // devices with memory of their own; nullopt where device memory is host memory.
  virtual std::optional<size_t> device_memory_peak_bytes() const { return std::nullopt; }

  // ---- what the backend computes in ----
  virtual Precision precision() const { return {}; }
  // fp32 elements of the record Attention keeps for AttentionBackward, and of the scratch
  // AttentionBackward uses, for `batch` windows of `seq` positions. The defaults hold the full
  // seq x seq probabilities per head; flash-style backends keep per-row statistics only.
  virtual size_t attention_record_floats(const ops::AttentionSpec& spec, int batch, int seq) const {
    return static_cast<size_t>(batch) * spec.heads * seq * seq;
  }
  virtual size_t attention_scratch_floats(const ops::AttentionSpec& spec, int batch,
                                          int seq) const {
    return attention_record_floats(spec, batch, seq);
  }

  // ---- ops ----
  // True when run() executes the op natively (not through a composing default or the host
  // fallback) for operands of these dtypes, in for_each_tensor order (absent operands included).
  virtual bool supports(OpKind kind, std::span<const DType> dtypes) const;
  template <typename Op>
  bool supports(const Op& op) const;

#define SWITCHYARD_DECLARE_RUN(Op, name) virtual void run(const ops::Op& op);
  SWITCHYARD_OPS(SWITCHYARD_DECLARE_RUN)
#undef SWITCHYARD_DECLARE_RUN

  // Simulators' own interface (simulated time, traces); nullptr on real devices.
  virtual SimulatorBackend* simulator() { return nullptr; }
  const SimulatorBackend* simulator() const { return const_cast<Backend*>(this)->simulator(); }

 protected:
  // Runs `op` with the CPU reference on the host (see the header comment). Simulators hear of it
  // through on_host_fallback, so that they can say which work their clock did not see.
  template <typename Op>
  void run_on_host(const Op& op);
  virtual void on_host_fallback(OpKind kind) { (void)kind; }
  // Zeroes the gradients `op` asks to overwrite, for backends whose programs only add to them.
  void zero_overwritten(const ops::LinearBackward& op);

};

// The interface only simulators implement.
class SimulatorBackend {
 public:
  virtual ~SimulatorBackend() = default;
  // The simulated time and work so far.
  virtual SimulationReport simulation_report() const = 0;
  // Starts recording every simulated instruction for a Chrome trace (Perfetto) written to `path`
  // by finish_trace().
  virtual void start_trace() = 0;
  virtual void finish_trace(const std::string& path) = 0;
  // True when the simulator times instructions without computing them (outputs unspecified).
  virtual bool timing_only() const = 0;
  // Advances the simulated clock by this core's part of a ring all-reduce of `bytes` over
  // `ranks` cores of one chip, as if the other ranks ran alongside. The model's tensors are not
  // touched: the ring moves scratch buffers.
  virtual void simulate_all_reduce(int64_t bytes, int ranks) = 0;
  // A data-parallel step's waits for collectives on the simulated interconnect
  // (train/simulated_cluster.h): the core idles `ns`, shown in the trace as the kernel `what`.
  virtual void wait_for_peers(double ns, const std::string& what) = 0;
  // A collective that ran beside the core from start_ns to end_ns of its simulated clock, drawn
  // on the trace's collectives track while a trace records; the clock does not move.
  virtual void trace_collective(const std::string& name, double start_ns, double end_ns) = 0;
};

// A tensor's elements copied to the host as fp32 (bf16 and fp16 widened), and back (rounded to
// nearest even). Dense tensors only.
std::vector<float> to_host_f32(Backend& backend, const Tensor& t);
void from_host_f32(Backend& backend, const Tensor& t, const float* values);

// The simulation report of `backend`, or nullopt when it is a real device.
std::optional<SimulationReport> simulation_report(const Backend& backend);
// The simulator behind `backend`; throws Error naming the device when it is not one (for --trace).
SimulatorBackend& require_simulator(Backend& backend, const char* what);

// The dtypes of an op's operands in for_each_tensor order.
template <typename Op>
std::vector<DType> operand_dtypes(const Op& op) {
  std::vector<DType> dtypes;
  op.for_each_tensor([&](const Tensor& t, ops::Access) { dtypes.push_back(t.dtype); });
  return dtypes;
}

template <typename Op>
bool Backend::supports(const Op& op) const {
  const std::vector<DType> dtypes = operand_dtypes(op);
  return supports(OpTraits<Op>::kind, dtypes);
}

// A backend the registry knows, whether or not it can run here.
struct BackendInfo {
  std::string name;
  bool available = false;
  std::string detail;  // device description when available, otherwise why not
};

// Every backend built into this binary.
std::vector<BackendInfo> list_backends();
// The device a run takes for `--device device --dtype dtype` (dtype: "auto", "fp32" or "bf16"):
// "auto" keeps the device's own precision, except that "cpu" becomes "cpu-bf16" where the CPU
// computes bf16 products natively (cpu_default_dtype); "fp32"/"bf16" pick that precision's form of
// the device (cuda -> cuda-fp32, trn2-sim -> trn2-sim-fp32, cpu -> cpu-bf16, ...). Throws Error for
// an unknown dtype, or a device name that already says the other precision (cpu-bf16 with fp32).
std::string device_for_dtype(const std::string& device, const std::string& dtype);
// The device's name without a precision (cpu-bf16 -> cpu, cuda-fp32 -> cuda, trn2-sim-fp32 ->
// trn2-sim): what device_for_dtype takes when a recorded device meets a new --dtype.
std::string plain_device_name(const std::string& device);
// What `--device cpu` runs in by default on this machine, and why, for `devices`.
struct CpuDefaultDtype {
  DType dtype;
  std::string reason;
};
CpuDefaultDtype cpu_default_dtype();

// Creates a backend by name; throws Error for an unknown name (listing the known ones) or one that
// cannot run on this machine (saying why).
std::unique_ptr<Backend> create_backend(const std::string& name);

}  // namespace switchyard::backend
