// Model checkpoints as Hugging Face directories: config.json + model.safetensors (or shards named
// by model.safetensors.index.json).
//
// Tensor names are Hugging Face's: GPT-2's (with or without the "transformer." prefix on load;
// written with it, as transformers' save_pretrained does) and gpt-oss's. Tensors a family marks
// hf_transposed (GPT-2's Conv1D weights, gpt-oss's unquantised experts) are [..., in, out] in the
// file and [..., out, in] in memory. F32, F16 and BF16 tensors are accepted on load, and MXFP4 ones
// (gpt-oss's experts as published: NAME_blocks and NAME_scales), decoded to fp32.
//
// A training checkpoint adds training_state.safetensors: AdamW moments, the step, the data loader's
// position and the run's settings, so a resumed run continues exactly where it stopped.
//
// Checkpoints are written through FileSetCommit (file_set_commit.h): a crash at any instant leaves
// the previous checkpoint or the new one, whole. Every reader here first finishes or discards a
// commit that a crash interrupted, so it never sees a mix.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/model.h"
#include "model/model_config.h"
#include "model/safetensors.h"
#include "model/safetensors_set.h"

namespace switchyard::model {

// Reads and validates <dir>/config.json. Throws Error naming the file and the problem.
ModelConfig read_config(const std::string& directory);
// Reads <dir>/config.json's "switchyard" section (tokenizer name and other run facts), or an empty
// map if there is none. Values that are not strings come as their JSON text.
std::map<std::string, std::string> read_switchyard_info(const std::string& directory);
// The same section as JSON (an empty object if there is none).
nlohmann::json read_switchyard_section(const std::string& directory);

// The parameter vector (ParameterLayout order) from the tensors named `prefix` + Hugging Face name
// (for an empty prefix, also "transformer." + name). Throws Error for a missing or misshapen tensor.
std::vector<float> read_hf_tensors(const ParameterLayout& layout, const SafetensorsFile& file,
                                   const std::string& prefix);
std::vector<float> read_hf_tensors(const ParameterLayout& layout, const SafetensorsSet& file,
                                   const std::string& prefix);
// One tensor of a layout (in the layout's orientation, as fp32) from `file`. Throws Error as
// read_hf_tensors does.
std::vector<float> read_hf_tensor(const ParameterTensor& t, const SafetensorsSet& file);
// Loads <dir>/model.safetensors, or the shards model.safetensors.index.json names, into `model`,
// whose config must equal the directory's config.json.
// Throws Error for a missing, unknown or wrongly shaped tensor, or a tensor of another dtype.
void load_weights(Model& model, const std::string& directory);
// Writes config.json (with `info` as its "switchyard" section) and model.safetensors (fp32), as one set.
void save_model(const Model& model, const std::string& directory,
                const std::map<std::string, std::string>& info);

struct TrainingState {
  int step = 0;  // optimizer steps completed
  std::map<std::string, std::string> values;  // loader position, rng state, settings
};
// Writes config.json (with the JSON object `info` as its "switchyard" section), model.safetensors
// and training_state.safetensors (moments and `state`) as one set.
void save_training_checkpoint(const Model& model, const std::string& directory, const nlohmann::json& info,
                              const TrainingState& state);
// Loads the moments into `model` and returns the state. Throws Error if missing or inconsistent.
TrainingState load_training_state(Model& model, const std::string& directory);
// The state's values (and "step") without a model. Reads the whole file.
std::map<std::string, std::string> read_training_state_values(const std::string& directory);

}  // namespace switchyard::model
