// Model checkpoints as Hugging Face directories: config.json + model.safetensors (or shards named
// by model.safetensors.index.json).
//
// Tensor names are Hugging Face's: GPT-2's (with or without the "transformer." prefix on load;
// written with it, as transformers' save_pretrained does) and gpt-oss's. Tensors a family marks
// hf_transposed (GPT-2's Conv1D weights, gpt-oss's unquantised experts) are [..., in, out] in the
// file and [..., out, in] in memory. F32, F16 and BF16 tensors are accepted on load, and MXFP4 ones
// (gpt-oss's experts as published: NAME_blocks and NAME_scales), decoded to fp32. Checkpoints are
// written in fp32, or in bf16 and/or with MXFP4 experts (SaveFormat).
//
// A training checkpoint adds training_state.safetensors: AdamW moments, the step, the data loader's
// position and the run's settings, so a resumed run continues exactly where it stopped; when the
// weights file is lossy (bf16 or MXFP4) it also holds the fp32 weights ("parameters"), which a
// resumed run continues from.
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
// How model.safetensors holds the weights. fp32 keeps them exactly. bf16 rounds every tensor to
// nearest even. MXFP4 experts quantises the tensors published as MXFP4 (gpt-oss's expert matrices;
// ParameterTensor::published_mxfp4) per core/mxfp4_quantize.h into NAME_blocks and NAME_scales, in
// the published layout. bf16 with MXFP4 experts is the layout of the published gpt-oss checkpoints,
// config.json's quantization_config included.
struct SaveFormat {
  DType dtype = DType::kF32;   // kF32 or kBF16: every tensor not written as MXFP4
  bool mxfp4_experts = false;
  bool lossy() const { return dtype != DType::kF32 || mxfp4_experts; }
};
// Throws Error unless `model` can be written in `format`: fp32 or bf16, and MXFP4 experts only for
// a model that has them (gpt-oss), with rows that are whole MXFP4 blocks of 32.
void check_save_format(const Model& model, const SaveFormat& format);

// Writes config.json (with `info` as its "switchyard" section) and model.safetensors, as one set.
// Throws Error for a format check_save_format refuses, or a NaN or infinite weight to quantise.
void save_model(const Model& model, const std::string& directory,
                const std::map<std::string, std::string>& info, const SaveFormat& format = {});

struct TrainingState {
  int step = 0;  // optimizer steps completed
  std::map<std::string, std::string> values;  // loader position, rng state, settings
};
// AdamW moments over the whole layout, where the model holds only its own ranges of them
// (data-parallel ranks gather theirs first).
struct OptimizerMoments {
  std::vector<float> m, v;
};
// Writes config.json (with the JSON object `info` as its "switchyard" section), model.safetensors
// (in `format`) and training_state.safetensors (moments, `state`, and the fp32 weights when the
// format is lossy) as one set. The moments are the model's own unless `moments` is given.
void save_training_checkpoint(const Model& model, const std::string& directory, const nlohmann::json& info,
                              const TrainingState& state, const SaveFormat& format = {},
                              const OptimizerMoments* moments = nullptr);
// Loads the moments into `model`, and the fp32 weights where the state holds them (after
// load_weights, they replace the lossy ones), and returns the state. Throws Error if missing or
// inconsistent.
TrainingState load_training_state(Model& model, const std::string& directory);
// The state's values (and "step") without a model. Reads the whole file.
std::map<std::string, std::string> read_training_state_values(const std::string& directory);

}  // namespace switchyard::model
