#include "backend/neuron/neuron_sim_backend.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include <fmt/format.h>

#include "backend/neuron/attention_decode_kernel.h"
#include "backend/neuron/attention_kernel.h"
#include "backend/neuron/cross_entropy_kernel.h"
#include "backend/neuron/embedding_kernel.h"
#include "backend/neuron/fill_kernel.h"
#include "backend/neuron/gelu_kernel.h"
#include "backend/neuron/kernel_launch.h"
#include "backend/neuron/layernorm_kernel.h"
#include "backend/neuron/linear_kernel.h"
#include "backend/neuron/optimizer_kernel.h"
#include "backend/neuron/residual_kernel.h"
#include "core/error.h"
#include "neuron/neuron_core.h"

namespace switchyard::backend::neuron {

// The tile programs share their names with the Backend methods that launch them.
namespace kernels = ::switchyard::backend::neuron;

namespace {

constexpr size_t kAlignment = 64;

int64_t i64(size_t n) { return static_cast<int64_t>(n); }

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
      activations_(compute_),
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
  const size_t floats = bytes / sizeof(float);
  if (floats > 0) {
    Launch launch(*core_, activations_);
    kernels::fill_zero(*core_, launch.fp32(static_cast<float*>(ptr), {i64(floats)}, "dst"));
    launch.finish();
  }
  // A tail of under 4 bytes (never produced by the model's fp32 buffers) is cleared directly.
  std::memset(static_cast<char*>(ptr) + floats * sizeof(float), 0, bytes % sizeof(float));
}

std::optional<SimulationReport> NeuronSimBackend::simulation_report() const {
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
  return report;
}

int64_t NeuronSimBackend::rows_to_allocation_end(const float* row0, int cols) const {
  const char* p = reinterpret_cast<const char*>(row0);
  auto it = allocations_.upper_bound(p);
  require(it != allocations_.begin(), "{}: a kernel argument is not device memory", name());
  --it;
  require(p < it->first + it->second, "{}: a kernel argument is not device memory", name());
  const int64_t floats = static_cast<int64_t>((it->first + it->second - p) / sizeof(float));
  return floats / cols;
}

void NeuronSimBackend::start_trace() {
  core_->clear_trace();
  core_->record_trace(true);
}

void NeuronSimBackend::finish_trace(const std::string& path) {
  core_->record_trace(false);
  core_->write_trace(path);
}

// ---- kernels: each presents its arguments to one launch and runs the tile program ----

void NeuronSimBackend::encoder_forward(float* out, const int32_t* tokens, const float* wte,
                                       const float* wpe, int B, int T, int C) {
  Launch l(*core_, activations_);
  // Only the first T rows of wpe are read; the kernel sees exactly those.
  kernels::encoder_forward(*core_, l.activation_out(out, {i64(B) * T, C}, "out", false),
                           l.int32(tokens, {i64(B) * T, 1}, "tokens"),
                           l.fp32(wte, {rows_to_allocation_end(wte, C), C}, "wte"),
                           l.fp32(wpe, {T, C}, "wpe"), B, T, compute_);
  l.finish();
}

void NeuronSimBackend::encoder_backward(float* dwte, float* dwpe, const float* dout,
                                        const int32_t* tokens, int B, int T, int C) {
  Launch l(*core_, activations_);
  kernels::encoder_backward(*core_, l.fp32(dwte, {rows_to_allocation_end(dwte, C), C}, "dwte"),
                            l.fp32(dwpe, {T, C}, "dwpe"),
                            l.activation_in(dout, {i64(B) * T, C}, "dout"),
                            l.int32(tokens, {i64(B) * T, 1}, "tokens"), B, T, compute_);
  l.finish();
}

void NeuronSimBackend::layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                         const float* weight, const float* bias, int N, int C) {
  Launch l(*core_, activations_);
  kernels::layernorm_forward(*core_, l.activation_out(out, {N, C}, "out", false),
                             l.fp32(mean, {N}, "mean"), l.fp32(rstd, {N}, "rstd"),
                             l.activation_in(inp, {N, C}, "inp"), l.fp32(weight, {C}, "weight"),
                             l.fp32(bias, {C}, "bias"), compute_);
  l.finish();
}

void NeuronSimBackend::layernorm_backward(float* dinp, float* dweight, float* dbias,
                                          const float* dout, const float* inp, const float* weight,
                                          const float* mean, const float* rstd, int N, int C) {
  Launch l(*core_, activations_);
  kernels::layernorm_backward(*core_, l.activation_out(dinp, {N, C}, "dinp", true),
                              l.fp32(dweight, {C}, "dweight"), l.fp32(dbias, {C}, "dbias"),
                              l.activation_in(dout, {N, C}, "dout"),
                              l.activation_in(inp, {N, C}, "inp"), l.fp32(weight, {C}, "weight"),
                              l.fp32(mean, {N}, "mean"), l.fp32(rstd, {N}, "rstd"), compute_);
  l.finish();
}

void NeuronSimBackend::matmul_forward(float* out, const float* inp, const float* weight,
                                      const float* bias, int N, int C, int OC) {
  Launch l(*core_, activations_);
  kernels::linear_forward(*core_, l.activation_out(out, {N, OC}, "out", false),
                          l.activation_in(inp, {N, C}, "inp"), l.fp32(weight, {OC, C}, "weight"),
                          bias ? l.fp32(bias, {OC}, "bias") : View(), compute_);
  l.finish();
}

void NeuronSimBackend::matmul_backward(float* dinp, float* dweight, float* dbias,
                                       const float* dout, const float* inp, const float* weight,
                                       int N, int C, int OC) {
  Launch l(*core_, activations_);
  kernels::linear_backward(*core_, dinp ? l.activation_out(dinp, {N, C}, "dinp", true) : View(),
                           l.fp32(dweight, {OC, C}, "dweight"),
                           dbias ? l.fp32(dbias, {OC}, "dbias") : View(),
                           l.activation_in(dout, {N, OC}, "dout"),
                           l.activation_in(inp, {N, C}, "inp"), l.fp32(weight, {OC, C}, "weight"),
                           compute_);
  l.finish();
}

// The att buffer (B*NH*T*T floats) holds the flash kernels' per-row log-sum-exp (B*NH*T floats).
void NeuronSimBackend::attention_forward(float* out, float* att, const float* qkv, int B, int T,
                                         int C, int NH) {
  Launch l(*core_, activations_);
  kernels::attention_forward(*core_, l.activation_out(out, {i64(B) * T, C}, "out", false),
                             l.fp32(att, {i64(B) * NH * T}, "lse"),
                             l.activation_in(qkv, {i64(B) * T, 3 * C}, "qkv"), B, T, C, NH,
                             compute_);
  l.finish();
}

void NeuronSimBackend::attention_backward(float* dqkv, float* scratch, const float* dout,
                                          const float* /*out: recomputed on the core*/,
                                          const float* qkv, const float* att, int B, int T, int C,
                                          int NH) {
  Launch l(*core_, activations_);
  kernels::attention_backward(*core_, l.activation_out(dqkv, {i64(B) * T, 3 * C}, "dqkv", true),
                              l.activation_in(dout, {i64(B) * T, C}, "dout"),
                              l.activation_in(qkv, {i64(B) * T, 3 * C}, "qkv"),
                              l.fp32(att, {i64(B) * NH * T}, "lse"), B, T, C, NH, compute_);
  l.finish();
}

void NeuronSimBackend::gelu_forward(float* out, const float* inp, size_t N) {
  Launch l(*core_, activations_);
  kernels::gelu_forward(*core_, l.activation_out(out, {i64(N)}, "out", false),
                        l.activation_in(inp, {i64(N)}, "inp"), compute_);
  l.finish();
}

void NeuronSimBackend::gelu_backward(float* dinp, const float* inp, const float* dout, size_t N) {
  Launch l(*core_, activations_);
  kernels::gelu_backward(*core_, l.activation_out(dinp, {i64(N)}, "dinp", true),
                         l.activation_in(inp, {i64(N)}, "inp"),
                         l.activation_in(dout, {i64(N)}, "dout"), compute_);
  l.finish();
}

void NeuronSimBackend::residual_forward(float* out, const float* a, const float* b, size_t N) {
  Launch l(*core_, activations_);
  kernels::residual_forward(*core_, l.activation_out(out, {i64(N)}, "out", false),
                            l.activation_in(a, {i64(N)}, "a"), l.activation_in(b, {i64(N)}, "b"),
                            compute_);
  l.finish();
}

void NeuronSimBackend::accumulate(float* dst, const float* src, size_t N) {
  Launch l(*core_, activations_);
  kernels::accumulate(*core_, l.activation_out(dst, {i64(N)}, "dst", true),
                      l.activation_in(src, {i64(N)}, "src"), compute_);
  l.finish();
}

void NeuronSimBackend::cross_entropy_forward(float* losses, const float* logits,
                                             const int32_t* targets, int N, int V) {
  Launch l(*core_, activations_);
  kernels::cross_entropy_forward(*core_, l.fp32(losses, {N}, "losses"),
                                 l.activation_in(logits, {N, V}, "logits"),
                                 l.int32(targets, {N, 1}, "targets"), N, V, compute_);
  l.finish();
}

void NeuronSimBackend::cross_entropy_backward(float* dlogits, const float* logits,
                                              const int32_t* targets, float dloss, int N, int V) {
  Launch l(*core_, activations_);
  const View in = l.activation_in(logits, {N, V}, "logits");
  kernels::cross_entropy_backward(*core_, l.activation_out(dlogits, {N, V}, "dlogits", false), in,
                                  l.int32(targets, {N, 1}, "targets"), dloss, N, V, compute_);
  l.finish();
}

double NeuronSimBackend::sum_of_squares(const float* x, size_t N) {
  Launch l(*core_, activations_);
  const double sum = kernels::sum_of_squares(*core_, l.fp32(x, {i64(N)}, "x"));
  l.finish();
  return sum;
}

void NeuronSimBackend::adamw_update(float* params, const float* grads, float* m, float* v, size_t N,
                                    const AdamWStep& step) {
  Launch l(*core_, activations_);
  kernels::adamw_update(*core_, l.fp32(params, {i64(N)}, "params"),
                        l.fp32(grads, {i64(N)}, "grads"), l.fp32(m, {i64(N)}, "m"),
                        l.fp32(v, {i64(N)}, "v"), i64(N), step);
  l.finish();
}

void NeuronSimBackend::attention_decode(float* out, const float* qkv, float* k_cache,
                                        float* v_cache, int B, int pos, int max_T, int C, int NH) {
  Launch l(*core_, activations_);
  const int64_t cache_rows = i64(B) * NH * max_T;
  kernels::attention_decode(*core_, l.activation_out(out, {B, C}, "out", false),
                            l.activation_in(qkv, {B, 3 * C}, "qkv"),
                            l.activation_out(k_cache, {cache_rows, C / NH}, "k_cache", true),
                            l.activation_out(v_cache, {cache_rows, C / NH}, "v_cache", true), B,
                            pos, max_T, C, NH, compute_);
  l.finish();
}

}  // namespace switchyard::backend::neuron
