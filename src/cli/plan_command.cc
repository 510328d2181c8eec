// switchyard plan: what training N tokens of a model costs on each chip the catalogs know;
// switchyard plan serve (plan_serve_command.cc): what serving a request load costs; and
// switchyard plan validate: the planner's predictions beside published measured throughputs.
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/plan_inputs.h"
#include "cli/plan_serve_command.h"
#include "core/error.h"
#include "plan/catalog.h"
#include "plan/planner.h"
#include "plan/report.h"
#include "plan/units.h"
#include "plan/serving_validation.h"
#include "plan/validation.h"

namespace switchyard::cli {

namespace {

struct PlanFlags {
  std::string model;
  double tokens = 0;
  std::vector<std::string> chips;
  int64_t max_chips = 1024;
  double deadline = 0;
  bool json = false, csv = false;
  std::string svg;
  int64_t seq = 0;
  double global_batch = 524288;
  std::vector<std::string> measured;
  std::string catalog_dir, chips_catalog, instances_catalog, published;
  std::string precision = "bf16";
  double assumed_mfu = 0.35;
};

plan::Catalog open_catalog(const PlanFlags& f) {
  return open_plan_catalog(f.catalog_dir, f.chips_catalog, f.instances_catalog);
}

void run_plan(const PlanFlags& f) {
  require(!f.model.empty(), "plan needs --model PRESET|DIR|SHAPE.json");
  require(f.tokens > 0, "plan needs --tokens N with N > 0, got {}", f.tokens);
  require(!(f.json && f.csv), "--json and --csv are exclusive");
  plan::Catalog catalog = open_catalog(f);
  plan::PlanRequest request;
  int64_t default_seq = 0;
  request.shape = open_plan_model(f.model, &default_seq);
  request.seq_len = f.seq > 0 ? f.seq : default_seq;
  require(request.seq_len > 0, "--seq is needed: {} names no sequence length", f.model);
  request.tokens = f.tokens;
  request.chips = f.chips;
  request.max_chips = f.max_chips;
  if (f.deadline > 0) request.deadline_hours = f.deadline;
  request.global_batch_tokens = f.global_batch;
  request.assumed_mfu = f.assumed_mfu;
  if (f.precision == "fp32") {
    request.precision = plan::engine_fp32();
  } else if (f.precision != "bf16") {
    fail("--precision must be bf16 or fp32, got '{}'", f.precision);
  }
  for (const std::string& spec : f.measured) request.evidence.push_back(plan::load_evidence(spec));

  std::vector<plan::PlanRow> rows = plan::make_plan(catalog, request);
  if (!f.svg.empty()) {
    std::string title = fmt::format("{}: {:g} tokens, T={} — cost against time", f.model, f.tokens,
                                    request.seq_len);
    std::string svg = plan::plan_to_svg(rows, title);
    std::ofstream out(f.svg);
    require(static_cast<bool>(out), "cannot write {}", f.svg);
    out << svg;
    require(static_cast<bool>(out), "cannot write {}", f.svg);
  }
  if (f.json) {
    std::printf("%s\n", plan::plan_to_json(rows).dump(2).c_str());
  } else if (f.csv) {
    std::printf("%s", plan::plan_to_csv(rows).c_str());
  } else {
    std::string heading = fmt::format(
        "plan for {}: {:.4g} tokens at T={}, global batch {} tokens requested, {:.3g} model FLOPs "
        "per token ({:.3g} parameters)",
        f.model, f.tokens, request.seq_len, plan::group_digits(request.global_batch_tokens),
        request.shape.training_flops_per_token(request.seq_len),
        static_cast<double>(request.shape.num_parameters()));
    std::printf("%s", plan::format_table(rows, heading).c_str());
  }
}

nlohmann::json training_validation_json(const plan::ValidationReport& report) {
  nlohmann::json rows = nlohmann::json::array();
  for (const plan::ValidationRow& r : report.rows) {
    rows.push_back({{"name", r.run.name},
                    {"chip", r.run.chip},
                    {"chips", r.run.chips},
                    {"measured_tokens_per_s_per_chip", r.run.tokens_per_s_per_chip},
                    {"predicted_tokens_per_s_per_chip", r.predicted},
                    {"error_pct", r.error_pct},
                    {"loo_predicted_tokens_per_s_per_chip",
                     r.has_loo ? nlohmann::json(r.loo_predicted) : nullptr},
                    {"loo_error_pct", r.has_loo ? nlohmann::json(r.loo_error_pct) : nullptr},
                    {"measured_mfu", r.measured_mfu},
                    {"source", r.run.source}});
  }
  return {{"runs", rows},
          {"mape_pct", report.mape},
          {"loo_mape_pct", report.loo_mape},
          {"families", report.families}};
}

// Training runs always; serving runs when published.json has a "serving" section.
void run_validate(const PlanFlags& f) {
  plan::Catalog catalog = open_catalog(f);
  const std::string path =
      f.published.empty() ? plan_catalog_dir(f.catalog_dir) + "/published.json" : f.published;
  const nlohmann::json published = plan::read_json_file(path);
  plan::ValidationReport report =
      plan::validate_published(catalog, plan::parse_published(published, path));
  std::optional<plan::ServingValidationReport> serving;
  if (published.contains("serving")) {
    serving = plan::validate_serving(catalog, plan::parse_published_serving(published, path));
  }
  if (f.json) {
    nlohmann::json out = training_validation_json(report);
    if (serving) out["serving"] = plan::serving_validation_to_json(*serving);
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  std::printf("%s", plan::format_validation(report).c_str());
  if (serving) std::printf("\n%s", plan::format_serving_validation(*serving).c_str());
}

void add_catalog_flags(CLI::App* cmd, PlanFlags& f) {
  cmd->add_option("--catalog-dir", f.catalog_dir,
                  "directory with chips.json, instances.json, published.json");
  cmd->add_option("--chips-catalog", f.chips_catalog,
                  "chip catalog JSON (overrides --catalog-dir)");
  cmd->add_option("--instances-catalog", f.instances_catalog,
                  "instance catalog JSON (overrides --catalog-dir)");
}

}  // namespace

void add_plan_command(CLI::App& app) {
  auto flags = std::make_shared<PlanFlags>();
  CLI::App* cmd =
      app.add_subcommand("plan", "time, chips and dollars to train a model on each chip");
  cmd->require_subcommand(0, 1);
  cmd->add_option("--model", flags->model,
                  "GPT-2 preset, checkpoint directory, or decoder-shape JSON file");
  cmd->add_option("--tokens", flags->tokens, "tokens to train on (e.g. 1e10)");
  cmd->add_option("--chips", flags->chips, "chips to consider (default: all in the catalog)")
      ->delimiter(',');
  cmd->add_option("--max-chips", flags->max_chips, "largest cluster, in chips")
      ->capture_default_str();
  cmd->add_option("--deadline", flags->deadline,
                  "keep only configurations finishing within this many hours");
  cmd->add_option("--seq", flags->seq, "sequence length (default: the model's context)");
  cmd->add_option("--global-batch", flags->global_batch, "tokens per optimizer step")
      ->capture_default_str();
  cmd->add_option("--measured", flags->measured,
                  "CHIP=FILE from `bench train --json` (or a trn sim run with "
                  "simulated_ms_per_step); repeatable");
  cmd->add_option("--precision", flags->precision,
                  "bf16 (mixed, fused attention) or fp32 (the engine today)")
      ->capture_default_str();
  cmd->add_option("--assumed-mfu", flags->assumed_mfu,
                  "MFU for chip families without a published figure")
      ->capture_default_str();
  cmd->add_flag("--json", flags->json,
                "print one JSON object: the summary, the cheapest and fastest plans, every row");
  cmd->add_flag("--csv", flags->csv, "print CSV");
  cmd->add_option("--svg", flags->svg,
                  "write cost against time (Pareto front marked) to this SVG file");
  add_catalog_flags(cmd, *flags);

  CLI::App* validate = cmd->add_subcommand(
      "validate", "predictions beside published training and serving throughputs");
  validate->add_option("--published", flags->published,
                       "published measurements JSON (default: catalog's published.json)");
  validate->add_flag("--json", flags->json, "print JSON");
  add_catalog_flags(validate, *flags);
  validate->callback([flags] { run_validate(*flags); });
  CLI::App* serve = add_plan_serve_command(*cmd);

  cmd->callback([flags, validate, serve] {
    if (validate->parsed() || serve->parsed()) return;
    run_plan(*flags);
  });
}

}  // namespace switchyard::cli
