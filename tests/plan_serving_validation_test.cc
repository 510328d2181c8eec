// `plan validate`, serving half: the shipped serving runs are sourced and parse, every run the
// planner misses by more than 25% says why, the families' serving efficiencies are the means their
// runs imply, a run predicted at its own implied efficiency is reproduced exactly, and the training
// half is unchanged.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "expect_error.h"
#include "plan/catalog.h"
#include "plan/serving_validation.h"
#include "plan/validation.h"
#include "shell_command.h"

namespace switchyard::plan {
namespace {

using nlohmann::json;

const std::string kCatalogDir = std::string(SWITCHYARD_TEST_DATA) + "/../../data/catalog";

Catalog repo_catalog() {
  return load_catalog(kCatalogDir + "/chips.json", kCatalogDir + "/instances.json");
}

std::vector<PublishedServing> shipped_runs() {
  return parse_published_serving(read_json_file(kCatalogDir + "/published.json"), "published.json");
}

TEST(PlanServingValidation, ShippedRunsAreSourcedAndTheMissesExplained) {
  const ServingValidationReport report = validate_serving(repo_catalog(), shipped_runs());
  ASSERT_GE(report.rows.size(), 20u);
  EXPECT_GE(report.families, 3);
  std::set<std::string> models;
  for (const ServingValidationRow& r : report.rows) {
    EXPECT_FALSE(r.run.source.empty()) << r.run.name;
    EXPECT_FALSE(r.run.date.empty()) << r.run.name;
    EXPECT_FALSE(r.run.software.empty()) << r.run.name;
    EXPECT_GT(r.predicted, 0) << r.run.name;
    models.insert(r.run.model);
    if (std::abs(r.error_pct) > report.threshold_pct) {
      EXPECT_FALSE(r.run.explanation.empty())
          << r.run.name << " is off by " << r.error_pct << "% and says not why";
    }
  }
  EXPECT_EQ(models, (std::set<std::string>{"gpt-oss-20b", "gpt-oss-120b"}));
  EXPECT_LE(report.mape, 25.0);
  EXPECT_LE(report.loo_mape, 25.0);
  // The training half stays where it was.
  const ValidationReport training = validate_published(
      repo_catalog(), parse_published(read_json_file(kCatalogDir + "/published.json"), "p"));
  EXPECT_LE(training.mape, 10.0);
}

// A family's serving efficiency names exactly the chips with calibrating runs and is, to its three
// stated digits, the mean efficiency those runs imply.
TEST(PlanServingValidation, FamilyEfficienciesAreTheMeansOfTheirRuns) {
  const Catalog catalog = repo_catalog();
  const ServingValidationReport report = validate_serving(catalog, shipped_runs());
  std::map<std::string, std::vector<double>> implied;
  std::map<std::string, std::set<std::string>> chips;
  for (const ServingValidationRow& r : report.rows) {
    if (!r.run.calibrates || std::isnan(r.implied_efficiency)) continue;
    const std::string& family = catalog.chip(r.run.chip).family;
    implied[family].push_back(r.implied_efficiency);
    chips[family].insert(r.run.chip);
  }
  ASSERT_FALSE(catalog.serving_families.empty());
  EXPECT_EQ(implied.size(), catalog.serving_families.size());
  for (const ServingFamily& f : catalog.serving_families) {
    ASSERT_TRUE(implied.count(f.family)) << f.family;
    double sum = 0;
    for (double e : implied[f.family]) sum += e;
    EXPECT_NEAR(f.efficiency.value, sum / implied[f.family].size(), 0.0015) << f.family;
    EXPECT_EQ(std::set<std::string>(f.measured_on.begin(), f.measured_on.end()), chips[f.family])
        << f.family;
  }
}

TEST(PlanServingValidation, ARunPredictedAtItsImpliedEfficiencyIsReproduced) {
  Catalog catalog = repo_catalog();
  std::vector<PublishedServing> one;
  for (const PublishedServing& run : shipped_runs()) {
    if (run.chip == "mi300x" && run.concurrency == 64) one.push_back(run);
  }
  ASSERT_EQ(one.size(), 1u);
  const double implied = validate_serving(catalog, one).rows[0].implied_efficiency;
  ASSERT_TRUE(std::isfinite(implied));
  for (ServingFamily& f : catalog.serving_families) {
    if (f.family == "cdna3") f.efficiency.value = implied;
  }
  const ServingValidationRow row = validate_serving(catalog, one).rows[0];
  EXPECT_NEAR(row.error_pct, 0.0, 1e-9);
  EXPECT_EQ(row.batch, 64);
  EXPECT_EQ(row.evidence, "published");
}

TEST(PlanServingValidation, MalformedRunsGetClearErrors) {
  const json run = {{"name", "r"},
                    {"model", "gpt-oss-20b"},
                    {"chip", "h100"},
                    {"chips", 1},
                    {"tensor_parallel", 1},
                    {"concurrency", 8},
                    {"prompt_tokens", 128},
                    {"output_tokens", 128},
                    {"precision", "mxfp4"},
                    {"kv_cache", "bf16"},
                    {"output_tokens_per_s", 100.0},
                    {"software", "s"},
                    {"source", "u"},
                    {"date", "2026"}};
  EXPECT_EQ(parse_published_serving(json{{"serving", {run}}}, "p.json").size(), 1u);
  json bad = run;
  bad.erase("source");
  expect_error(
      [&] {
        parse_published_serving(json{{"serving", {bad}}}, "p.json");
      },
      {"p.json", "(r)", "'source'"});
  bad = run;
  bad["max_throughput"] = true;
  expect_error(
      [&] {
        parse_published_serving(json{{"serving", {bad}}}, "p.json");
      },
      {"exactly one of 'concurrency'"});
  bad = run;
  bad["chips"] = 3;
  bad["tensor_parallel"] = 2;
  expect_error(
      [&] {
        parse_published_serving(json{{"serving", {bad}}}, "p.json");
      },
      {"multiple of 'tensor_parallel'"});
  bad = run;
  bad["output_tokens_per_s"] = -1;
  expect_error(
      [&] {
        parse_published_serving(json{{"serving", {bad}}}, "p.json");
      },
      {"positive number"});
  bad = run;
  bad["cache_reservation"] = "some";
  expect_error(
      [&] {
        parse_published_serving(json{{"serving", {bad}}}, "p.json");
      },
      {"cache_reservation"});
}

TEST(PlanServingValidation, ValidateCommandReportsBothHalves) {
  if (!std::filesystem::exists(SWITCHYARD_CLI)) GTEST_SKIP() << "CLI not built";
  ShellResult r = run_cli("plan validate --catalog-dir " + kCatalogDir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("mean absolute percentage error: "), std::string::npos);
  EXPECT_NE(r.output.find("serving mean absolute percentage error: "), std::string::npos);
  EXPECT_NE(r.output.find("runs off by more than 25%, explained:"), std::string::npos);
  EXPECT_EQ(r.output.find("(no explanation recorded)"), std::string::npos) << r.output;
  r = run_cli("plan validate --json --catalog-dir " + kCatalogDir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json j = json::parse(r.output);
  EXPECT_TRUE(j["mape_pct"].is_number());
  ASSERT_TRUE(j["serving"].is_object());
  EXPECT_TRUE(j["serving"]["mape_pct"].is_number());
  for (const json& run : j["serving"]["runs"]) {
    if (std::abs(run["error_pct"].get<double>()) > 25) {
      EXPECT_TRUE(run["explanation"].is_string()) << run["name"];
    } else {
      EXPECT_TRUE(run["explanation"].is_null()) << run["name"];
    }
  }
}

}  // namespace
}  // namespace switchyard::plan
