#include "cli/plan_serve_command.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/plan_inputs.h"
#include "core/error.h"
#include "plan/serving_planner.h"
#include "plan/serving_report.h"
#include "plan/units.h"

namespace switchyard::cli {

namespace {

struct ServeFlags {
  std::string model, mix, precision, kv_cache = "bf16", svg;
  int64_t prompt_tokens = 0, output_tokens = 0;
  double load = 0, tokens_per_s = 0, ttft_ms = 0, tpot_ms = 0;
  std::vector<std::string> chips, step_times;
  int64_t max_chips = 1024, max_batch = 1024;
  double step_overhead_ms = 0.5, assumed_efficiency = 0.35;
  bool json = false, csv = false;
  std::string catalog_dir, chips_catalog, instances_catalog;
};

plan::RequestMix request_mix(const ServeFlags& f, CLI::App* cmd) {
  const bool lengths = cmd->count("--prompt-tokens") + cmd->count("--output-tokens") > 0;
  require(lengths != !f.mix.empty(),
          "plan serve needs either --prompt-tokens and --output-tokens or --mix P:O:SHARE,...");
  if (!f.mix.empty()) return plan::RequestMix::parse(f.mix);
  require(cmd->count("--prompt-tokens") && cmd->count("--output-tokens"),
          "plan serve needs both --prompt-tokens and --output-tokens");
  require(f.prompt_tokens > 0, "--prompt-tokens must be > 0, got {}", f.prompt_tokens);
  require(f.output_tokens > 0, "--output-tokens must be > 0, got {}", f.output_tokens);
  return plan::RequestMix({{f.prompt_tokens, f.output_tokens, 1}});
}

// Requests/s from --load, or from --tokens-per-s (output tokens/s) and the mix.
double requests_per_s(const ServeFlags& f, CLI::App* cmd, const plan::RequestMix& mix) {
  const bool load = cmd->count("--load") > 0, tokens = cmd->count("--tokens-per-s") > 0;
  require(load != tokens, "plan serve needs exactly one of --load (requests/s) and --tokens-per-s");
  const double value = load ? f.load : f.tokens_per_s;
  require(std::isfinite(value) && value > 0, "{} must be a positive number, got {}",
          load ? "--load" : "--tokens-per-s", value);
  return load ? value : value / mix.mean_output();
}

plan::ServeRequest make_request(const ServeFlags& f, CLI::App* cmd) {
  require(!f.model.empty(), "plan serve needs --model PRESET|DIR|SHAPE.json");
  require(cmd->count("--ttft-ms") && cmd->count("--tpot-ms"),
          "plan serve needs both latency targets, --ttft-ms and --tpot-ms");
  require(!(f.json && f.csv), "--json and --csv are exclusive");
  plan::ServeRequest r;
  int64_t context = 0;
  r.shape = open_plan_model(f.model, &context);
  r.shape.name = f.model;
  if (r.shape.context == 0) r.shape.context = context;
  r.mix = request_mix(f, cmd);
  r.requests_per_s = requests_per_s(f, cmd, r.mix);
  r.ttft_s = f.ttft_ms / 1000.0;
  r.tpot_s = f.tpot_ms / 1000.0;
  const std::string weights = !f.precision.empty()  ? f.precision
                              : r.shape.experts > 0 ? "mxfp4"
                                                    : "bf16";
  r.precision = plan::serving_precision(weights, f.kv_cache, r.shape);
  r.chips = f.chips;
  r.max_chips = f.max_chips;
  r.max_batch = f.max_batch;
  r.step_overhead_s = f.step_overhead_ms / 1000.0;
  r.assumed_efficiency = f.assumed_efficiency;
  for (const std::string& path : f.step_times) r.step_times.push_back(plan::load_step_times(path));
  return r;
}

nlohmann::json request_json(const ServeFlags& f, const plan::ServeRequest& r) {
  nlohmann::json mix = nlohmann::json::array();
  for (const plan::RequestClass& c : r.mix.classes()) {
    mix.push_back({{"prompt_tokens", c.prompt_tokens},
                   {"output_tokens", c.output_tokens},
                   {"share", c.share}});
  }
  return {{"model", f.model},
          {"precision", r.precision.name},
          {"kv_cache", r.precision.kv_name},
          {"mix", mix},
          {"requests_per_s", r.requests_per_s},
          {"output_tokens_per_s", r.requests_per_s * r.mix.mean_output()},
          {"ttft_ms", f.ttft_ms},
          {"tpot_ms", f.tpot_ms},
          {"max_chips", r.max_chips},
          {"max_batch", r.max_batch},
          {"step_overhead_ms", f.step_overhead_ms},
          {"assumed_efficiency", r.assumed_efficiency}};
}

std::string heading(const ServeFlags& f, const plan::ServeRequest& r) {
  const plan::ServedModel model(r.shape, r.precision);
  return fmt::format(
      "serving {} ({} weights, {} cache; {:.3g} parameters, {:.1f} GiB of weights): {:.4g} "
      "requests/s of {} = {} output tokens/s; targets: mean TTFT {:g} ms, mean TPOT {:g} ms",
      f.model, r.precision.name, r.precision.kv_name, static_cast<double>(r.shape.num_parameters()),
      model.resident_weight_bytes() / (1024.0 * 1024.0 * 1024.0), r.requests_per_s,
      r.mix.describe(), plan::group_digits(r.requests_per_s * r.mix.mean_output()), f.ttft_ms,
      f.tpot_ms);
}

void run(const ServeFlags& f, CLI::App* cmd) {
  const plan::Catalog catalog =
      open_plan_catalog(f.catalog_dir, f.chips_catalog, f.instances_catalog);
  const plan::ServeRequest r = make_request(f, cmd);
  const std::vector<plan::ServeRow> rows = plan::make_serving_plan(catalog, r);
  if (!f.svg.empty()) {
    const std::string title =
        fmt::format("{}: {} at {:.4g} requests/s — $ per million output tokens against TPOT",
                    f.model, r.mix.describe(), r.requests_per_s);
    const std::string svg = plan::serving_to_svg(rows, r.tpot_s, title);
    std::ofstream out(f.svg);
    require(static_cast<bool>(out), "cannot write {}", f.svg);
    out << svg;
    require(static_cast<bool>(out), "cannot write {}", f.svg);
  }
  if (f.json) {
    std::printf("%s\n", plan::serving_to_json(rows, request_json(f, r)).dump(2).c_str());
  } else if (f.csv) {
    std::printf("%s", plan::serving_to_csv(rows).c_str());
  } else {
    std::printf("%s", plan::format_serving_table(rows, heading(f, r)).c_str());
  }
}

void add_flags(CLI::App* cmd, ServeFlags& f) {
  cmd->add_option("--model", f.model,
                  "preset (gpt-oss-20b, gpt-oss-120b, gpt2-124m, ...), checkpoint directory or "
                  "decoder-shape JSON");
  cmd->add_option("--prompt-tokens", f.prompt_tokens, "prompt tokens per request");
  cmd->add_option("--output-tokens", f.output_tokens, "output tokens per request");
  cmd->add_option(
      "--mix", f.mix,
      "a request mix instead: PROMPT:OUTPUT:SHARE[,...], e.g. 1024:256:0.7,4096:512:0.3");
  cmd->add_option("--load", f.load, "requests per second");
  cmd->add_option("--tokens-per-s", f.tokens_per_s, "output tokens per second (instead of --load)");
  cmd->add_option("--ttft-ms", f.ttft_ms, "mean time to first token target, ms");
  cmd->add_option("--tpot-ms", f.tpot_ms, "mean time per output token target, ms");
  cmd->add_option(
      "--precision", f.precision,
      "weights: mxfp4 (default for mixtures of experts), bf16 (default otherwise) or fp8");
  cmd->add_option("--kv-cache", f.kv_cache, "KV cache: bf16 or fp8")->capture_default_str();
  cmd->add_option("--chips", f.chips, "chips to consider (default: all in the catalog)")
      ->delimiter(',');
  cmd->add_option("--max-chips", f.max_chips, "most chips per chip type")->capture_default_str();
  cmd->add_option("--max-batch", f.max_batch, "largest decode batch per replica")
      ->capture_default_str();
  cmd->add_option(
      "--step-times", f.step_times,
      "measured or simulated decode step times (JSON, see docs/planner.md); repeatable");
  cmd->add_option("--assumed-efficiency", f.assumed_efficiency,
                  "share of the roofline for chip families without published serving runs")
      ->capture_default_str();
  cmd->add_option("--step-overhead-ms", f.step_overhead_ms, "fixed time per decode step or prefill")
      ->capture_default_str();
  cmd->add_flag(
      "--json", f.json,
      "print one JSON object: the summary, the request, the cheapest plan, a row per chip");
  cmd->add_flag("--csv", f.csv, "print CSV, a line per chip");
  cmd->add_option("--svg", f.svg,
                  "write $ per million output tokens against TPOT to this SVG file");
  cmd->add_option("--catalog-dir", f.catalog_dir, "directory with chips.json and instances.json");
  cmd->add_option("--chips-catalog", f.chips_catalog,
                  "chip catalog JSON (overrides --catalog-dir)");
  cmd->add_option("--instances-catalog", f.instances_catalog,
                  "instance catalog JSON (overrides --catalog-dir)");
}

}  // namespace

CLI::App* add_plan_serve_command(CLI::App& plan) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* cmd = plan.add_subcommand(
      "serve", "instances, $ per million output tokens and batch to serve a load on each chip");
  add_flags(cmd, *flags);
  cmd->callback([flags, cmd] { run(*flags, cmd); });
  return cmd;
}

}  // namespace switchyard::cli
