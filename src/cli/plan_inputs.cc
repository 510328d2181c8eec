#include "cli/plan_inputs.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/model_source.h"
#include "model/checkpoint.h"

namespace switchyard::cli {

plan::Catalog open_plan_catalog(const std::string& dir, const std::string& chips_path,
                                const std::string& instances_path) {
  std::string base = dir;
  if (base.empty() && (chips_path.empty() || instances_path.empty())) {
    base = plan::default_catalog_dir();
  }
  return plan::load_catalog(chips_path.empty() ? base + "/chips.json" : chips_path,
                            instances_path.empty() ? base + "/instances.json" : instances_path);
}

std::string plan_catalog_dir(const std::string& dir) {
  return dir.empty() ? plan::default_catalog_dir() : dir;
}

plan::ModelShape open_plan_model(const std::string& model, int64_t* default_seq) {
  namespace fs = std::filesystem;
  *default_seq = 0;
  if (fs::is_regular_file(model)) {
    nlohmann::json json = plan::read_json_file(model);
    plan::ModelShape shape = plan::shape_from_json(json, model);
    if (json.contains("seq_len") && json["seq_len"].is_number_integer()) {
      *default_seq = json["seq_len"].get<int64_t>();
    }
    return shape;
  }
  model::ModelConfig config =
      is_checkpoint_dir(model) ? model::read_config(model) : model::preset(model);
  *default_seq = config.max_seq_len;
  return plan::shape_from_config(config, model);
}

}  // namespace switchyard::cli
