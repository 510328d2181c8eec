#include "dist/simulated_interconnect.h"

#include <fmt/format.h>

#include "core/error.h"

namespace switchyard::dist {

namespace {

constexpr double kGB = 1e9;

// No latency figure is published for any of the three levels. The core and NeuronLink levels
// take the per-step wait the simulator's ring all-reduce kernel assumes and the planner's default
// link latency (backend/neuron/all_reduce_kernel.h, plan/planner.h); EFA takes the planner's
// default network latency.
constexpr double kOnChipLatencyS = 5e-6;
constexpr double kNeuronLinkLatencyS = 5e-6;
constexpr double kEfaLatencyS = 20e-6;

constexpr const char* kSdkPages =
    "AWS Neuron SDK architecture pages (github.com/aws-neuron/aws-neuron-sdk: trn1-arch, "
    "trn2-arch, neuron-core-v2, trainium2), as data/catalog/chips.json and instances.json give "
    "them, seen 2025-11";

// Cores of a chip exchange through the chip's HBM (the simulator's ring kernel reads the
// neighbour's buffer there): no core-to-core figure is published, so a core gets its share of the
// chip's HBM bandwidth, halved because every byte a ring step moves is read once and written once.
LinkLevel on_chip(double hbm_gbs, int cores_per_chip) {
  return {"cores of a chip", hbm_gbs * kGB / cores_per_chip / 2.0, kOnChipLatencyS,
          fmt::format("assumed: no core-to-core figure is published; half a core's share of the "
                      "chip's {:g} GB/s HBM ({}); latency assumed",
                      hbm_gbs, kSdkPages)};
}

// NeuronLink's figure is per chip and does not say whether it counts both directions: taken as
// both (the planner's reading), so one direction is half. The chip's cores run their rings at this
// level side by side and share it.
LinkLevel neuron_link(const char* version, double chip_gbs, int cores_per_chip, const char* note) {
  return {fmt::format("NeuronLink-{}", version), chip_gbs * kGB / 2.0 / cores_per_chip,
          kNeuronLinkLatencyS,
          fmt::format("{:g} GB/s per chip, taken as both directions, shared by its {} cores ({}{}); "
                      "latency assumed (none published)",
                      chip_gbs, cores_per_chip, kSdkPages, note)};
}

// EFA's figure is per instance, in Gbit/s; every core of the instance has its share.
LinkLevel efa(double instance_gbps, int cores_per_instance) {
  return {"EFA", instance_gbps * kGB / 8.0 / cores_per_instance, kEfaLatencyS,
          fmt::format("{:g} Gbit/s per instance shared by its {} cores ({}); latency assumed (none "
                      "published)",
                      instance_gbps, cores_per_instance, kSdkPages)};
}

}  // namespace

Interconnect interconnect_of(const std::string& target) {
  Interconnect links;
  links.target = target;
  links.chips_per_instance = 16;
  if (target == "trn1") {
    links.instance = "trn1.32xlarge";
    links.cores_per_chip = 2;
    links.chip = on_chip(820, 2);
    links.instance_links = neuron_link("v2", 384, 2, "");
    links.network = efa(800, 32);
  } else if (target == "trn2") {
    links.instance = "trn2.48xlarge";
    links.cores_per_chip = 8;  // physical NeuronCore-v3; 4 logical at LNC=2
    links.chip = on_chip(2900, 8);
    links.instance_links =
        neuron_link("v3", 1280, 8, "; the trn2-arch page gives 1,024 GB/s per chip in a 4x4 torus");
    links.network = efa(3200, 128);
  } else {
    fail("no interconnect model for '{}' (known: trn1, trn2)", target);
  }
  return links;
}

CoreLayout layout_cores(const Interconnect& links, int cores, const char* what) {
  const int per_chip = links.cores_per_chip, per_instance = links.cores_per_instance();
  require(cores >= 1, "{} {}: needs at least one core", what, cores);
  CoreLayout layout;
  layout.cores = cores;
  if (cores <= per_chip) {
    layout.per_chip = cores;
  } else if (cores <= per_instance) {
    require(cores % per_chip == 0,
            "{} {}: more cores than one {} chip holds ({}) must fill whole chips: {}, {}, {}, "
            "... up to {} (one {})",
            what, cores, links.target, per_chip, per_chip, 2 * per_chip, 3 * per_chip,
            per_instance, links.instance);
    layout.per_chip = per_chip;
    layout.chips_per_instance = cores / per_chip;
  } else {
    require(cores % per_instance == 0,
            "{} {}: more cores than one {} holds ({}) must fill whole instances: {}, {}, {}, ...",
            what, cores, links.instance, per_instance, per_instance, 2 * per_instance,
            3 * per_instance);
    layout.per_chip = per_chip;
    layout.chips_per_instance = links.chips_per_instance;
    layout.instances = cores / per_instance;
  }
  return layout;
}

std::vector<RingStage> reduce_scatter_stages(const Interconnect& links, const CoreLayout& layout,
                                             double bytes) {
  require(bytes >= 0, "a collective of {} bytes", bytes);
  std::vector<RingStage> stages;
  double held = bytes;  // what each participant holds entering the level
  const std::pair<const LinkLevel*, int> levels[] = {{&links.chip, layout.per_chip},
                                                     {&links.instance_links, layout.chips_per_instance},
                                                     {&links.network, layout.instances}};
  for (const auto& [level, ring] : levels) {
    if (ring == 1) continue;
    const double steps = static_cast<double>(ring - 1);
    const double seconds = steps / static_cast<double>(ring) * held / level->bytes_per_second +
                           steps * level->latency_s;
    stages.push_back({level, ring, held, seconds});
    held /= ring;
  }
  return stages;
}

double reduce_scatter_seconds(const Interconnect& links, const CoreLayout& layout, double bytes) {
  double seconds = 0;
  for (const RingStage& stage : reduce_scatter_stages(links, layout, bytes)) seconds += stage.seconds;
  return seconds;
}

double all_gather_seconds(const Interconnect& links, const CoreLayout& layout, double bytes) {
  return reduce_scatter_seconds(links, layout, bytes);
}

double all_reduce_seconds(const Interconnect& links, const CoreLayout& layout, double bytes) {
  return 2.0 * reduce_scatter_seconds(links, layout, bytes);
}

std::string describe_interconnect(const Interconnect& links) {
  std::string text = fmt::format("{} links (per core, one direction):", links.instance);
  for (const LinkLevel* level : {&links.chip, &links.instance_links, &links.network}) {
    text += fmt::format(" {} {:.3g} GB/s + {:g} us per ring step;", level->name,
                        level->bytes_per_second / kGB, level->latency_s * 1e6);
  }
  text.pop_back();
  return text;
}

}  // namespace switchyard::dist
