#include "cli/neuron_kernel_bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "backend/backend.h"
#include "backend/neuron/attention_kernel.h"
#include "backend/neuron/cross_entropy_kernel.h"
#include "backend/neuron/embedding_kernel.h"
#include "backend/neuron/gelu_kernel.h"
#include "backend/neuron/layernorm_kernel.h"
#include "backend/neuron/linear_kernel.h"
#include "backend/neuron/optimizer_kernel.h"
#include "backend/neuron/residual_kernel.h"
#include "cli/neuron_report.h"
#include "core/error.h"
#include "core/rng.h"

namespace switchyard::cli {

namespace {

namespace k = ::switchyard::backend::neuron;
using neuron::DType;
using neuron::NeuronCore;
using neuron::View;

// What a kernel's setup sees: the core, the parsed shape and the dtypes.
struct Bench {
  NeuronCore& core;
  std::vector<int64_t> dims;
  DType compute;      // SBUF tiles and matmul operands
  DType activations;  // activations in HBM
  Rng rng;
  // Host time spent making inputs, which the reported simulation wall time leaves out.
  double setup_seconds = 0;

  // Adds the lifetime of the scope to setup_seconds.
  struct SetupTimer {
    explicit SetupTimer(double& total) : total_(total), start_(std::chrono::steady_clock::now()) {}
    ~SetupTimer() {
      total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    }
    double& total_;
    std::chrono::steady_clock::time_point start_;
  };

  View random(std::vector<int64_t> shape, DType dtype, const char* name, float scale = 1.0f,
              float offset = 0.0f) {
    SetupTimer timer(setup_seconds);
    View v = core.hbm_alloc(shape, dtype, name);
    std::vector<float> values(static_cast<size_t>(v.elements()));
    for (float& x : values) x = offset + scale * rng.normal();
    core.write(v, values);
    return v;
  }
  View zeros(std::vector<int64_t> shape, DType dtype, const char* name) {
    SetupTimer timer(setup_seconds);
    View v = core.hbm_alloc(shape, dtype, name);
    core.write(v, std::vector<float>(static_cast<size_t>(v.elements()), 0.0f));
    return v;
  }
  View tokens(int64_t n, int64_t vocab, const char* name) {
    SetupTimer timer(setup_seconds);
    View v = core.hbm_alloc({n, 1}, DType::kI32, name);
    std::vector<float> values(static_cast<size_t>(n));
    for (float& x : values) x = static_cast<float>(rng.next_u64() % static_cast<uint64_t>(vocab));
    core.write(v, values);
    return v;
  }
  // Position t of the t-th token of each of B sequences of T tokens (a training window).
  View positions(int64_t B, int64_t T, const char* name) {
    SetupTimer timer(setup_seconds);
    View v = core.hbm_alloc({B * T, 1}, DType::kI32, name);
    std::vector<float> values(static_cast<size_t>(B * T));
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(static_cast<int64_t>(i) % T);
    core.write(v, values);
    return v;
  }
  int dim(int i) const { return static_cast<int>(dims[i]); }
};

struct KernelSpec {
  const char* name;
  const char* shape;  // e.g. "NxC"
  const char* example;
  std::function<void(Bench&)> run;
};

// Per-row log-sum-exp of a causal attention forward pass, computed on a scratch core so the
// backward benchmark's core runs only the backward kernel.
std::vector<float> attention_statistics(const neuron::CoreConfig& config, const std::vector<float>& qkv,
                                        int B, int T, int C, int NH, DType compute, DType activations) {
  NeuronCore scratch(config);
  View q = scratch.hbm_alloc({int64_t{B} * T, 3 * C}, activations, "qkv");
  scratch.write(q, qkv);
  View out = scratch.hbm_alloc({int64_t{B} * T, C}, activations, "out");
  View lse = scratch.hbm_alloc({int64_t{B} * NH * T}, DType::kF32, "lse");
  k::attention_forward(scratch, out, lse, q, B, T, C, NH, compute);
  return scratch.read(lse);
}

const std::vector<KernelSpec>& kernel_specs() {
  static const std::vector<KernelSpec> specs = {
      {"linear", "NxCxOC", "256x768x3072",
       [](Bench& b) {
         k::linear_forward(b.core, b.zeros({b.dims[0], b.dims[2]}, b.activations, "out"),
                           b.random({b.dims[0], b.dims[1]}, b.activations, "inp"),
                           b.random({b.dims[2], b.dims[1]}, DType::kF32, "weight", 0.02f),
                           b.random({b.dims[2]}, DType::kF32, "bias", 0.02f), b.compute);
       }},
      {"linear_backward", "NxCxOC", "256x768x3072",
       [](Bench& b) {
         k::linear_backward(b.core, b.zeros({b.dims[0], b.dims[1]}, b.activations, "dinp"),
                            b.zeros({b.dims[2], b.dims[1]}, DType::kF32, "dweight"),
                            b.zeros({b.dims[2]}, DType::kF32, "dbias"),
                            b.random({b.dims[0], b.dims[2]}, b.activations, "dout", 0.01f),
                            b.random({b.dims[0], b.dims[1]}, b.activations, "inp"),
                            b.random({b.dims[2], b.dims[1]}, DType::kF32, "weight", 0.02f), b.compute);
       }},
      {"layernorm", "NxC", "256x768",
       [](Bench& b) {
         k::layernorm_forward(b.core, b.zeros({b.dims[0], b.dims[1]}, b.activations, "out"),
                              b.zeros({b.dims[0]}, DType::kF32, "mean"), b.zeros({b.dims[0]}, DType::kF32, "rstd"),
                              b.random({b.dims[0], b.dims[1]}, b.activations, "inp"),
                              b.random({b.dims[1]}, DType::kF32, "weight", 0.1f, 1.0f),
                              b.random({b.dims[1]}, DType::kF32, "bias", 0.1f), b.compute);
       }},
      {"layernorm_backward", "NxC", "256x768",
       [](Bench& b) {
         k::layernorm_backward(b.core, b.zeros({b.dims[0], b.dims[1]}, b.activations, "dinp"),
                               b.zeros({b.dims[1]}, DType::kF32, "dweight"),
                               b.zeros({b.dims[1]}, DType::kF32, "dbias"),
                               b.random({b.dims[0], b.dims[1]}, b.activations, "dout", 0.01f),
                               b.random({b.dims[0], b.dims[1]}, b.activations, "inp"),
                               b.random({b.dims[1]}, DType::kF32, "weight", 0.1f, 1.0f),
                               b.random({b.dims[0]}, DType::kF32, "mean", 0.1f),
                               b.random({b.dims[0]}, DType::kF32, "rstd", 0.1f, 1.0f), b.compute);
       }},
      {"gelu", "N", "786432",
       [](Bench& b) {
         k::gelu_forward(b.core, b.zeros({b.dims[0]}, b.activations, "out"),
                         b.random({b.dims[0]}, b.activations, "inp"), b.compute);
       }},
      {"gelu_backward", "N", "786432",
       [](Bench& b) {
         k::gelu_backward(b.core, b.zeros({b.dims[0]}, b.activations, "dinp"),
                          b.random({b.dims[0]}, b.activations, "inp"),
                          b.random({b.dims[0]}, b.activations, "dout", 0.01f), b.compute);
       }},
      {"residual", "N", "196608",
       [](Bench& b) {
         k::residual_forward(b.core, b.zeros({b.dims[0]}, b.activations, "out"),
                             b.random({b.dims[0]}, b.activations, "a"),
                             b.random({b.dims[0]}, b.activations, "b"), b.compute);
       }},
      {"attention", "BxTxCxNH", "4x64x768x12",
       [](Bench& b) {
         const int B = b.dim(0), T = b.dim(1), C = b.dim(2), NH = b.dim(3);
         k::attention_forward(b.core, b.zeros({int64_t{B} * T, C}, b.activations, "out"),
                              b.zeros({int64_t{B} * NH * T}, DType::kF32, "lse"),
                              b.random({int64_t{B} * T, 3 * C}, b.activations, "qkv"), B, T, C, NH,
                              b.compute);
       }},
      {"attention_backward", "BxTxCxNH", "4x64x768x12",
       [](Bench& b) {
         const int B = b.dim(0), T = b.dim(1), C = b.dim(2), NH = b.dim(3);
         View qkv = b.random({int64_t{B} * T, 3 * C}, b.activations, "qkv");
         View lse = b.core.hbm_alloc({int64_t{B} * NH * T}, DType::kF32, "lse");
         {
           Bench::SetupTimer timer(b.setup_seconds);
           b.core.write(lse, attention_statistics(b.core.config(), b.core.read(qkv), B, T, C, NH,
                                                  b.compute, b.activations));
         }
         k::attention_backward(b.core, b.zeros({int64_t{B} * T, 3 * C}, b.activations, "dqkv"),
                               b.random({int64_t{B} * T, C}, b.activations, "dout", 0.01f), qkv, lse,
                               B, T, C, NH, b.compute);
       }},
      {"cross_entropy", "NxV", "256x50257",
       [](Bench& b) {
         const int N = b.dim(0), V = b.dim(1);
         k::cross_entropy_forward(b.core, b.zeros({N}, DType::kF32, "losses"),
                                  b.random({N, V}, b.activations, "logits"), b.tokens(N, V, "targets"),
                                  N, V, b.compute);
       }},
      {"cross_entropy_backward", "NxV", "256x50257",
       [](Bench& b) {
         const int N = b.dim(0), V = b.dim(1);
         View logits = b.random({N, V}, b.activations, "logits");
         k::cross_entropy_backward(b.core, logits, logits, b.tokens(N, V, "targets"), 1.0f / N, N, V,
                                   b.compute);
       }},
      {"embedding", "BxTxCxV", "4x64x768x50257",
       [](Bench& b) {
         const int B = b.dim(0), T = b.dim(1);
         k::embedding_forward(b.core, b.zeros({int64_t{B} * T, b.dims[2]}, b.activations, "out"),
                              b.tokens(int64_t{B} * T, b.dims[3], "tokens"),
                              b.random({b.dims[3], b.dims[2]}, DType::kF32, "wte", 0.02f),
                              b.positions(B, T, "positions"),
                              b.random({T, b.dims[2]}, DType::kF32, "wpe", 0.01f), b.compute);
       }},
      {"embedding_backward", "BxTxCxV", "4x64x768x50257",
       [](Bench& b) {
         const int B = b.dim(0), T = b.dim(1);
         k::embedding_backward(b.core, b.zeros({b.dims[3], b.dims[2]}, DType::kF32, "dwte"),
                               b.zeros({T, b.dims[2]}, DType::kF32, "dwpe"),
                               b.random({int64_t{B} * T, b.dims[2]}, b.activations, "dout", 0.01f),
                               b.tokens(int64_t{B} * T, b.dims[3], "tokens"),
                               b.positions(B, T, "positions"), b.compute);
       }},
      {"adamw", "N", "124439808",
       [](Bench& b) {
         backend::AdamWStep step;
         step.learning_rate = 6e-4f;
         step.weight_decay = 0.1f;
         step.step = 10;
         const int64_t n = b.dims[0];
         k::adamw_update(b.core, b.random({n}, DType::kF32, "params", 0.02f),
                         b.random({n}, DType::kF32, "grads", 0.001f), b.random({n}, DType::kF32, "m", 1e-4f),
                         b.random({n}, DType::kF32, "v", 1e-8f, 2e-8f), n, step);
       }},
  };
  return specs;
}

const KernelSpec* find_spec(const std::string& kernel) {
  for (const KernelSpec& spec : kernel_specs()) {
    if (kernel == spec.name) return &spec;
  }
  return nullptr;
}

std::vector<int64_t> parse_dims(const std::string& text, const KernelSpec& spec) {
  const size_t want = static_cast<size_t>(std::count(spec.shape, spec.shape + std::char_traits<char>::length(spec.shape), 'x')) + 1;
  std::vector<int64_t> dims;
  size_t start = 0;
  while (true) {
    const size_t x = text.find('x', start);
    const std::string part = text.substr(start, x == std::string::npos ? std::string::npos : x - start);
    require(!part.empty() && part.size() <= 10 &&
                std::all_of(part.begin(), part.end(), [](char ch) { return ch >= '0' && ch <= '9'; }),
            "bad --shape '{}' for {}: expected {} with positive integers, e.g. {}", text, spec.name, spec.shape,
            spec.example);
    dims.push_back(std::stoll(part));
    if (x == std::string::npos) break;
    start = x + 1;
  }
  require(dims.size() == want, "bad --shape '{}' for {}: expected {} ({} sizes), e.g. {}", text, spec.name,
          spec.shape, want, spec.example);
  for (int64_t d : dims) require(d >= 1 && d <= (int64_t{1} << 31) - 1, "bad --shape '{}': sizes must be in 1..2^31-1", text);
  return dims;
}

}  // namespace

std::string model_kernel_usage() {
  std::string text;
  for (const KernelSpec& spec : kernel_specs()) text += fmt::format("  {:<24} --shape {} (e.g. {})\n", spec.name, spec.shape, spec.example);
  return text;
}

bool is_model_kernel(const std::string& kernel) { return find_spec(kernel) != nullptr; }

void run_model_kernel_bench(const ModelKernelBench& f) {
  const KernelSpec* spec = find_spec(f.kernel);
  require(spec != nullptr, "unknown neuron bench kernel '{}'; known: matmul and\n{}", f.kernel, model_kernel_usage());
  const std::string shape = f.shape.empty() ? spec->example : f.shape;
  require(f.dtype == "bf16" || f.dtype == "fp32", "--dtype for {} must be bf16 or fp32, got '{}'", f.kernel, f.dtype);
  const DType dtype = f.dtype == "bf16" ? DType::kBF16 : DType::kF32;
  const neuron::CoreConfig config = neuron::config_for_target(f.target);
  NeuronCore core(config);
  Bench bench{core, parse_dims(shape, *spec), dtype, dtype, Rng(f.seed)};

  // Inputs are written without simulated time; only the kernel's own instructions are timed.
  core.record_trace(!f.trace.empty());
  const auto t0 = std::chrono::steady_clock::now();
  spec->run(bench);
  const double wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() - bench.setup_seconds;
  const neuron::RunStats stats = core.stats();
  if (!f.trace.empty()) core.write_trace(f.trace);

  fmt::print("neuron bench {}: {} ({}), shape {} = {}, {} activations and compute\n", f.kernel, config.target,
             config.core_name, spec->shape, shape, f.dtype);
  print_neuron_run(config, stats, dtype, wall_s, f.trace);
  if (f.json) {
    nlohmann::json out = neuron_run_json(config, stats, dtype, wall_s);
    out.update({{"kernel", f.kernel}, {"shape", shape}, {"dtype", f.dtype}});
    std::printf("%s\n", out.dump().c_str());
  }
}

}  // namespace switchyard::cli
