// `switchyard neuron bench matmul`: runs the GEMM tile program (neuron/gemm_kernel.h, the one the
// trn*-sim backend's linear layers run) on the NeuronCore simulator from HBM to HBM on random
// inputs, checks it against a double-precision reference of the rounded inputs, and reports
// simulated time, TFLOPS, percent of peak and engine utilisation.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/neuron_kernel_bench.h"
#include "cli/neuron_report.h"
#include "core/error.h"
#include "core/rng.h"
#include "neuron/gemm_kernel.h"
#include "neuron/neuron_core.h"

namespace switchyard::cli {

namespace {

struct NeuronBenchFlags {
  std::string kernel;
  std::string target = "trn1";
  std::string shape;
  std::string dtype = "bf16";
  std::string out_dtype = "auto";
  std::string trace;
  uint64_t seed = 1;
  bool json = false;
};

struct GemmShape {
  int64_t m, k, n;
};

GemmShape parse_shape(const std::string& text) {
  std::vector<int64_t> dims;
  size_t start = 0;
  while (true) {
    size_t x = text.find('x', start);
    std::string part = text.substr(start, x == std::string::npos ? std::string::npos : x - start);
    require(
        !part.empty() && part.size() <= 9 &&
            std::all_of(part.begin(), part.end(), [](char ch) { return ch >= '0' && ch <= '9'; }),
        "bad --shape '{}': expected MxKxN with positive integers, e.g. 4096x4096x4096", text);
    dims.push_back(std::stoll(part));
    if (x == std::string::npos) break;
    start = x + 1;
  }
  require(dims.size() == 3, "bad --shape '{}': expected three sizes MxKxN, got {}", text,
          dims.size());
  for (int64_t d : dims) require(d >= 1, "bad --shape '{}': sizes must be >= 1", text);
  return GemmShape{dims[0], dims[1], dims[2]};
}

void run_bench_matmul(const NeuronBenchFlags& f) {
  using neuron::DType;
  neuron::CoreConfig config = neuron::config_for_target(f.target);
  GemmShape shape = parse_shape(f.shape);
  DType dtype = parse_dtype(f.dtype);
  require(neuron::is_storable(dtype) && is_float(dtype),
          "--dtype must be a float type the NeuronCore holds (bf16, fp16, fp32, fp8)");
  DType out_dtype = f.out_dtype == "auto" ? (dtype == DType::kF32   ? DType::kF32
                                             : dtype == DType::kF16 ? DType::kF16
                                                                    : DType::kBF16)
                                          : parse_dtype(f.out_dtype);

  neuron::NeuronCore core(config);
  core.record_trace(!f.trace.empty());
  neuron::View a = core.hbm_alloc({shape.m, shape.k}, dtype, "A");
  neuron::View b = core.hbm_alloc({shape.k, shape.n}, dtype, "B");
  neuron::View c = core.hbm_alloc({shape.m, shape.n}, out_dtype, "C");
  {
    Rng rng(f.seed);
    std::vector<float> host(static_cast<size_t>(shape.m * shape.k));
    for (float& x : host) x = rng.normal();
    core.write(a, host);
    host.resize(static_cast<size_t>(shape.k * shape.n));
    for (float& x : host) x = rng.normal();
    core.write(b, host);
  }

  auto t0 = std::chrono::steady_clock::now();
  neuron::GemmOptions options;
  options.compute_dtype = dtype;
  neuron::GemmPlan plan = neuron::gemm(core, c, a, b, options);
  double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // Reference in double from the rounded inputs as stored in HBM: every element when the
  // product is small, otherwise a fixed random sample of output elements.
  std::vector<float> ha = core.read(a);
  std::vector<float> hb = core.read(b);
  std::vector<float> hc = core.read(c);
  const int64_t total = shape.m * shape.n;
  const bool full = static_cast<double>(shape.m) * shape.n * shape.k <= (1 << 28);
  const int64_t checks = full ? total : std::min<int64_t>(total, 16384);
  Rng pick(f.seed + 1);
  double max_abs_error = 0;
  double max_abs_ref = 0;
  for (int64_t i = 0; i < checks; ++i) {
    int64_t idx = full ? i : static_cast<int64_t>(pick.next_u64() % static_cast<uint64_t>(total));
    int64_t m = idx / shape.n;
    int64_t n = idx % shape.n;
    double ref = 0;
    for (int64_t k = 0; k < shape.k; ++k)
      ref += static_cast<double>(ha[m * shape.k + k]) * hb[k * shape.n + n];
    max_abs_error = std::max(max_abs_error, std::fabs(hc[idx] - ref));
    max_abs_ref = std::max(max_abs_ref, std::fabs(ref));
  }
  const double rel_error = max_abs_ref > 0 ? max_abs_error / max_abs_ref : max_abs_error;

  neuron::RunStats stats = core.stats();
  if (!f.trace.empty()) core.write_trace(f.trace);

  fmt::print("neuron bench matmul: {} ({}), C[{}x{}] = A[{}x{}] @ B[{}x{}], {} inputs, {} output\n",
             config.target, config.core_name, shape.m, shape.n, shape.m, shape.k, shape.k, shape.n,
             nki_dtype_name(dtype), nki_dtype_name(out_dtype));
  fmt::print(
      "  plan: {} x {} x {} tiles (M x K x N); {} streams, {} {}; blocks of {} x {} output "
      "tiles; {} k-steps ahead; {} bytes of SBUF per partition\n",
      plan.m_tiles, plan.k_tiles, plan.n_tiles, plan.moving_streams ? "B" : "A^T",
      plan.moving_streams ? "A^T" : "B", plan.other_resident ? "stays resident" : "streams too",
      plan.block_m_tiles, plan.block_n_tiles, plan.prefetch_steps, plan.sbuf_bytes_per_partition);
  fmt::print("  check            max |C - ref| / max |ref| = {:.3e} over {} elements ({})\n",
             rel_error, checks, full ? "all" : "random sample");
  print_neuron_run(config, stats, dtype, wall_s, f.trace);
  if (f.json) {
    nlohmann::json out = neuron_run_json(config, stats, dtype, wall_s);
    out.update({{"kernel", "matmul"},
                {"m", shape.m},
                {"k", shape.k},
                {"n", shape.n},
                {"dtype", nki_dtype_name(dtype)},
                {"out_dtype", nki_dtype_name(out_dtype)},
                {"max_relative_error", rel_error},
                {"checked_elements", checks}});
    std::printf("%s\n", out.dump().c_str());
  }
}

}  // namespace

void add_neuron_command(CLI::App& app) {
  CLI::App* neuron = app.add_subcommand("neuron", "NeuronCore simulator (trn1 / trn2)");
  neuron->require_subcommand(1);
  CLI::App* bench = neuron->add_subcommand("bench", "Run a kernel on the simulated NeuronCore");
  auto flags = std::make_shared<NeuronBenchFlags>();
  bench->add_option("kernel", flags->kernel, "Kernel to run: matmul, or a model kernel:\n" + model_kernel_usage())
      ->required();
  bench->add_option("--target", flags->target, "trn1 (NeuronCore-v2) or trn2 (NeuronCore-v3)");
  bench->add_option("--shape", flags->shape,
                    "matmul: MxKxN, e.g. 4096x4096x4096; model kernels: see the kernel list (default: "
                    "gpt2-124m's shape at batch 4, sequence 64)");
  bench->add_option("--dtype", flags->dtype, "Input dtype: bf16, fp16, fp32, fp8 (e4m3), fp8_e5m2");
  bench->add_option("--out-dtype", flags->out_dtype,
                    "Output dtype (default: bf16 for 8/16-bit "
                    "inputs, fp32 for fp32)");
  bench->add_option("--trace", flags->trace, "Write a Chrome trace-event JSON (Perfetto) here");
  bench->add_option("--seed", flags->seed, "Random seed of the inputs");
  bench->add_flag("--json", flags->json, "Print one JSON object on the last line");
  bench->callback([flags] {
    if (flags->kernel == "matmul") {
      require(!flags->shape.empty(), "neuron bench matmul needs --shape MxKxN, e.g. 4096x4096x4096");
      run_bench_matmul(*flags);
      return;
    }
    require(is_model_kernel(flags->kernel), "unknown neuron bench kernel '{}'; known: matmul and\n{}",
            flags->kernel, model_kernel_usage());
    ModelKernelBench bench;
    bench.kernel = flags->kernel;
    bench.target = flags->target;
    bench.shape = flags->shape;
    bench.dtype = flags->dtype;
    bench.trace = flags->trace;
    bench.seed = flags->seed;
    bench.json = flags->json;
    run_model_kernel_bench(bench);
  });
}

}  // namespace switchyard::cli
