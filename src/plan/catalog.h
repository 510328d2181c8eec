// Hardware and price catalogs for the planner: chips, the instances that hold them, and the
// efficiency (model-FLOPs utilisation) stated per chip family for roofline estimates.
//
// Catalogs are JSON files (data/catalog/chips.json and instances.json in the repository; the user
// may pass others). Every figure is an object {"value", "source", "date"} with an optional "note"
// (used to record where sources disagree), so a number never travels without where it came from.
// Loading validates everything and throws Error naming the file, the entry and the field at fault.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace switchyard::plan {

// One published figure and where it came from.
struct Figure {
  double value = 0;
  std::string source;  // URL or document name
  std::string date;    // when the figure was published or seen (YYYY-MM or YYYY-MM-DD)
  std::string note;    // disagreements between sources, conventions (empty if none)
};

// Model-FLOPs utilisation for a chip family, with its justification. `measured_on` names the chips
// whose published runs the figure comes from: for those chips it is same-chip evidence, for the
// rest of the family it is borrowed from them. Empty when the catalog does not say.
struct FamilyEfficiency {
  std::string family;
  Figure mfu;  // fraction of the dense bf16 peak, e.g. 0.41
  std::vector<std::string> measured_on;
};

struct ChipSpec {
  std::string name;     // catalog key, lower case: "h100", "trn1", ...
  std::string display;  // "NVIDIA H100 SXM5 80GB"
  std::string family;   // key into the family efficiencies: "hopper", "trainium", ...
  Figure bf16_tflops;   // dense (no sparsity)
  std::optional<Figure> fp8_tflops;
  std::optional<Figure> fp32_tflops;
  // Products with MXFP4 weights (blocks of 32 FP4 values with an E8M0 scale) run natively at this
  // rate; absent where the chip has no MXFP4 products (the weights are then decoded to bf16).
  std::optional<Figure> mxfp4_tflops;
  Figure memory_gib;        // device memory per chip
  Figure memory_gbs;        // device memory bandwidth, GB/s
  Figure chip_to_chip_gbs;  // aggregate chip-to-chip bandwidth per chip, GB/s, as published
  bool chip_to_chip_bidirectional = true;  // whether the published figure counts both directions
  std::optional<Figure> power_w;  // board/chip power (TDP) in watts; absent where unpublished
};

// Share of the serving roofline (plan/serving_model.h) a family's chips reach, from published
// serving runs on the chips `measured_on`; the same for the rest of the family, borrowed.
struct ServingFamily {
  std::string family;
  Figure efficiency;  // fraction of the roofline step, e.g. 0.36
  std::vector<std::string> measured_on;
};

struct InstanceSpec {
  std::string name;       // "p5.48xlarge"
  std::string chip;       // key into the chips
  int chips = 0;          // accelerators per instance
  Figure price_per_hour;  // on-demand USD per instance-hour
  std::string region;
  Figure network_gbps;  // instance network bandwidth between instances, Gbit/s
};

class Catalog {
 public:
  std::vector<ChipSpec> chips;
  std::vector<InstanceSpec> instances;
  std::vector<FamilyEfficiency> families;
  std::vector<ServingFamily> serving_families;

  // Throws Error listing the known chips for an unknown name.
  const ChipSpec& chip(const std::string& name) const;
  // Null when the family has no stated efficiency.
  const FamilyEfficiency* family(const std::string& name) const;
  // Null when the family has no serving efficiency.
  const ServingFamily* serving_family(const std::string& name) const;
  std::vector<const InstanceSpec*> instances_of(const std::string& chip) const;
  // Checks cross references (instance -> chip, family measured_on -> chip of that family) and
  // duplicate names; throws Error.
  void validate() const;
};

// Parse catalogs from JSON; `what` names the source in error messages (usually the file path).
// chips.json: {"families": [{"family", "mfu": Figure, "measured_on"?: [chip]}],
//              "serving_families"?: [{"family", "efficiency": Figure, "measured_on": [chip]}],
//              "chips": [ChipSpec fields]}.
// instances.json: {"instances": [InstanceSpec fields]}.
void parse_chips(const nlohmann::json& json, const std::string& what, Catalog& catalog);
void parse_instances(const nlohmann::json& json, const std::string& what, Catalog& catalog);
// Reads a JSON file; throws Error naming the file when it is missing or malformed.
nlohmann::json read_json_file(const std::string& path);
// Loads and validates chips.json and instances.json.
Catalog load_catalog(const std::string& chips_path, const std::string& instances_path);

// The repository's data/catalog directory: $SWITCHYARD_CATALOG_DIR, or found next to the running
// executable (../data/catalog, ../../data/catalog) or under the working directory. Throws Error
// saying where it looked.
std::string default_catalog_dir();

}  // namespace switchyard::plan
