// What `plan` and `plan serve` both open: the catalogs and the model's shape.
#pragma once

#include <cstdint>
#include <string>

#include "plan/catalog.h"
#include "plan/workload.h"

namespace switchyard::cli {

// chips.json and instances.json from `dir` (default: the repository's data/catalog), unless the
// files are named on their own.
plan::Catalog open_plan_catalog(const std::string& dir, const std::string& chips_path,
                                const std::string& instances_path);
// The directory published.json is read from.
std::string plan_catalog_dir(const std::string& dir);
// --model: a preset, a checkpoint directory (config.json), or a JSON file holding a generic decoder
// shape (plan/workload.h). `default_seq` receives the model's context (0 if it names none).
plan::ModelShape open_plan_model(const std::string& model, int64_t* default_seq);

}  // namespace switchyard::cli
