// The links between simulated NeuronCores, and how long a collective takes on them.
//
// A Trainium cluster has three levels of links: the NeuronCores of one chip, the chips of one
// instance (NeuronLink), and the instances (EFA). A collective over N cores runs as a hierarchical
// ring that spans the levels N needs: a reduce-scatter first among the cores of each chip, then
// among the same-position cores of the instance's chips, then among the same-position cores of the
// instances; an all-gather runs the same levels in reverse. At each level a participant holds
// S_level bytes (S, then S / cores per chip, then S / cores per instance) and a ring of n takes
//
//     (n - 1) / n * S_level / B + (n - 1) * L
//
// (plan/collectives.h's ring formula) with B the bandwidth one participant gets in one direction
// and L the latency of one ring step. An all-reduce is a reduce-scatter then an all-gather.
//
// Each figure carries its source and date; where none is published the model says so and what it
// assumes instead. The simulator's unit is a physical NeuronCore (trn1: NeuronCore-v2, 2 per chip;
// trn2: NeuronCore-v3, 8 per chip, which Trainium2's default LNC=2 presents as 4 logical cores).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace switchyard::dist {

// One level of links, as one participant of a ring at that level sees it.
struct LinkLevel {
  std::string name;            // "cores of a chip", "NeuronLink", "EFA"
  double bytes_per_second = 0; // per participant, one direction
  double latency_s = 0;        // per ring step
  std::string source;          // where the bandwidth and latency come from (URL or page, date)
};

// A trn1 or trn2 instance's links.
struct Interconnect {
  std::string target;          // "trn1" or "trn2"
  std::string instance;        // "trn1.32xlarge", "trn2.48xlarge"
  int cores_per_chip = 0;      // physical NeuronCores
  int chips_per_instance = 0;
  LinkLevel chip;              // between the cores of one chip
  LinkLevel instance_links;    // between the chips of one instance (NeuronLink)
  LinkLevel network;           // between instances (EFA)
  int cores_per_instance() const { return cores_per_chip * chips_per_instance; }
};

// The interconnect of `target` ("trn1" or "trn2"); throws Error for another name.
Interconnect interconnect_of(const std::string& target);

// How N cores spread over the levels: `per_chip` cores on each of `chips` chips of each of
// `instances` instances (N = per_chip * chips_per_instance * instances).
struct CoreLayout {
  int cores = 1;
  int per_chip = 1;            // cores used on each chip
  int chips_per_instance = 1;  // chips used in each instance
  int instances = 1;
  int chips() const { return chips_per_instance * instances; }
};
// N cores packed onto as few chips and instances as hold them: up to a chip's cores on one chip;
// beyond that whole chips, up to an instance's; beyond that whole instances. Throws Error naming
// the sizes that fit when N is none of these (`what` names the flag, e.g. "--cores").
CoreLayout layout_cores(const Interconnect& links, int cores, const char* what);

// One ring of a hierarchical collective: `ring` participants at `level`, each holding `bytes`.
struct RingStage {
  const LinkLevel* level = nullptr;
  int ring = 1;
  double bytes = 0;
  double seconds = 0;  // (ring - 1) / ring * bytes / B + (ring - 1) * L
};
// The rings of a reduce-scatter of `bytes` per core over `layout`, innermost first (levels with a
// ring of 1 are left out). `links` must outlive the result.
std::vector<RingStage> reduce_scatter_stages(const Interconnect& links, const CoreLayout& layout,
                                             double bytes);

// Seconds for a reduce-scatter, an all-gather (the same rings in reverse: the same time) and an
// all-reduce (the two) of `bytes` per core over `layout`. Zero on one core.
double reduce_scatter_seconds(const Interconnect& links, const CoreLayout& layout, double bytes);
double all_gather_seconds(const Interconnect& links, const CoreLayout& layout, double bytes);
double all_reduce_seconds(const Interconnect& links, const CoreLayout& layout, double bytes);

// "trn2.48xlarge links: cores of a chip 181 GB/s + 5 us per step (assumed: ...); ..." for reports.
std::string describe_interconnect(const Interconnect& links);

}  // namespace switchyard::dist
