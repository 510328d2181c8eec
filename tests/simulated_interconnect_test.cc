// The simulated NeuronCore interconnect: its collective times are the ring formulas of
// plan/collectives.h, level by level, and its core layouts are the ones an instance can hold.
#include "dist/simulated_interconnect.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "expect_error.h"
#include "plan/collectives.h"

namespace switchyard::dist {
namespace {

TEST(SimulatedInterconnect, OneChipAllReduceIsTheRingFormulaExactly) {
  for (const char* target : {"trn1", "trn2"}) {
    const Interconnect links = interconnect_of(target);
    for (int cores = 2; cores <= links.cores_per_chip; ++cores) {
      const CoreLayout layout = layout_cores(links, cores, "--cores");
      for (double bytes : {16.0, 1e6, 497e6}) {
        EXPECT_EQ(all_reduce_seconds(links, layout, bytes),
                  plan::ring_allreduce_seconds(bytes, cores, links.chip.bytes_per_second,
                                               links.chip.latency_s))
            << target << " " << cores << " cores, " << bytes << " bytes";
        EXPECT_EQ(reduce_scatter_seconds(links, layout, bytes),
                  plan::ring_reduce_scatter_seconds(bytes, cores, links.chip.bytes_per_second,
                                                    links.chip.latency_s));
        // By hand: 2 (n - 1) / n * S / B + 2 (n - 1) L.
        const double n = cores;
        EXPECT_DOUBLE_EQ(all_reduce_seconds(links, layout, bytes),
                         2 * (n - 1) / n * bytes / links.chip.bytes_per_second +
                             2 * (n - 1) * links.chip.latency_s);
      }
    }
  }
}

TEST(SimulatedInterconnect, HierarchicalRingsAddTheirLevels) {
  const Interconnect links = interconnect_of("trn2");
  const double S = 497e6;
  // Two instances of trn2: 8 cores a chip, 16 chips, 2 instances.
  const CoreLayout layout = layout_cores(links, 256, "--cores");
  EXPECT_EQ(layout.per_chip, 8);
  EXPECT_EQ(layout.chips_per_instance, 16);
  EXPECT_EQ(layout.instances, 2);
  const double expected =
      plan::ring_reduce_scatter_seconds(S, 8, links.chip.bytes_per_second, links.chip.latency_s) +
      plan::ring_reduce_scatter_seconds(S / 8, 16, links.instance_links.bytes_per_second,
                                        links.instance_links.latency_s) +
      plan::ring_reduce_scatter_seconds(S / 128, 2, links.network.bytes_per_second,
                                        links.network.latency_s);
  EXPECT_DOUBLE_EQ(reduce_scatter_seconds(links, layout, S), expected);
  EXPECT_DOUBLE_EQ(all_gather_seconds(links, layout, S), expected);
  EXPECT_DOUBLE_EQ(all_reduce_seconds(links, layout, S), 2 * expected);
  // A chip's cores share its NeuronLink: the level moves S at the chip's one-way bandwidth.
  EXPECT_DOUBLE_EQ(links.instance_links.bytes_per_second * 8, 1280e9 / 2);
  EXPECT_DOUBLE_EQ(links.network.bytes_per_second * 128, 3200e9 / 8);
  // More levels never make a collective faster; one core has none.
  EXPECT_EQ(all_reduce_seconds(links, layout_cores(links, 1, "--cores"), S), 0.0);
  EXPECT_LT(all_reduce_seconds(links, layout_cores(links, 8, "--cores"), S),
            all_reduce_seconds(links, layout_cores(links, 64, "--cores"), S));
  EXPECT_LT(all_reduce_seconds(links, layout_cores(links, 128, "--cores"), S),
            all_reduce_seconds(links, layout, S));
}

TEST(SimulatedInterconnect, LayoutsFillChipsThenInstances) {
  const Interconnect trn1 = interconnect_of("trn1");
  EXPECT_EQ(layout_cores(trn1, 2, "--cores").chips(), 1);
  EXPECT_EQ(layout_cores(trn1, 32, "--cores").chips(), 16);
  EXPECT_EQ(layout_cores(trn1, 64, "--cores").instances, 2);
  expect_error([&] { layout_cores(trn1, 3, "--cores"); }, {"must fill whole chips"});
  expect_error([&] { layout_cores(trn1, 48, "--cores"); }, {"must fill whole instances: 32, 64"});
  expect_error([&] { layout_cores(trn1, 0, "--cores"); }, {"at least one core"});
  expect_error([&] { interconnect_of("h100"); }, {"no interconnect model for 'h100'"});
  // Every figure says where it comes from.
  for (const LinkLevel* level : {&trn1.chip, &trn1.instance_links, &trn1.network}) {
    EXPECT_NE(level->source.find("aws-neuron-sdk"), std::string::npos) << level->name;
    EXPECT_GT(level->bytes_per_second, 0);
  }
  EXPECT_NE(trn1.chip.source.find("assumed"), std::string::npos);
}

}  // namespace
}  // namespace switchyard::dist
