// The planner: FLOP and parameter counts against hand counts, memory estimates against what the
// engine really allocates on the CPU backend, collective times against their closed forms, plans
// that are deterministic and sensible, the shipped catalogs and validation, and clear errors.
#include <gtest/gtest.h>

#include "shell_command.h"

#include "expect_error.h"

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/gpt2.h"
#include "plan/catalog.h"
#include "plan/collectives.h"
#include "plan/evidence.h"
#include "plan/planner.h"
#include "plan/report.h"
#include "plan/units.h"
#include "plan/validation.h"
#include "plan/workload.h"

namespace switchyard::plan {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kCatalogDir = std::string(SWITCHYARD_TEST_DATA) + "/../../data/catalog";

Catalog repo_catalog() {
  return load_catalog(kCatalogDir + "/chips.json", kCatalogDir + "/instances.json");
}

// ---- FLOPs and parameters ----

TEST(PlanWorkload, Gpt2FlopsEqualHandCountAndEngine) {
  model::ModelConfig tiny = model::preset("tiny");  // T=256, V=256, L=4, NH=4, C=128
  ModelShape s = shape_from_config(tiny, "tiny");
  // Per layer: 2 x (3C^2 + C^2 + 4C^2 + 4C^2) = 24 C^2 = 393,216 for the products and
  // 2 x 2 x C x (T + 1) / 2 = 256 x 257 = 65,792 for causal attention at T = 256;
  // 4 layers plus the LM head 2 x C x V = 65,536.
  const double hand = 4.0 * (393216.0 + 65792.0) + 65536.0;
  EXPECT_DOUBLE_EQ(s.forward_flops_per_token(256), hand);
  EXPECT_DOUBLE_EQ(s.training_flops_per_token(256), 3.0 * hand);
  EXPECT_DOUBLE_EQ(s.training_flops_per_token(100),
                   model::ModelShape::of(tiny).training_flops_per_token(100));
}

TEST(PlanWorkload, GenericGatedGqaFlopsEqualHandCount) {
  ModelShape s = shape_from_json(json{{"name", "toy"},
                                        {"layers", 2},
                                        {"hidden", 64},
                                        {"heads", 4},
                                        {"kv_heads", 2},
                                        {"vocab", 100},
                                        {"ffn", 96},
                                        {"gated", true}},
                                   "test");
  // qkv width 64 + 2 x 2 x 16 = 128; products 2 x (64x128 + 64x64 + 3x64x96) = 61,440 per layer;
  // attention at T = 10: 2 x 64 x 11 = 1,408 per layer; head 2 x 64 x 100 = 12,800.
  EXPECT_DOUBLE_EQ(s.forward_flops_per_token(10), 2 * (61440.0 + 1408.0) + 12800.0);
  // Parameters: 2 layers x (64x128 + 64x64 + 3x64x96 + 2x64 norm gains) + untied 2 x 100 x 64 + 64.
  EXPECT_EQ(s.num_parameters(), 2 * (8192 + 4096 + 18432 + 128) + 12800 + 64);
}

// The shape's counts against the engine's own parameter tensors and GPT-2's FLOPs written out.
TEST(PlanWorkload, GenericFormulaAgreesWithTheEngineForGpt2Shapes) {
  for (const std::string& name :
       {std::string("tiny"), std::string("gpt2-124m"), std::string("gpt2-1558m")}) {
    model::ModelConfig config = model::preset(name);
    ModelShape shape = shape_from_config(config, name);
    int64_t engine_parameters = 0;
    const model::ParameterLayout layout = model::gpt2_layout(config);
    for (const model::ParameterTensor& t : layout.tensors()) {
      engine_parameters += static_cast<int64_t>(t.numel);
    }
    EXPECT_EQ(shape.num_parameters(), engine_parameters) << name;
    // Per layer: qkv C x 3C, projection C x C, MLP C x 4C and 4C x C; causal attention at
    // (T + 1) / 2 keys per query for q.k and att.v; the LM head C x V.
    const double C = config.channels, L = config.num_layers, V = config.vocab_size, T = 777;
    const double gpt2 =
        L * (2.0 * (3 * C * C + C * C + 8 * C * C) + 2.0 * 2.0 * C * (T + 1) / 2.0) + 2.0 * C * V;
    EXPECT_NEAR(shape.forward_flops_per_token(777) / gpt2, 1.0, 1e-12) << name;
  }
  EXPECT_EQ(shape_from_config(model::preset("gpt2-124m"), "x").num_parameters(), 124439808);
}

// ---- memory against the engine's own allocations ----

// Forwards every call to a CpuBackend and tallies live and peak bytes. (CpuBackend is final, so the
// count wraps it instead of deriving from it.)
class CountingBackend final : public backend::Backend {
 public:
  std::string name() const override { return "counting-cpu"; }
  std::string description() const override { return cpu_.description(); }
  void* allocate(size_t bytes) override {
    void* p = cpu_.allocate(bytes);
    sizes_[p] = bytes;
    live_ += bytes;
    peak_ = std::max(peak_, live_);
    return p;
  }
  void release(void* ptr) override {
    live_ -= sizes_.at(ptr);
    sizes_.erase(ptr);
    cpu_.release(ptr);
  }
  void copy_to_device(void* d, const void* s, size_t n) override { cpu_.copy_to_device(d, s, n); }
  void copy_to_host(void* d, const void* s, size_t n) override { cpu_.copy_to_host(d, s, n); }
  void fill_zero(void* p, size_t n) override { cpu_.fill_zero(p, n); }
  bool device_memory_is_host_memory() const override { return true; }
#define SWITCHYARD_COUNTING_RUN(Op, name) \
  void run(const backend::ops::Op& op) override { cpu_.run(op); }
  SWITCHYARD_OPS(SWITCHYARD_COUNTING_RUN)
#undef SWITCHYARD_COUNTING_RUN

  size_t peak() const { return peak_; }
  size_t live() const { return live_; }

 private:
  backend::cpu::CpuBackend cpu_;
  std::map<void*, size_t> sizes_;
  size_t live_ = 0, peak_ = 0;
};

// One training step (forward, backward, AdamW) on the CPU backend; returns the peak bytes
// allocated.
size_t engine_peak_bytes(const model::ModelConfig& config, int B, int T) {
  CountingBackend backend;
  {
    model::Gpt2 gpt(backend, config);
    gpt.init_random(3);
    std::vector<int32_t> tokens(static_cast<size_t>(B) * T), targets(tokens.size());
    Rng rng(5);
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = static_cast<int32_t>(rng.next_u64() % config.vocab_size);
      targets[i] = static_cast<int32_t>(rng.next_u64() % config.vocab_size);
    }
    gpt.zero_grad();
    float loss = gpt.forward(tokens.data(), targets.data(), B, T);
    EXPECT_TRUE(std::isfinite(loss));
    gpt.backward();
    gpt.adamw_step(model::AdamWConfig{}, 1e-3f, 1);
  }
  EXPECT_EQ(backend.live(), 0u);  // everything released again
  return backend.peak();
}

double planner_bytes(const model::ModelConfig& config, int B, int T) {
  MemoryLayout layout;
  layout.micro_batch = B;
  layout.seq_len = T;
  return estimate_memory(shape_from_config(config, "test"), engine_fp32(), layout).total();
}

TEST(PlanMemory, EstimateMatchesEngineAllocationOnCpu) {
  struct Case {
    model::ModelConfig config;
    int B, T;
  };
  const Case cases[] = {
      {model::preset("tiny"), 2, 64},
      {model::preset("tiny"), 1, 256},                // attention matrix dominates
      {model::ModelConfig{128, 512, 2, 2, 64}, 4, 32},  // logits dominate
  };
  for (const Case& c : cases) {
    double engine = static_cast<double>(engine_peak_bytes(c.config, c.B, c.T));
    double estimate = planner_bytes(c.config, c.B, c.T);
    std::printf("C=%d B=%d T=%d: engine peak %.0f bytes, planner %.0f (ratio %.4f)\n",
                c.config.channels, c.B, c.T, engine, estimate, estimate / engine);
    EXPECT_NEAR(estimate / engine, 1.0, 0.05)
        << "C=" << c.config.channels << " B=" << c.B << " T=" << c.T << ": engine " << engine
        << " bytes, planner " << estimate;
  }
}

TEST(PlanMemory, ShardingAndRecomputationReduceWhatTheyShould) {
  ModelShape s = shape_from_config(model::preset("gpt2-350m"), "gpt2-350m");
  MemoryLayout base;
  base.micro_batch = 4;
  base.seq_len = 1024;
  base.data_parallel = 8;
  MemoryEstimate plain = estimate_memory(s, mixed_bf16(), base);
  const double P = static_cast<double>(s.num_parameters());
  EXPECT_DOUBLE_EQ(plain.parameters, 2 * P);
  EXPECT_DOUBLE_EQ(plain.gradients, 2 * P);
  EXPECT_DOUBLE_EQ(plain.optimizer, 12 * P);
  MemoryLayout z = base;
  z.zero1 = true;
  EXPECT_DOUBLE_EQ(estimate_memory(s, mixed_bf16(), z).optimizer, 12 * P / 8);
  MemoryLayout rc = base;
  rc.recompute = true;
  EXPECT_LT(estimate_memory(s, mixed_bf16(), rc).activations, plain.activations / 5);
  MemoryLayout tp = base;
  tp.tensor_parallel = 4;
  MemoryEstimate split = estimate_memory(s, mixed_bf16(), tp);
  EXPECT_NEAR(split.parameters, plain.parameters / 4, 1);
  EXPECT_NEAR(split.activations / plain.activations, 0.25, 0.01);
}

// ---- collectives ----

TEST(PlanCollectives, RingMatchesClosedForm) {
  // 2 (n - 1) / n x S / B: 2 x 7/8 x 1 GB / 1 GB/s.
  EXPECT_DOUBLE_EQ(ring_allreduce_seconds(1e9, 8, 1e9), 1.75);
  EXPECT_DOUBLE_EQ(ring_allreduce_seconds(1e9, 8, 1e9, 1e-3), 1.75 + 14e-3);
  EXPECT_DOUBLE_EQ(ring_reduce_scatter_seconds(4e9, 4, 2e9), 1.5);
  EXPECT_EQ(ring_allreduce_seconds(1e9, 1, 1e9), 0.0);
  // Large n tends to 2 S / B.
  EXPECT_NEAR(ring_allreduce_seconds(1e9, 100000, 1e9), 2.0, 1e-4);
}

TEST(PlanCollectives, HierarchicalMatchesClosedForm) {
  HierarchicalLinks links;
  links.intra_bytes_per_second = 100e9;
  links.inter_bytes_per_second = 10e9;
  // Intra: 2 x 7/8 x 8 GB / 100 GB/s = 0.14 s; inter on a 1 GB shard: 2 x 3/4 x 1 GB / 10 GB/s =
  // 0.15 s.
  EXPECT_NEAR(hierarchical_allreduce_seconds(8e9, 8, 4, links), 0.29, 1e-12);
  EXPECT_DOUBLE_EQ(hierarchical_allreduce_seconds(8e9, 1, 4, links),
                   ring_allreduce_seconds(8e9, 4, 10e9));
  EXPECT_DOUBLE_EQ(hierarchical_allreduce_seconds(8e9, 8, 1, links),
                   ring_allreduce_seconds(8e9, 8, 100e9));
}

// ---- units ----

TEST(PlanUnits, DurationsUseTheUnitThatFits) {
  const double s = 1.0 / 3600;                  // one second, in hours
  EXPECT_EQ(format_duration(0.02), "1.2 min");  // never "0.02 h"
  EXPECT_EQ(format_duration(3.4), "3.4 h");
  EXPECT_EQ(format_duration(2.1 * 24), "2.1 d");
  EXPECT_EQ(format_duration(45 * s), "45 s");
  EXPECT_EQ(format_duration(3.25 * s), "3.2 s");
  EXPECT_EQ(format_duration(41.5 / 60), "41.5 min");
  EXPECT_EQ(format_duration(150 * 24), "150 d");
  // The unit is chosen after rounding: no "60 s", "60.0 min" or "24.0 h".
  EXPECT_EQ(format_duration(59.7 * s), "1.0 min");
  EXPECT_EQ(format_duration(59.97 / 60), "1.0 h");
  EXPECT_EQ(format_duration(23.96), "1.0 d");
  EXPECT_EQ(format_duration(std::nan("")), "n/a");
}

TEST(PlanUnits, DollarsAndGroupedDigits) {
  EXPECT_EQ(format_dollars(24.754), "$24.75");
  EXPECT_EQ(format_dollars(0.4), "$0.40");
  EXPECT_EQ(format_dollars(99.996), "$100");
  EXPECT_EQ(format_dollars(150.2), "$150");
  EXPECT_EQ(format_dollars(12345.6), "$12,346");
  EXPECT_EQ(group_digits(1048576), "1,048,576");
  EXPECT_EQ(group_digits(524288), "524,288");
  EXPECT_EQ(group_digits(999), "999");
  EXPECT_EQ(group_digits(1000), "1,000");
  EXPECT_EQ(group_digits(-1234), "-1,234");
}

// ---- catalogs ----

TEST(PlanCatalog, ShippedCatalogsHaveEveryRequiredChipAndInstanceWithSources) {
  Catalog catalog = repo_catalog();
  for (const char* chip :
       {"h100", "h200", "b200", "mi300x", "tpu-v5e", "tpu-v5p", "trn1", "trn2"}) {
    const ChipSpec& c = catalog.chip(chip);
    for (const Figure* f : {&c.bf16_tflops, &c.memory_gib, &c.memory_gbs, &c.chip_to_chip_gbs}) {
      EXPECT_FALSE(f->source.empty()) << chip;
      EXPECT_FALSE(f->date.empty()) << chip;
    }
  }
  for (const char* name : {"trn1.32xlarge", "trn2.48xlarge", "p5.48xlarge", "p5en.48xlarge"}) {
    bool found = false;
    for (const InstanceSpec& i : catalog.instances) {
      if (i.name != name) continue;
      found = true;
      EXPECT_FALSE(i.price_per_hour.source.empty());
      EXPECT_FALSE(i.price_per_hour.date.empty());
    }
    EXPECT_TRUE(found) << name;
  }
  EXPECT_DOUBLE_EQ(catalog.chip("trn1").bf16_tflops.value, 190);
  EXPECT_EQ(catalog.instances_of("h100").size(), 1u);
}

json minimal_chips() {
  json figure = {{"value", 100}, {"source", "test"}, {"date", "2026-01"}};
  return {{"chips",
           {{{"name", "x1"},
             {"display", "X1"},
             {"family", "xf"},
             {"bf16_tflops", figure},
             {"memory_gib", figure},
             {"memory_gbs", figure},
             {"chip_to_chip_gbs", figure}}}}};
}

TEST(PlanCatalog, MalformedCatalogsGetClearErrors) {
  fs::path dir = fs::temp_directory_path() / "switchyard_plan_test";
  fs::create_directories(dir);
  std::ofstream(dir / "bad.json") << "{\"chips\": [";
  EXPECT_NE(error_of([&] {
              load_catalog((dir / "bad.json").string(), (dir / "bad.json").string());
            }).find("malformed JSON"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_json_file((dir / "missing.json").string()); }).find("cannot open"),
            std::string::npos);

  Catalog c;
  json chips = minimal_chips();
  chips["chips"][0].erase("memory_gbs");
  std::string e = error_of([&] { parse_chips(chips, "chips.json", c); });
  EXPECT_NE(e.find("chips.json: chips[0] (x1): missing field 'memory_gbs'"), std::string::npos)
      << e;

  chips = minimal_chips();
  chips["chips"][0]["bf16_tflops"]["value"] = -3;
  e = error_of([&] { parse_chips(chips, "chips.json", c); });
  EXPECT_NE(e.find("bf16_tflops: 'value' must be positive"), std::string::npos) << e;

  chips = minimal_chips();
  chips["chips"][0]["bf16_tflops"].erase("source");
  e = error_of([&] { parse_chips(chips, "chips.json", c); });
  EXPECT_NE(e.find("missing field 'source'"), std::string::npos) << e;

  Catalog ok;
  parse_chips(minimal_chips(), "chips.json", ok);
  json inst = {{"instances",
                {{{"name", "i1"},
                  {"chip", "nope"},
                  {"chips", 8},
                  {"price_per_hour", {{"value", 1}, {"source", "s"}, {"date", "d"}}},
                  {"region", "r"},
                  {"network_gbps", {{"value", 100}, {"source", "s"}, {"date", "d"}}}}}}};
  parse_instances(inst, "instances.json", ok);
  e = error_of([&] { ok.validate(); });
  EXPECT_NE(e.find("names chip 'nope', which is not in the chip catalog"), std::string::npos) << e;
  inst["instances"][0]["chips"] = 0;
  e = error_of([&] { parse_instances(inst, "instances.json", ok); });
  EXPECT_NE(e.find("'chips' must be a positive integer"), std::string::npos) << e;
}

TEST(PlanCatalog, FamilyMeasuredOnMustNameChipsOfTheFamily) {
  json figure = {{"value", 0.3}, {"source", "test"}, {"date", "2026-01"}};
  json chips = minimal_chips();
  chips["families"] = {{{"family", "xf"}, {"mfu", figure}, {"measured_on", {"x9"}}}};
  Catalog c;
  parse_chips(chips, "chips.json", c);
  EXPECT_NE(
      error_of([&] { c.validate(); }).find("measured_on chip 'x9', which is not in the catalog"),
      std::string::npos);
  chips["families"] = {{{"family", "yf"}, {"mfu", figure}, {"measured_on", {"x1"}}}};
  Catalog other;
  parse_chips(chips, "chips.json", other);
  EXPECT_NE(error_of([&] { other.validate(); }).find("which is of family 'xf'"), std::string::npos);
  chips["families"] = {{{"family", "xf"}, {"mfu", figure}, {"measured_on", "x1"}}};
  Catalog bad;
  EXPECT_NE(error_of([&] {
              parse_chips(chips, "chips.json", bad);
            }).find("field 'measured_on' must be an array"),
            std::string::npos);
}

// The chips a family's MFU names as its source are exactly the chips of that family with published
// runs, and the MFU is (to its two stated digits) the mean of those runs' MFUs.
TEST(PlanCatalog, FamilyMeasuredOnAgreesWithThePublishedRuns) {
  Catalog catalog = repo_catalog();
  std::vector<PublishedRun> runs =
      parse_published(read_json_file(kCatalogDir + "/published.json"), "published.json");
  ValidationReport report = validate_published(catalog, runs);
  ASSERT_FALSE(catalog.families.empty());
  for (const FamilyEfficiency& family : catalog.families) {
    std::set<std::string> with_runs;
    double sum = 0;
    int count = 0;
    for (const ValidationRow& row : report.rows) {
      if (catalog.chip(row.run.chip).family != family.family) continue;
      with_runs.insert(row.run.chip);
      sum += row.measured_mfu;
      ++count;
    }
    EXPECT_EQ(std::set<std::string>(family.measured_on.begin(), family.measured_on.end()),
              with_runs)
        << family.family;
    ASSERT_GT(count, 0) << family.family;
    EXPECT_NEAR(family.mfu.value, sum / count, 0.005) << family.family;
  }
}

// ---- plans ----

PlanRequest gpt2_request(double tokens) {
  PlanRequest r;
  r.shape = shape_from_config(model::preset("gpt2-124m"), "gpt2-124m");
  r.seq_len = 1024;
  r.tokens = tokens;
  r.max_chips = 64;
  return r;
}

TEST(PlanPlanner, DeterministicCheapestFirstAndParetoMarked) {
  Catalog catalog = repo_catalog();
  PlanRequest r = gpt2_request(1e10);
  std::vector<PlanRow> a = make_plan(catalog, r), b = make_plan(catalog, r);
  EXPECT_EQ(plan_to_json(a).dump(), plan_to_json(b).dump());
  ASSERT_FALSE(a.empty());
  ASSERT_TRUE(a.front().planned());
  EXPECT_TRUE(a.front().pareto);  // the cheapest is always on the front
  double last = 0;
  int pareto = 0;
  for (const PlanRow& row : a) {
    if (!row.planned()) continue;
    EXPECT_GE(row.dollars, last);
    last = row.dollars;
    pareto += row.pareto;
    EXPECT_NEAR(row.dollars, row.hours * row.price_per_hour, 1e-6 * row.dollars);
    EXPECT_NEAR(row.dollars_per_billion_tokens, row.dollars / 10.0, 1e-9 * row.dollars);
  }
  EXPECT_GE(pareto, 2);
  // Chips without a priced instance are listed as such, with whether the model fits their memory.
  bool tpu_listed = false;
  for (const PlanRow& row : a) {
    if (row.chip == "tpu-v5e") {
      tpu_listed = true;
      EXPECT_EQ(row.status, RowStatus::kNoPrice);
      EXPECT_TRUE(row.fits);
      EXPECT_NE(row.why_not.find("no priced instance"), std::string::npos) << row.why_not;
    }
  }
  EXPECT_TRUE(tpu_listed);
}

TEST(PlanPlanner, OneInstanceThroughputIsPeakTimesThePublishedMfu) {
  Catalog catalog = repo_catalog();
  PlanRequest r = gpt2_request(1e9);
  r.chips = {"h100", "h100"};  // a chip named twice is planned once
  r.max_chips = 8;
  std::vector<PlanRow> rows = make_plan(catalog, r);
  ASSERT_EQ(rows.size(), 1u);
  const PlanRow& row = rows[0];
  ASSERT_TRUE(row.planned());
  EXPECT_EQ(row.evidence, EvidenceKind::kPublished);  // the hopper MFU comes from H100 runs
  const double per_chip = 989.4e12 * catalog.family("hopper")->mfu.value /
                          model::ModelShape::of(model::preset("gpt2-124m"))
                              .training_flops_per_token(1024);
  // Eight chips at the roofline rate; communication can only slow it down, and only a little here.
  EXPECT_LE(row.tokens_per_s, 8 * per_chip * (1 + 1e-9));
  EXPECT_GE(row.tokens_per_s, 0.9 * 8 * per_chip);
  EXPECT_NEAR(row.hours, 1e9 / row.tokens_per_s / 3600, 1e-9);
  EXPECT_NEAR(row.energy_kwh, 8 * 700 * row.hours / 1000, 1e-9);
}

TEST(PlanPlanner, ModelsTooLargeAreListedAsNotFittingWithWhy) {
  Catalog catalog = repo_catalog();
  PlanRequest r;
  r.shape = shape_from_json(json{{"name", "gpt3-175b"},
                                 {"layers", 96},
                                 {"hidden", 12288},
                                 {"heads", 96},
                                 {"vocab", 50257},
                                 {"ffn", 49152},
                                 {"tied_embeddings", true}},
                            "test");
  r.seq_len = 2048;
  r.tokens = 1e9;
  r.chips = {"trn1"};
  r.max_chips = 16;
  std::vector<PlanRow> rows = make_plan(catalog, r);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, RowStatus::kOutOfMemory);
  EXPECT_FALSE(rows[0].fits);
  // Needed against usable: 90% of trn1's 32 GiB.
  EXPECT_NE(rows[0].why_not.find("GiB per chip at the least"), std::string::npos)
      << rows[0].why_not;
  EXPECT_NE(rows[0].why_not.find("28.8 GiB usable (90% of 32 GiB)"), std::string::npos)
      << rows[0].why_not;
  // 175e9 parameters x 16 bytes over 16 chips is ~163 GiB each, far above 32 GiB.
  EXPECT_GT(rows[0].memory_per_chip, 150.0 * (1 << 30));
}

TEST(PlanPlanner, ImpossibleRequestsGetClearErrors) {
  Catalog catalog = repo_catalog();
  PlanRequest r = gpt2_request(0);
  EXPECT_NE(error_of([&] { make_plan(catalog, r); }).find("--tokens must be positive"),
            std::string::npos);
  r = gpt2_request(-5);
  EXPECT_NE(error_of([&] { make_plan(catalog, r); }).find("--tokens must be positive"),
            std::string::npos);
  r = gpt2_request(1e9);
  r.chips = {"h999"};
  std::string e = error_of([&] { make_plan(catalog, r); });
  EXPECT_NE(e.find("unknown chip 'h999'"), std::string::npos) << e;
  EXPECT_NE(e.find("trn1"), std::string::npos) << e;  // lists the known chips
  r = gpt2_request(1e12);
  r.deadline_hours = 0.001;
  e = error_of([&] { make_plan(catalog, r); });
  EXPECT_NE(e.find("no configuration meets --deadline 0.001 (3.6 s): the fastest within "
                   "--max-chips 64 is "),
            std::string::npos)
      << e;
  r = gpt2_request(1e9);
  r.max_chips = 0;
  EXPECT_NE(error_of([&] { make_plan(catalog, r); }).find("--max-chips"), std::string::npos);
}

TEST(PlanPlanner, DeadlineKeepsOnlyConfigurationsThatMeetIt) {
  Catalog catalog = repo_catalog();
  PlanRequest r = gpt2_request(1e10);
  r.deadline_hours = 2.0;
  for (const PlanRow& row : make_plan(catalog, r)) {
    if (row.planned()) {
      EXPECT_LE(row.hours, 2.0);
    }
  }
}

TEST(PlanEvidence, MeasuredAndSimulatedRunsReplaceTheRoofline) {
  Catalog catalog = repo_catalog();
  json bench = {{"mode", "train"},
                {"model", "gpt2-124m"},
                {"device", "cuda"},
                {"batch", 8},
                {"seq", 1024},
                {"ms_per_step", 100.0},
                {"flops_per_step", 8 * 1024 * 7.5e8}};
  StepEvidence measured = parse_evidence(bench, "h100", "bench.json");
  EXPECT_EQ(measured.kind, EvidenceKind::kMeasured);
  EXPECT_DOUBLE_EQ(measured.flops_per_second(), 8 * 1024 * 7.5e8 * 10);
  json sim = bench;
  sim["simulated_ms_per_step"] = 50.0;
  StepEvidence simulated = parse_evidence(sim, "trn2", "sim.json");
  EXPECT_EQ(simulated.kind, EvidenceKind::kSimulated);
  EXPECT_DOUBLE_EQ(simulated.ms_per_step, 50.0);

  PlanRequest r = gpt2_request(1e9);
  r.chips = {"h100", "trn2", "h200"};
  r.evidence = {measured, simulated};
  std::map<std::string, EvidenceKind> kinds;
  for (const PlanRow& row : make_plan(catalog, r)) kinds[row.chip] = row.evidence;
  EXPECT_EQ(kinds["h100"], EvidenceKind::kMeasured);
  EXPECT_EQ(kinds["trn2"], EvidenceKind::kSimulated);
  EXPECT_EQ(kinds["h200"], EvidenceKind::kBorrowed);  // no H200 run: H100's published MFU

  json bad = bench;
  bad.erase("flops_per_step");
  EXPECT_NE(error_of([&] {
              parse_evidence(bad, "h100", "b.json");
            }).find("missing field 'flops_per_step'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { parse_evidence(bench, "", "b.json"); }).find("no chip named"),
            std::string::npos);
  r.evidence = {parse_evidence(bench, "h999", "b.json")};
  EXPECT_NE(error_of([&] { make_plan(catalog, r); }).find("unknown chip 'h999'"),
            std::string::npos);
}

TEST(PlanReport, JsonCsvAndSvgCarryTheConfigurations) {
  Catalog catalog = repo_catalog();
  std::vector<PlanRow> rows = make_plan(catalog, gpt2_request(1e10));
  json plan = plan_to_json(rows);
  ASSERT_TRUE(plan["plans"].is_array());
  ASSERT_EQ(plan["plans"].size(), rows.size());
  for (const json& o : plan["plans"]) {
    for (const char* key : {"chip", "chips", "instances", "status", "fits", "hours", "time",
                            "dollars", "tokens_per_s", "evidence", "evidence_label"}) {
      EXPECT_TRUE(o.contains(key)) << key;
    }
  }
  std::string csv = plan_to_csv(rows);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), static_cast<long>(rows.size()) + 1);
  std::string svg = plan_to_svg(rows, "test");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);  // the Pareto front
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
}

TEST(PlanEvidence, FamilyMfuIsPublishedOnItsOwnChipAndBorrowedOnTheRest) {
  Catalog catalog = repo_catalog();
  ComputeRate trn1 = choose_rate(catalog, catalog.chip("trn1"), "gpt2-124m", {}, 0.35);
  EXPECT_EQ(trn1.kind, EvidenceKind::kPublished);
  EXPECT_EQ(trn1.label(), "published");
  EXPECT_DOUBLE_EQ(trn1.flops_per_second, 190e12 * 0.30);

  ComputeRate trn2 = choose_rate(catalog, catalog.chip("trn2"), "gpt2-124m", {}, 0.35);
  EXPECT_EQ(trn2.kind, EvidenceKind::kBorrowed);
  EXPECT_EQ(trn2.source_chips, std::vector<std::string>{"trn1"});
  EXPECT_EQ(trn2.label(), "borrowed:trn1");
  EXPECT_STREQ(evidence_name(trn2.kind), "borrowed-from-another-chip");
  EXPECT_DOUBLE_EQ(trn2.flops_per_second, 667e12 * 0.30);
  EXPECT_NE(trn2.detail.find("borrowed from trn1"), std::string::npos) << trn2.detail;
  EXPECT_NE(trn2.detail.find("no published trn2 run"), std::string::npos) << trn2.detail;

  ComputeRate b200 = choose_rate(catalog, catalog.chip("b200"), "gpt2-124m", {}, 0.35);
  EXPECT_EQ(b200.kind, EvidenceKind::kRoofline);
  EXPECT_DOUBLE_EQ(b200.flops_per_second, 2250e12 * 0.35);
  EXPECT_NE(b200.detail.find("assumed MFU 0.35"), std::string::npos) << b200.detail;

  // A family figure that names no chip it was measured on is no evidence: roofline.
  Catalog unnamed = catalog;
  for (FamilyEfficiency& f : unnamed.families) f.measured_on.clear();
  EXPECT_EQ(choose_rate(unnamed, unnamed.chip("trn1"), "gpt2-124m", {}, 0.35).kind,
            EvidenceKind::kRoofline);
}

// gpt2-124m at T = 1024 on trn2, up to 1024 chips: 64 instances give 1024 replicas, each taking at
// least one sequence, so the step is 1024 x 1024 = 1,048,576 tokens, twice the 524,288 requested.
std::vector<PlanRow> trn2_to_1024_chips() {
  PlanRequest r = gpt2_request(1e10);
  r.chips = {"trn2"};
  r.max_chips = 1024;
  return make_plan(repo_catalog(), r);
}

const PlanRow& row_with_chips(const std::vector<PlanRow>& rows, int64_t chips) {
  for (const PlanRow& row : rows) {
    if (row.chips == chips) return row;
  }
  throw std::runtime_error(fmt::format("no row with {} chips", chips));
}

TEST(PlanPlanner, LayoutsThatCannotStepSoSmallChangeTheBatchAndSaySo) {
  std::vector<PlanRow> rows = trn2_to_1024_chips();
  const PlanRow& big = row_with_chips(rows, 1024);
  ASSERT_TRUE(big.planned());
  EXPECT_EQ(big.data_parallel, 1024);
  EXPECT_EQ(big.micro_batch, 1);
  EXPECT_DOUBLE_EQ(big.requested_batch_tokens, 524288);
  EXPECT_DOUBLE_EQ(big.tokens_per_step, 1024.0 * 1024.0);
  EXPECT_TRUE(big.batch_changed());
  EXPECT_EQ(big.batch_note,
            "global batch 1,048,576 tokens, not the requested 524,288: 1024 data-parallel "
            "replicas x micro-batch 1 x T=1024 is the smallest step 1024 chips can take");
  // 512 chips take exactly the requested batch.
  const PlanRow& half = row_with_chips(rows, 512);
  EXPECT_DOUBLE_EQ(half.tokens_per_step, 524288);
  EXPECT_FALSE(half.batch_changed());
  EXPECT_TRUE(half.batch_note.empty());

  // A batch that is no whole number of micro-steps is rounded up: 20,000 tokens on 16 trn1 chips
  // is two steps of 16,384 (whatever the layout, replicas x micro-batch x T is 16,384 here).
  PlanRequest r = gpt2_request(1e9);
  r.chips = {"trn1"};
  r.max_chips = 16;
  r.global_batch_tokens = 20000;
  std::vector<PlanRow> small = make_plan(repo_catalog(), r);
  ASSERT_TRUE(small[0].planned());
  EXPECT_EQ(small[0].accumulation, 2);
  EXPECT_DOUBLE_EQ(small[0].tokens_per_step, 32768);
  EXPECT_NE(small[0].batch_note.find("global batch 32,768 tokens, not the requested 20,000: "
                                     "rounded up to 2 accumulation steps"),
            std::string::npos)
      << small[0].batch_note;
}

TEST(PlanPlanner, NoPriceIsNotDoesNotFit) {
  Catalog catalog = repo_catalog();
  // gpt2-124m: b200 fits but has no priced instance; one trn1.32xlarge is over --max-chips 8.
  PlanRequest r = gpt2_request(1e9);
  r.chips = {"b200", "trn1"};
  r.max_chips = 8;
  std::vector<PlanRow> rows = make_plan(catalog, r);
  ASSERT_EQ(rows.size(), 2u);
  std::map<std::string, const PlanRow*> by_chip;
  for (const PlanRow& row : rows) by_chip[row.chip] = &row;
  EXPECT_EQ(by_chip["b200"]->status, RowStatus::kNoPrice);
  EXPECT_TRUE(by_chip["b200"]->fits);
  // 162 GiB usable: 90% of the 180 GiB in the catalog.
  EXPECT_NE(by_chip["b200"]->why_not.find("162.0 GiB usable (90% of 180 GiB)"), std::string::npos)
      << by_chip["b200"]->why_not;
  EXPECT_EQ(by_chip["trn1"]->status, RowStatus::kOverMaxChips);
  std::string text = format_table(rows);
  EXPECT_EQ(text.rfind("no plan: ", 0), 0u) << text;
  EXPECT_NE(text.find("\nno price (fits in memory, but no instance in the instance catalog has a "
                      "price):\n  b200: needs "),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\nover --max-chips:\n  trn1 (trn1.32xlarge): one trn1.32xlarge has 16 "
                      "chips"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("does not fit"), std::string::npos) << text;
  json plan = plan_to_json(rows);
  EXPECT_TRUE(plan["cheapest"].is_null());
  for (const json& o : plan["plans"]) {
    if (o["chip"] == "b200") {
      EXPECT_EQ(o["status"], "no-price");
      EXPECT_EQ(o["fits"], true);
      EXPECT_TRUE(o["hours"].is_null());
    } else {
      EXPECT_EQ(o["status"], "over-max-chips");
      EXPECT_TRUE(o["fits"].is_null());  // not checked
    }
  }

  // GPT-3 175B fits neither: both are "does not fit", the unpriced one saying so as well.
  r.shape = shape_from_json(json{{"name", "gpt3-175b"},
                                 {"layers", 96},
                                 {"hidden", 12288},
                                 {"heads", 96},
                                 {"vocab", 50257},
                                 {"ffn", 49152}},
                            "test");
  r.seq_len = 2048;
  r.max_chips = 16;
  rows = make_plan(catalog, r);
  ASSERT_EQ(rows.size(), 2u);
  for (const PlanRow& row : rows) {
    EXPECT_EQ(row.status, RowStatus::kOutOfMemory) << row.chip;
    EXPECT_FALSE(row.fits);
    // 175e9 parameters in bf16 with bf16 gradients alone are 650 GiB over a 16-chip ZeRO-1
    // replica (no tensor parallelism without an instance); with TP=16 on trn1, over 40 GiB each.
    EXPECT_GT(row.memory_per_chip, row.memory_usable) << row.chip;
  }
  text = format_table(rows);
  EXPECT_EQ(text.find("\nno price ("), std::string::npos) << text;
  EXPECT_NE(text.find("\ndoes not fit in memory:\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  b200: needs "), std::string::npos) << text;
  EXPECT_NE(text.find("no priced instance with b200"), std::string::npos) << text;
  EXPECT_NE(text.find("  1 x trn1.32xlarge (16 chips): needs "), std::string::npos) << text;
}

// Splits a text-table line into cells (runs of non-spaces; "57 s" becomes two cells).
std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::string line_starting(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) return line;
  }
  return "";
}

TEST(PlanReport, BorrowedEvidenceAndChangedBatchInTextAndJson) {
  std::vector<PlanRow> rows = trn2_to_1024_chips();
  const PlanRow& big = row_with_chips(rows, 1024);
  const std::string text = format_table(rows);

  // The 64 x trn2.48xlarge row: batch 1,048,576 with a note, energy n/a with a note, borrowed.
  std::string line;
  std::istringstream lines(text);
  for (std::string l; std::getline(lines, l);) {
    std::vector<std::string> w = words(l);
    if (w.size() > 3 && w[0] == "trn2" && w[2] == "64") line = l;
  }
  ASSERT_FALSE(line.empty()) << text;
  std::vector<std::string> w = words(line);
  EXPECT_EQ(w.back(), "borrowed:trn1") << line;
  auto batch = std::find(w.begin(), w.end(), "1,048,576");
  ASSERT_NE(batch, w.end()) << line;
  const std::string batch_ref = *(batch + 1);
  auto energy = std::find(w.begin(), w.end(), "n/a");
  ASSERT_NE(energy, w.end()) << line;
  const std::string energy_ref = *(energy + 1);
  EXPECT_NE(line.find("  " + format_duration(big.hours) + "  "), std::string::npos) << line;
  EXPECT_NE(line.find("  " + format_dollars(big.dollars) + "  "), std::string::npos) << line;
  EXPECT_EQ(line_starting(text, "  " + batch_ref + " "), "  " + batch_ref + " " + big.batch_note);
  EXPECT_EQ(line_starting(text, "  " + energy_ref + " "),
            "  " + energy_ref + " kWh n/a: no published power figure for trn2 in the chip catalog");
  EXPECT_EQ(line_starting(text, "  trn2: "), "  trn2: " + big.evidence_detail);
  // A row that kept the batch has no note on it.
  std::istringstream again(text);
  for (std::string l; std::getline(again, l);) {
    std::vector<std::string> v = words(l);
    if (v.size() > 6 && v[0] == "trn2" && v[2] == "16") {
      auto it = std::find(v.begin(), v.end(), "524,288");
      ASSERT_NE(it, v.end()) << l;
      EXPECT_NE((it + 1)->front(), '[') << l;
    }
  }

  json plan = plan_to_json(rows);
  const json* o = nullptr;
  for (const json& p : plan["plans"]) {
    if (p["chips"] == 1024) o = &p;
  }
  ASSERT_NE(o, nullptr);
  EXPECT_EQ((*o)["status"], "planned");
  EXPECT_EQ((*o)["evidence"], "borrowed-from-another-chip");
  EXPECT_EQ((*o)["evidence_label"], "borrowed:trn1");
  EXPECT_EQ((*o)["evidence_source_chips"], json::array({"trn1"}));
  EXPECT_EQ((*o)["batch_tokens_requested"].get<double>(), 524288);
  EXPECT_EQ((*o)["batch_tokens"].get<double>(), 1048576);
  EXPECT_EQ((*o)["batch_changed"], true);
  EXPECT_EQ((*o)["batch_note"], big.batch_note);
  EXPECT_TRUE((*o)["energy_kwh"].is_null());
  EXPECT_EQ((*o)["energy_note"], "no published power figure for trn2 in the chip catalog");
  EXPECT_EQ((*o)["time"], format_duration(big.hours));
  EXPECT_NEAR((*o)["hours"].get<double>(), 1e10 / big.tokens_per_s / 3600, 1e-12);
  for (const json& p : plan["plans"]) {
    if (p["chips"] == 512) {
      EXPECT_EQ(p["batch_changed"], false);
      EXPECT_TRUE(p["batch_note"].is_null());
    }
  }

  // CSV: the same fields, every line as many columns as the header.
  std::string csv = plan_to_csv(rows);
  std::istringstream csv_lines(csv);
  std::string header;
  std::getline(csv_lines, header);
  auto columns = [](const std::string& l) {
    std::vector<std::string> cells(1);
    bool quoted = false;
    for (size_t i = 0; i < l.size(); ++i) {
      char c = l[i];
      if (c == '"') {
        if (quoted && i + 1 < l.size() && l[i + 1] == '"') {
          cells.back() += '"';
          ++i;
        } else {
          quoted = !quoted;
        }
      } else if (c == ',' && !quoted) {
        cells.emplace_back();
      } else {
        cells.back() += c;
      }
    }
    return cells;
  };
  std::vector<std::string> names = columns(header);
  auto col = [&](const char* name) {
    return static_cast<size_t>(std::find(names.begin(), names.end(), name) - names.begin());
  };
  int checked = 0;
  for (std::string l; std::getline(csv_lines, l);) {
    std::vector<std::string> cells = columns(l);
    ASSERT_EQ(cells.size(), names.size()) << l;
    if (cells[col("chips")] != "1024") continue;
    ++checked;
    EXPECT_EQ(cells[col("batch_tokens")], "1048576");
    EXPECT_EQ(cells[col("batch_changed")], "true");
    EXPECT_EQ(cells[col("batch_note")], big.batch_note);
    EXPECT_EQ(cells[col("evidence")], "borrowed-from-another-chip");
    EXPECT_EQ(cells[col("evidence_source_chips")], "trn1");
    EXPECT_EQ(cells[col("energy_kwh")], "");
    EXPECT_EQ(cells[col("energy_note")], "no published power figure for trn2 in the chip catalog");
    EXPECT_EQ(cells[col("time")], format_duration(big.hours));
  }
  EXPECT_EQ(checked, 1);
}

TEST(PlanReport, SummaryNamesTheCheapestAndTheFastest) {
  PlanRequest r = gpt2_request(1e10);
  r.max_chips = 1024;
  std::vector<PlanRow> rows = make_plan(repo_catalog(), r);
  const PlanRow *cheapest = nullptr, *fastest = nullptr;
  for (const PlanRow& row : rows) {
    if (!row.planned()) continue;
    if (!cheapest || row.dollars < cheapest->dollars) cheapest = &row;
    if (!fastest || row.hours < fastest->hours) fastest = &row;
  }
  ASSERT_NE(cheapest, nullptr);
  ASSERT_NE(cheapest, fastest);
  PlanSummary summary = summarize(rows);
  EXPECT_EQ(summary.cheapest, cheapest);
  EXPECT_EQ(summary.fastest, fastest);
  auto describe = [](const PlanRow& p) {
    std::string s = fmt::format("{}, {} x {} ({} chips), {}, {}, evidence {}", p.chip, p.instances,
                                p.instance, p.chips, format_duration(p.hours),
                                format_dollars(p.dollars), p.evidence_label());
    if (p.batch_changed()) {
      s += fmt::format(", global batch {} tokens (requested 524,288)",
                       group_digits(p.tokens_per_step));
    }
    return s;
  };
  const std::string line = "cheapest: " + describe(*cheapest) + "; fastest: " + describe(*fastest);
  EXPECT_EQ(summary_line(rows), line);
  const std::string text = format_table(rows, "heading");
  EXPECT_EQ(text.substr(0, text.find('\n')), line);
  EXPECT_EQ(text.substr(line.size() + 1, 8), "heading\n");
  json plan = plan_to_json(rows);
  EXPECT_EQ(plan["summary"], line);
  EXPECT_EQ(plan["cheapest"]["dollars"].get<double>(), cheapest->dollars);
  EXPECT_EQ(plan["fastest"]["hours"].get<double>(), fastest->hours);
  int cheapest_flags = 0, fastest_flags = 0;
  for (const json& o : plan["plans"]) {
    cheapest_flags += o.value("cheapest", false);
    fastest_flags += o.value("fastest", false);
  }
  EXPECT_EQ(cheapest_flags, 1);
  EXPECT_EQ(fastest_flags, 1);
  std::string svg = plan_to_svg(rows, "t");
  EXPECT_NE(svg.find("(cheapest)"), std::string::npos);
  EXPECT_NE(svg.find("(fastest)"), std::string::npos);
  EXPECT_NE(svg.find("trn2 (borrowed:trn1)"), std::string::npos);

  // One planned row is both.
  r.chips = {"h100"};
  r.max_chips = 8;
  rows = make_plan(repo_catalog(), r);
  EXPECT_EQ(summary_line(rows), "cheapest and fastest: " + describe(rows[0]));
}

// ---- validation against published measurements ----

TEST(PlanValidation, PublishedRunsArePredictedWithinTwentyPercent) {
  Catalog catalog = repo_catalog();
  std::vector<PublishedRun> runs =
      parse_published(read_json_file(kCatalogDir + "/published.json"), "published.json");
  ValidationReport report = validate_published(catalog, runs);
  EXPECT_GE(report.rows.size(), 8u);
  EXPECT_GE(report.families, 2);
  EXPECT_LE(report.mape, 20.0);
  EXPECT_LE(report.loo_mape, 20.0);
  for (const ValidationRow& row : report.rows) {
    EXPECT_FALSE(row.run.source.empty());
    EXPECT_GT(row.measured_mfu, 0.1) << row.run.name;
    EXPECT_LT(row.measured_mfu, 0.7) << row.run.name;
  }
}

// ---- the command ----

TEST(PlanCli, PrintsOneJsonArrayAndRejectsBadInput) {
  if (!fs::exists(SWITCHYARD_CLI)) GTEST_SKIP() << "CLI not built";
  auto run = [](const std::string& args, int* code) {
    const ShellResult r = run_cli(args);
    *code = r.exit_code;
    return r.output;
  };
  int code = 0;
  std::string out =
      run("plan --model gpt2-124m --tokens 1e9 --max-chips 32 --json --catalog-dir " + kCatalogDir,
          &code);
  ASSERT_EQ(code, 0) << out;
  json plan = json::parse(out);
  ASSERT_TRUE(plan["plans"].is_array());
  EXPECT_EQ(plan["plans"][0]["status"], "planned");
  EXPECT_EQ(plan["summary"].get<std::string>().rfind("cheapest: ", 0), 0u) << plan["summary"];
  // Text: the summary first; chips without a price apart from those that do not fit; no time
  // written as a fraction of an hour.
  out = run("plan --model gpt2-124m --tokens 1e10 --catalog-dir " + kCatalogDir, &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(out.rfind("cheapest: ", 0), 0u) << out;
  EXPECT_NE(out.find("; fastest: "), std::string::npos) << out;
  EXPECT_NE(out.find("\nplan for gpt2-124m: "), std::string::npos) << out;
  EXPECT_NE(out.find("\nno price (fits in memory"), std::string::npos) << out;
  EXPECT_EQ(out.find("does not fit"), std::string::npos) << out;
  EXPECT_FALSE(std::regex_search(out, std::regex(" 0\\.[0-9]+ h\\b"))) << out;
  EXPECT_NE(out.find(" borrowed:trn1\n"), std::string::npos) << out;
  out = run("plan --model gpt2-124m --tokens 0 --catalog-dir " + kCatalogDir, &code);
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("--tokens"), std::string::npos) << out;
  out = run("plan --model gpt2-124m --tokens 1e9 --chips nope --catalog-dir " + kCatalogDir, &code);
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("unknown chip 'nope'"), std::string::npos) << out;
  out = run("plan validate --catalog-dir " + kCatalogDir, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("mean absolute percentage error"), std::string::npos);
}

}  // namespace
}  // namespace switchyard::plan
