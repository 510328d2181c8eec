// The serving planner and `switchyard plan serve`: plans meet their targets with the largest batch
// and the fewest replicas that do, tensor parallelism where the weights do not fit, simulated step
// times replace the roofline, targets a chip cannot meet are that chip's row, and the JSON, CSV and
// SVG outputs carry the plan, its evidence and its errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "expect_error.h"
#include "model/model_config.h"
#include "plan/catalog.h"
#include "plan/serving_planner.h"
#include "plan/serving_replica.h"
#include "plan/serving_report.h"
#include "shell_command.h"

namespace switchyard::plan {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kCatalogDir = std::string(SWITCHYARD_TEST_DATA) + "/../../data/catalog";

Catalog repo_catalog() {
  return load_catalog(kCatalogDir + "/chips.json", kCatalogDir + "/instances.json");
}

ServeRequest oss_request(const std::string& model, double load, double ttft_ms, double tpot_ms) {
  ServeRequest r;
  r.shape = shape_from_config(model::preset(model), model);
  r.mix = RequestMix({{1024, 256, 1}});
  r.requests_per_s = load;
  r.ttft_s = ttft_ms / 1000;
  r.tpot_s = tpot_ms / 1000;
  r.precision = serving_precision("mxfp4", "bf16", r.shape);
  return r;
}

const ServeRow& row_of(const std::vector<ServeRow>& rows, const std::string& chip) {
  for (const ServeRow& r : rows) {
    if (r.chip == chip) return r;
  }
  throw std::runtime_error("no row for " + chip);
}

// The replica model the planner used for `row`, rebuilt from the same pieces.
struct Rebuilt {
  ServedModel model;
  ServingRate rate;
  ServingChip chip;
  Rebuilt(const Catalog& c, const ServeRequest& r, const ServeRow& row)
      : model(r.shape, r.precision),
        rate(roofline_serving_rate(c, c.chip(row.chip), r.assumed_efficiency)),
        chip(serving_chip(c.chip(row.chip), r.precision, r.link_latency_s)) {}
};

TEST(PlanServing, PlansMeetTheTargetsWithTheLargestBatchAndFewestReplicas) {
  const Catalog catalog = repo_catalog();
  const ServeRequest r = oss_request("gpt-oss-120b", 20, 1000, 40);
  const std::vector<ServeRow> rows = make_serving_plan(catalog, r);
  ASSERT_EQ(rows.size(), catalog.chips.size());
  EXPECT_TRUE(rows[0].cheapest);
  int planned = 0;
  for (const ServeRow& row : rows) {
    if (row.status != ServeStatus::kPlanned) continue;
    ++planned;
    const ServePoint& p = row.plan;
    EXPECT_LE(p.tpot_s, r.tpot_s) << row.chip;
    EXPECT_LE(p.ttft_s, r.ttft_s) << row.chip;
    EXPECT_LE(p.memory_per_chip, row.memory_usable) << row.chip;
    EXPECT_LE(rows[0].plan.dollars_per_million, p.dollars_per_million) << row.chip;
    Rebuilt rb(catalog, r, row);
    ReplicaModel rep(rb.model, rb.chip, rb.rate, r.mix, r.step_overhead_s, p.tensor_parallel);
    // The batch is the largest meeting TPOT, unless memory or --max-batch stops it.
    const int64_t limit = std::min(r.max_batch, rep.memory_batch_limit(row.memory_usable));
    if (p.batch < limit) {
      EXPECT_GT(rep.tpot_s(p.batch + 1), r.tpot_s) << row.chip;
    }
    // One replica fewer either saturates or misses the TTFT target.
    if (p.replicas > 1) {
      const double per = r.requests_per_s / static_cast<double>(p.replicas - 1);
      EXPECT_GT(rep.times(p.batch, per).ttft_s, r.ttft_s) << row.chip;
    }
    // $ per million output tokens: the instances' price over the tokens an hour carries.
    EXPECT_NEAR(p.dollars_per_million, p.price_per_hour / (r.requests_per_s * 256 * 3600) * 1e6,
                1e-9);
    EXPECT_EQ(p.instances, (p.chips + row.chips_per_instance - 1) / row.chips_per_instance);
    EXPECT_FALSE(row.curve.empty()) << row.chip;
  }
  EXPECT_GE(planned, 4);  // trn1, trn2, h100, h200 have priced instances
  const ServeRow& b200 = row_of(rows, "b200");
  EXPECT_EQ(b200.status, ServeStatus::kNoPrice);
  EXPECT_GT(b200.plan.chips, 0);
  EXPECT_NE(b200.why_not.find("no priced instance"), std::string::npos);
}

TEST(PlanServing, TensorParallelismWhereTheWeightsDoNotFitOneChip) {
  const Catalog catalog = repo_catalog();
  ServeRequest r = oss_request("gpt-oss-120b", 5, 2000, 100);
  r.chips = {"trn1"};  // 32 GiB; the model's weights are about 61 GiB
  const std::vector<ServeRow> rows = make_serving_plan(catalog, r);
  const ServeRow& trn1 = rows[0];
  ASSERT_EQ(trn1.status, ServeStatus::kPlanned) << trn1.why_not;
  Rebuilt rb(catalog, r, trn1);
  for (int64_t t : {1, 2}) {
    ReplicaModel rep(rb.model, rb.chip, rb.rate, r.mix, r.step_overhead_s, t);
    EXPECT_EQ(rep.memory_batch_limit(trn1.memory_usable), 0) << t;
  }
  EXPECT_GE(trn1.plan.tensor_parallel, 4);
  EXPECT_LE(rb.model.resident_weight_bytes() / trn1.plan.tensor_parallel, trn1.memory_usable);
  // A chip that holds the weights alone needs no tensor parallelism at a relaxed TPOT.
  ServeRequest small = oss_request("gpt-oss-20b", 5, 2000, 200);
  small.chips = {"h100"};
  EXPECT_EQ(make_serving_plan(catalog, small)[0].plan.tensor_parallel, 1);
}

TEST(PlanServing, TargetsAChipCannotMeetAreItsRowNotAnError) {
  const Catalog catalog = repo_catalog();
  const std::vector<ServeRow> tpot =
      make_serving_plan(catalog, oss_request("gpt-oss-120b", 1, 5000, 0.01));
  for (const ServeRow& row : tpot) {
    EXPECT_FALSE(row.meets_targets()) << row.chip;
    if (row.status == ServeStatus::kMissesLatency) {
      EXPECT_NE(row.why_not.find("TPOT target 0.01 ms is below the fastest"), std::string::npos)
          << row.why_not;
    }
  }
  EXPECT_EQ(serving_summary(tpot).rfind("no plan meets the targets", 0), 0u);
  // A TTFT no prefill can reach.
  ServeRequest ttft = oss_request("gpt-oss-120b", 1, 0.01, 1000);
  ttft.chips = {"h100"};
  const ServeRow h100 = make_serving_plan(catalog, ttft)[0];
  EXPECT_EQ(h100.status, ServeStatus::kMissesLatency);
  EXPECT_NE(h100.why_not.find("TTFT target 0.01 ms is below the fastest first token"),
            std::string::npos)
      << h100.why_not;
  // A load beyond --max-chips.
  ServeRequest huge = oss_request("gpt-oss-120b", 1e6, 5000, 1000);
  huge.chips = {"h200"};
  const ServeRow h200 = make_serving_plan(catalog, huge)[0];
  EXPECT_EQ(h200.status, ServeStatus::kOverMaxChips);
  EXPECT_NE(h200.why_not.find("more than --max-chips 1024"), std::string::npos) << h200.why_not;
}

TEST(PlanServing, SimulatedStepTimesReplaceTheRooflineForTheirChip) {
  const Catalog catalog = repo_catalog();
  ServeRequest r = oss_request("gpt-oss-20b", 10, 2000, 60);
  r.mix = RequestMix({{1000, 48, 1}});  // decode context 1000 + 48/2 = 1024, the table's
  r.chips = {"trn2"};
  const json table = {{"chip", "trn2"},
                      {"model", "gpt-oss-20b"},
                      {"kind", "simulated"},
                      {"source", "trn2-sim decode steps"},
                      {"context", 1024},
                      {"tensor_parallel", 1},
                      {"steps",
                       {{{"batch", 1}, {"ms", 8.0}},
                        {{"batch", 64}, {"ms", 12.0}},
                        {{"batch", 256}, {"ms", 30.0}}}}};
  r.step_times.push_back(parse_step_times(table, "trn2-sim.json"));
  const ServeRow row = make_serving_plan(catalog, r)[0];
  ASSERT_EQ(row.status, ServeStatus::kPlanned) << row.why_not;
  ASSERT_EQ(row.plan.tensor_parallel, 1);
  ASSERT_LE(row.plan.batch, 256);
  EXPECT_EQ(row.evidence, EvidenceKind::kSimulated);
  EXPECT_EQ(row.evidence_label(), "simulated");
  EXPECT_NE(row.evidence_detail.find("trn2-sim.json"), std::string::npos);
  EXPECT_DOUBLE_EQ(row.plan.step_s, r.step_times[0].seconds(row.plan.batch));
  EXPECT_DOUBLE_EQ(r.step_times[0].seconds(64), 12e-3);
  EXPECT_DOUBLE_EQ(r.step_times[0].seconds(160), 21e-3);  // halfway from 64 to 256
  {
    // Past a table's largest batch (8 here) the roofline is scaled to meet the table's last
    // step, and the plan is still labelled simulated.
    json short_table = table;
    short_table["steps"] = {{{"batch", 1}, {"ms", 8.0}}, {{"batch", 8}, {"ms", 9.0}}};
    ServeRequest wide = r;
    wide.step_times = {parse_step_times(short_table, "short.json")};
    const ServeRow far = make_serving_plan(catalog, wide)[0];
    ASSERT_EQ(far.status, ServeStatus::kPlanned) << far.why_not;
    ASSERT_GT(far.plan.batch, 8);
    EXPECT_EQ(far.evidence, EvidenceKind::kSimulated);
    Rebuilt rb(catalog, wide, far);
    ServingRate timed_rate = rb.rate;
    timed_rate.table = &wide.step_times[0];
    const ReplicaModel roof(rb.model, rb.chip, rb.rate, wide.mix, wide.step_overhead_s, 1);
    const ReplicaModel timed(rb.model, rb.chip, timed_rate, wide.mix, wide.step_overhead_s, 1);
    EXPECT_DOUBLE_EQ(timed.decode_step_s(8), 9e-3);
    const double ratio = timed.decode_step_s(8) / roof.decode_step_s(8);
    EXPECT_NEAR(timed.decode_step_s(far.plan.batch), ratio * roof.decode_step_s(far.plan.batch), 1e-12);
    EXPECT_NEAR(far.plan.step_s, timed.decode_step_s(far.plan.batch), 1e-12);
    // At another degree, the same calibration of that degree's roofline.
    const ReplicaModel roof2(rb.model, rb.chip, rb.rate, wide.mix, wide.step_overhead_s, 2);
    const ReplicaModel timed2(rb.model, rb.chip, timed_rate, wide.mix, wide.step_overhead_s, 2);
    EXPECT_TRUE(timed2.timed());
    EXPECT_NEAR(timed2.decode_step_s(4), ratio * roof2.decode_step_s(4), 1e-12);
  }
  // Without the table: the roofline, labelled as such.
  r.step_times.clear();
  EXPECT_EQ(make_serving_plan(catalog, r)[0].evidence, EvidenceKind::kRoofline);
  // Malformed tables say what is wrong.
  json bad = table;
  bad["kind"] = "guessed";
  expect_error([&] { parse_step_times(bad, "t.json"); }, {"t.json", "kind"});
  bad = table;
  bad["steps"] = {{{"batch", 8}, {"ms", 1.0}}, {{"batch", 4}, {"ms", 2.0}}};
  expect_error([&] { parse_step_times(bad, "t.json"); }, {"ascend"});
}

TEST(PlanServing, InvalidRequestsGetClearErrors) {
  const Catalog catalog = repo_catalog();
  ServeRequest r = oss_request("gpt-oss-20b", 0, 1000, 50);
  expect_error([&] { make_serving_plan(catalog, r); }, {"load", "positive"});
  r.requests_per_s = std::nan("");
  expect_error([&] { make_serving_plan(catalog, r); }, {"load", "positive"});
  r = oss_request("gpt-oss-20b", 1, -5, 50);
  expect_error([&] { make_serving_plan(catalog, r); }, {"--ttft-ms", "positive"});
  r = oss_request("gpt-oss-20b", 1, 100, 50);
  r.mix = RequestMix({{131000, 2000, 1}});
  expect_error([&] { make_serving_plan(catalog, r); }, {"exceeds", "context of 131072"});
  r = oss_request("gpt-oss-20b", 1, 100, 50);
  r.chips = {"h100", "abc"};
  expect_error([&] { make_serving_plan(catalog, r); }, {"unknown chip 'abc'"});
}

// ---- the command ----

struct Cli {
  int code = 0;
  std::string out;
};
Cli serve(const std::string& args) {
  const ShellResult r = run_cli("plan serve " + args + " --catalog-dir " + kCatalogDir);
  return {r.exit_code, r.output};
}

TEST(PlanServeCli, JsonCarriesThePlanAndItsEvidence) {
  if (!fs::exists(SWITCHYARD_CLI)) GTEST_SKIP() << "CLI not built";
  const Cli c = serve(
      "--model gpt-oss-120b --prompt-tokens 1024 --output-tokens 256 --load 10 --ttft-ms 1000 "
      "--tpot-ms 50 --json");
  ASSERT_EQ(c.code, 0) << c.out;
  const json j = json::parse(c.out);
  EXPECT_EQ(j["summary"].get<std::string>().rfind("cheapest: ", 0), 0u);
  EXPECT_EQ(j["request"]["precision"], "mxfp4");
  EXPECT_DOUBLE_EQ(j["request"]["output_tokens_per_s"].get<double>(), 2560.0);
  ASSERT_TRUE(j["cheapest"].is_object());
  for (const char* key :
       {"batch", "tensor_parallel", "replicas", "chips", "instances", "tpot_ms", "ttft_ms",
        "output_tokens_per_s_per_chip", "dollars_per_million_output_tokens", "price_per_hour"}) {
    EXPECT_TRUE(j["cheapest"][key].is_number()) << key;
  }
  EXPECT_LE(j["cheapest"]["tpot_ms"].get<double>(), 50.0);
  std::map<std::string, json> by_chip;
  for (const json& row : j["plans"]) by_chip[row["chip"]] = row;
  EXPECT_EQ(by_chip["h100"]["evidence"], "published-same-chip");
  EXPECT_EQ(by_chip["h100"]["evidence_label"], "published");
  EXPECT_EQ(by_chip["h100"]["status"], "planned");
  EXPECT_NE(by_chip["h100"]["weight_format"].get<std::string>().find("decoded to bf16"),
            std::string::npos);
  EXPECT_EQ(by_chip["trn2"]["evidence"], "roofline");
  EXPECT_EQ(by_chip["b200"]["status"], "no-price");
  EXPECT_TRUE(by_chip["b200"]["dollars_per_million_output_tokens"].is_null());
  EXPECT_TRUE(by_chip["b200"]["chips"].is_number());
  EXPECT_NE(by_chip["b200"]["weight_format"].get<std::string>().find("natively"),
            std::string::npos);
  EXPECT_NE(by_chip["trn3"]["weight_format"].get<std::string>().find("natively"),
            std::string::npos);
  EXPECT_TRUE(by_chip["h100"]["curve"].is_array());
}

TEST(PlanServeCli, CsvHeaderTextAndSvg) {
  if (!fs::exists(SWITCHYARD_CLI)) GTEST_SKIP() << "CLI not built";
  const std::string args =
      "--model gpt-oss-20b --mix 1024:256:0.7,4096:512:0.3 --tokens-per-s 20000 --ttft-ms 800 "
      "--tpot-ms 40";
  Cli c = serve(args + " --csv");
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_EQ(c.out.substr(0, c.out.find('\n')),
            "chip,instance,status,instances,chips,tensor_parallel,replicas,batch,tpot_ms,ttft_ms,"
            "step_ms,prefill_ms,utilisation,output_tokens_per_s_per_chip,"
            "load_output_tokens_per_s_per_chip,memory_gib_per_chip,memory_gib_usable,"
            "price_per_hour,dollars_per_million_output_tokens,cheapest,evidence,evidence_label,"
            "evidence_detail,weight_format,why_not");
  c = serve(args);
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_EQ(c.out.rfind("cheapest: ", 0), 0u) << c.out;
  EXPECT_NE(c.out.find("70% 1024/256, 30% 4096/512"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("\nevidence (where each chip's step times come from):"), std::string::npos);
  const std::string svg_path = (fs::temp_directory_path() / "plan_serve_test.svg").string();
  fs::remove(svg_path);
  c = serve(args + " --svg " + svg_path);
  ASSERT_EQ(c.code, 0) << c.out;
  std::ifstream in(svg_path);
  const std::string svg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  EXPECT_EQ(std::count(svg.begin(), svg.end(), '<'), std::count(svg.begin(), svg.end(), '>'));
  // Every element closes: <text>...</text>, <circle .../> or <circle ...>...</circle>.
  auto count = [&](const std::string& s) {
    size_t n = 0;
    for (size_t at = svg.find(s); at != std::string::npos; at = svg.find(s, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("<text"), count("</text>"));
  EXPECT_EQ(count("<title>"), count("</title>"));
  EXPECT_EQ(count("<svg"), count("</svg>"));
  EXPECT_GT(count("<polyline"), 0u);
  EXPECT_NE(svg.find("TPOT target"), std::string::npos);
  EXPECT_NE(svg.find("(cheapest)"), std::string::npos);
  EXPECT_FALSE(std::regex_search(svg, std::regex("\\b(nan|inf)\\b"))) << "non-finite coordinate";
  fs::remove(svg_path);
}

TEST(PlanServeCli, BadInputsExitNonZeroWithClearErrors) {
  if (!fs::exists(SWITCHYARD_CLI)) GTEST_SKIP() << "CLI not built";
  const std::string ok = "--prompt-tokens 1024 --output-tokens 256 --ttft-ms 1000 --tpot-ms 50";
  struct Case {
    std::string args, expect;
  };
  for (const Case& k : std::vector<Case>{
           {"--model gpt-9 --load 1 " + ok, "unknown model preset 'gpt-9'"},
           {"--model gpt-oss-20b --load 0 " + ok, "--load must be a positive number"},
           {"--model gpt-oss-20b --load -3 " + ok, "--load must be a positive number"},
           {"--model gpt-oss-20b --load nan " + ok, "must be a positive number"},
           {"--model gpt-oss-20b --load 1 --tokens-per-s 5 " + ok, "exactly one of --load"},
           {"--model gpt-oss-20b " + ok, "exactly one of --load"},
           {"--model gpt-oss-20b --load 1 --prompt-tokens 0 --output-tokens 5 --ttft-ms 1000 "
            "--tpot-ms 50",
            "--prompt-tokens must be > 0"},
           {"--model gpt-oss-20b --load 1 --prompt-tokens 10 --output-tokens -5 --ttft-ms 1000 "
            "--tpot-ms 50",
            "--output-tokens must be > 0"},
           {"--model gpt-oss-20b --load 1 --prompt-tokens 10 --ttft-ms 1000 --tpot-ms 50",
            "both --prompt-tokens and --output-tokens"},
           {"--model gpt-oss-20b --load 1 --prompt-tokens 10 --output-tokens 5 --ttft-ms -1 "
            "--tpot-ms 50",
            "--ttft-ms must be a positive number"},
           {"--model gpt-oss-20b --load 1 --prompt-tokens 10 --output-tokens 5 --ttft-ms 100",
            "--ttft-ms and --tpot-ms"},
           {"--model gpt-oss-20b --load 1 --precision fp4 " + ok,
            "--precision must be mxfp4, bf16 or fp8"},
           {"--model gpt2-124m --load 1 --precision mxfp4 " + ok, "has no experts"},
           {"--model gpt2-124m --load 1 --prompt-tokens 1000 --output-tokens 100 --ttft-ms 1000 "
            "--tpot-ms 50",
            "exceeds gpt2-124m's context of 1024 tokens"},
           {"--model gpt-oss-20b --load 1 --mix 1024:256 --ttft-ms 1000 --tpot-ms 50",
            "PROMPT:OUTPUT:SHARE"},
           {"--model gpt-oss-20b --load 1 --chips nope " + ok, "unknown chip 'nope'"},
       }) {
    const Cli c = serve(k.args);
    EXPECT_NE(c.code, 0) << k.args;
    EXPECT_NE(c.out.find(k.expect), std::string::npos) << k.args << "\n" << c.out;
  }
  // Targets no chip meets: a row per chip saying why, and a normal exit.
  const Cli c = serve(
      "--model gpt-oss-120b --load 1 --prompt-tokens 1024 --output-tokens 256 "
      "--ttft-ms 1000 --tpot-ms 0.5");
  EXPECT_EQ(c.code, 0) << c.out;
  EXPECT_EQ(c.out.rfind("no plan meets the targets", 0), 0u) << c.out;
  EXPECT_NE(c.out.find("\nmisses the latency targets:\n  "), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("  trn2: TPOT target 0.5 ms is below the fastest"), std::string::npos)
      << c.out;
}

}  // namespace
}  // namespace switchyard::plan
