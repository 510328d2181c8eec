// Opens what the model-using subcommands need from their --model/--device/--tokenizer flags: a
// backend, a model (a preset initialised from a seed, or a checkpoint directory) and its tokenizer.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "backend/profiling_backend.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace CLI {
class App;
}

namespace switchyard::cli {

struct ModelSource {
  std::string model;      // preset name or checkpoint directory
  std::string device = "cpu";  // after parsing: the device --dtype resolved it to (cpu-bf16, ...)
  std::string dtype = "auto";   // --dtype: auto, fp32 or bf16 (backend::device_for_dtype)
  std::string tokenizer;  // "gpt2", "o200k", "byte" or empty (decided by the checkpoint or preset)
  std::string vocab_dir;  // GPT-2 vocabulary directory or o200k file; empty: the usual places
  uint64_t seed = 1337;   // initialisation seed for presets
  // Overrides of a preset's shape (0: keep the preset's value); the second line is gpt-oss's.
  int layers = 0, heads = 0, channels = 0, context = 0, vocab_size = 0;
  int kv_heads = 0, head_dim = 0, experts = 0, experts_per_token = 0, intermediate = 0, window = 0;
  // Tensor-parallel degree (bench generate/prefill on simulator devices): the model opened is the
  // shard one core of the group holds (model/tensor_parallel_shard.h).
  int tensor_parallel = 1;
  // Random gpt-oss weights' expert stacks (bench generate/prefill): "mxfp4" as published, or "bf16".
  std::string expert_weights = "mxfp4";
  // Run the model through a ProfilingBackend that times every kernel call.
  bool profile = false;
  // The command only runs the model forward (generate, chat, eval, bench generate/prefill):
  // gpt-oss then keeps its weights as stored (Model::create_frozen), bf16 and MXFP4 included.
  bool inference_only = false;
};

struct OpenedModel {
  std::unique_ptr<backend::Backend> backend;
  std::unique_ptr<backend::ProfilingBackend> profiler;  // wraps `backend` when source.profile
  std::unique_ptr<model::Model> model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;  // null unless requested
  bool from_checkpoint = false;
  std::map<std::string, std::string> info;  // what to write into config.json's "switchyard" section
  std::string shard_layout;  // with --tensor-parallel: model::describe_shard's sentence
};

// True when `model` names a directory rather than a preset.
bool is_checkpoint_dir(const std::string& model);
// Throws Error naming the problem (unknown preset, missing checkpoint, unknown device, ...).
OpenedModel open_model(const ModelSource& source, bool load_tokenizer);
// The tokenizer of a model opened without one (open_model's load_tokenizer does the same).
std::unique_ptr<tokenizer::Tokenizer> open_tokenizer(const ModelSource& source, const OpenedModel& opened);

// Adds --model, --device, --dtype, --tokenizer, --vocab, --seed and the shape overrides (--n-layer, --n-head,
// --n-embd, --n-positions, --vocab-size; for gpt-oss also --n-kv-head, --head-dim, --experts,
// --experts-per-token, --intermediate, --window) to a subcommand.
void add_model_flags(CLI::App* command, ModelSource& source, bool model_required = true);
// Adds --tensor-parallel and --expert-weights (bench generate and prefill).
void add_tensor_parallel_flag(CLI::App* command, ModelSource& source);

}  // namespace switchyard::cli
