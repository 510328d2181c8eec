// The planner's use of simulator runs: a simulated core's rate counts once per core of the chip,
// and a simulated cluster (bench train --cores N) gives the collectives of rows with as many chips.
#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "expect_error.h"
#include "model/model_config.h"
#include "plan/catalog.h"
#include "plan/evidence.h"
#include "plan/planner.h"
#include "plan/workload.h"

namespace switchyard::plan {
namespace {

using nlohmann::json;

const std::string kCatalogDir = std::string(SWITCHYARD_TEST_DATA) + "/../../data/catalog";

PlanRequest gpt2_on_trn2() {
  PlanRequest r;
  r.shape = shape_from_config(model::preset("gpt2-124m"), "gpt2-124m");
  r.seq_len = 1024;
  r.tokens = 1e10;
  r.max_chips = 64;
  r.chips = {"trn2"};
  return r;
}

// What bench train --json prints for one simulated trn2 core (figures rounded from a real run).
json single_core() {
  return {{"mode", "train"}, {"model", "gpt2-124m"}, {"device", "trn2-sim:timing"},
          {"batch", 4}, {"seq", 1024}, {"simulated_ms_per_step", 131.6},
          {"flops_per_step", 3.27e12}, {"cores_per_chip", 8}};
}

// The same with --cores 128 (one trn2.48xlarge): the global batch and FLOPs, the cluster's step.
json cluster_of_128() {
  json j = single_core();
  j["batch"] = 4 * 128;
  j["flops_per_step"] = 3.27e12 * 128;
  j["simulated_ms_per_step"] = 125.7;
  j["cores"] = 128;
  j["collective_ms"] = 8.0;
  j["exposed_collective_ms"] = 4.6;
  j["gradient_bytes"] = 124475904.0 * 4;
  return j;
}

TEST(PlanSimulatedCluster, ASimulatedCoreCountsOncePerCoreOfTheChip) {
  const StepEvidence core = parse_evidence(single_core(), "trn2", "core.json");
  EXPECT_EQ(core.cores, 1);
  EXPECT_DOUBLE_EQ(core.flops_per_second(), 3.27e12 / 0.1316 * 8);
  json unstated = single_core();
  unstated.erase("cores_per_chip");  // older files: the rate stays the file's
  EXPECT_DOUBLE_EQ(parse_evidence(unstated, "trn2", "old.json").flops_per_second(), 3.27e12 / 0.1316);
  // A cluster's rate per chip leaves out the collectives the core waited for.
  const StepEvidence cluster = parse_evidence(cluster_of_128(), "trn2", "cluster.json");
  EXPECT_EQ(cluster.cluster_chips(), 16);
  EXPECT_DOUBLE_EQ(cluster.flops_per_second(), 3.27e12 * 128 / 128 * 8 / ((125.7 - 4.6) / 1e3));
}

TEST(PlanSimulatedCluster, RowsWithTheClustersChipsUseItsCollectives) {
  const Catalog catalog =
      load_catalog(kCatalogDir + "/chips.json", kCatalogDir + "/instances.json");
  PlanRequest r = gpt2_on_trn2();
  r.evidence = {parse_evidence(cluster_of_128(), "trn2", "cluster.json")};
  const double grad_bytes = static_cast<double>(r.shape.num_parameters()) * r.precision.grad_bytes;
  bool saw_16 = false, saw_32 = false;
  for (const PlanRow& row : make_plan(catalog, r)) {
    if (!row.planned()) continue;
    EXPECT_EQ(row.evidence, EvidenceKind::kSimulated);
    if (row.chips == 16 && row.tensor_parallel == 1) {
      saw_16 = true;
      const double scale = grad_bytes / (124475904.0 * 4);
      EXPECT_DOUBLE_EQ(row.dp_comm_s, 8.0e-3 * scale);
      EXPECT_DOUBLE_EQ(row.exposed_dp_comm_s, 4.6e-3 * scale);
      EXPECT_NE(row.evidence_detail.find("collectives simulated on 128 cores"), std::string::npos)
          << row.evidence_detail;
    } else {
      saw_32 |= row.chips == 32;
      EXPECT_EQ(row.evidence_detail.find("collectives simulated"), std::string::npos);
    }
  }
  EXPECT_TRUE(saw_16);
  EXPECT_TRUE(saw_32);
}

TEST(PlanSimulatedCluster, ClusterFilesNeedTheirCollectives) {
  json j = cluster_of_128();
  j.erase("gradient_bytes");
  expect_error([&] { parse_evidence(j, "trn2", "c.json"); }, {"c.json", "gradient_bytes"});
  j = cluster_of_128();
  j["exposed_collective_ms"] = 200.0;
  expect_error([&] { parse_evidence(j, "trn2", "c.json"); }, {"exposed_collective_ms"});
  j = cluster_of_128();
  j.erase("simulated_ms_per_step");
  j["ms_per_step"] = 10.0;
  expect_error([&] { parse_evidence(j, "h100", "m.json"); }, {"'cores' 128", "not simulated"});
}

}  // namespace
}  // namespace switchyard::plan
