#include "cli/model_source.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "tokenizer/o200k.h"
#include "tokenizer/tokenize_text.h"
#include "core/error.h"
#include "model/checkpoint.h"
#include "model/tensor_parallel_shard.h"

namespace switchyard::cli {

namespace fs = std::filesystem;

namespace {

bool has_gpt2_vocab(const fs::path& dir) {
  return (fs::exists(dir / "encoder.json") && fs::exists(dir / "vocab.bpe")) ||
         (fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt"));
}

bool overrides_shape(const ModelSource& s) {
  return s.layers || s.heads || s.channels || s.context || s.vocab_size || s.kv_heads ||
         s.head_dim || s.experts || s.experts_per_token || s.intermediate || s.window;
}

// A preset with the shape overrides applied. gpt-oss's own fields apply to gpt-oss presets only;
// a changed layer count keeps the published pattern (sliding even layers, full odd ones).
model::ModelConfig preset_with_overrides(const ModelSource& source) {
  model::ModelConfig config = model::preset(source.model);
  if (source.layers > 0) config.num_layers = source.layers;
  if (source.heads > 0) config.num_heads = source.heads;
  if (source.channels > 0) config.channels = source.channels;
  if (source.context > 0) config.max_seq_len = source.context;
  if (source.vocab_size > 0) config.vocab_size = source.vocab_size;
  const bool moe_flags = source.kv_heads || source.head_dim || source.experts ||
                         source.experts_per_token || source.intermediate || source.window;
  require(config.is_gpt_oss() || !moe_flags,
          "--n-kv-head/--head-dim/--experts/--experts-per-token/--intermediate/--window change a "
          "gpt-oss preset; '{}' is a {} model",
          source.model, config.family);
  if (source.kv_heads > 0) config.num_kv_heads = source.kv_heads;
  if (source.head_dim > 0) config.head_dim = source.head_dim;
  if (source.experts > 0) config.num_experts = source.experts;
  if (source.experts_per_token > 0) config.experts_per_token = source.experts_per_token;
  if (source.intermediate > 0) config.intermediate = source.intermediate;
  if (source.window > 0) config.sliding_window = source.window;
  if (config.is_gpt_oss()) {
    config.layer_types.clear();
    for (int l = 0; l < config.num_layers; ++l) {
      config.layer_types.push_back(l % 2 == 0 ? "sliding_attention" : "full_attention");
    }
    // Special-token ids beyond a shrunken vocabulary do not exist.
    if (config.eos_token_id >= config.vocab_size) config.eos_token_id = -1;
    if (config.pad_token_id >= config.vocab_size) config.pad_token_id = -1;
  }
  config.validate();
  return config;
}

// The tokenizer a model uses when none is named: o200k for gpt-oss's vocabulary, bytes for 256
// tokens, GPT-2's otherwise.
std::string default_tokenizer(const model::ModelConfig& config) {
  if (config.vocab_size == 256) return "byte";
  if (config.is_gpt_oss() && config.vocab_size >= tokenizer::kO200kVocabSize) return "o200k";
  return "gpt2";
}

}  // namespace

bool is_checkpoint_dir(const std::string& model) {
  return model.find('/') != std::string::npos || fs::is_directory(model);
}

OpenedModel open_model(const ModelSource& source, bool load_tokenizer) {
  require(!source.model.empty(), "no model given: pass --model with a preset ({}) or a checkpoint directory",
          fmt::join(model::preset_names(), ", "));
  OpenedModel opened;
  model::ModelConfig config;
  std::string tokenizer_name = source.tokenizer;
  if (is_checkpoint_dir(source.model)) {
    require(!overrides_shape(source),
            "the shape flags (--n-layer, --n-head, ...) change a preset; the checkpoint {} has its "
            "own config.json",
            source.model);
    config = model::read_config(source.model);
    opened.from_checkpoint = true;
    auto info = model::read_switchyard_info(source.model);
    if (tokenizer_name.empty() && info.contains("tokenizer")) tokenizer_name = info["tokenizer"];
  } else {
    const std::vector<std::string> presets = model::preset_names();
    require(std::find(presets.begin(), presets.end(), source.model) != presets.end(),
            "unknown model preset '{}' (known: {}), and no checkpoint directory of that name",
            source.model, fmt::join(presets, ", "));
    config = preset_with_overrides(source);
  }
  if (tokenizer_name.empty()) tokenizer_name = default_tokenizer(config);
  require(tokenizer_name == "gpt2" || tokenizer_name == "o200k" || tokenizer_name == "byte",
          "unknown tokenizer '{}' (expected gpt2, o200k or byte)", tokenizer_name);
  opened.info["tokenizer"] = tokenizer_name;

  opened.backend = backend::create_backend(source.device);
  require(source.expert_weights == "mxfp4" || (!opened.from_checkpoint && config.is_gpt_oss()),
          "--expert-weights chooses the format of a gpt-oss preset's random experts; {} {}",
          source.model, opened.from_checkpoint ? "is a checkpoint with its own" : "has no experts");
  if (source.tensor_parallel > 1) {
    require(!opened.from_checkpoint,
            "--tensor-parallel times one core's shard of a preset with random weights; slicing the "
            "checkpoint {} is not supported",
            source.model);
    require(opened.backend->simulator() != nullptr,
            "--tensor-parallel times one core's shard on a simulator device (trn1-sim, trn2-sim), "
            "not '{}'",
            source.device);
    const bool mxfp4 = source.expert_weights == "mxfp4";
    const model::ModelConfig shard = model::tensor_parallel_shard(config, source.tensor_parallel, mxfp4);
    opened.shard_layout = model::describe_shard(config, shard, source.tensor_parallel, mxfp4);
    config = shard;
  }
  backend::Backend* device = opened.backend.get();
  if (source.profile) {
    opened.profiler = std::make_unique<backend::ProfilingBackend>(*opened.backend);
    device = opened.profiler.get();
  }
  if (source.inference_only && config.is_gpt_oss()) {
    opened.model = model::Model::create_frozen(
        *device, config,
        {.checkpoint = opened.from_checkpoint ? source.model : std::string(),
         .seed = source.seed,
         .random_expert_dtype = source.expert_weights == "bf16" ? DType::kBF16 : DType::kMXFP4});
  } else {
    opened.model = model::Model::create(*device, config);
    if (opened.from_checkpoint) {
      model::load_weights(*opened.model, source.model);
    } else {
      opened.model->init_random(source.seed);
    }
  }

  if (load_tokenizer) opened.tokenizer = open_tokenizer(source, opened);
  return opened;
}

std::unique_ptr<tokenizer::Tokenizer> open_tokenizer(const ModelSource& source,
                                                     const OpenedModel& opened) {
  const std::string tokenizer_name = opened.info.at("tokenizer");
  const model::ModelConfig& config = opened.model->config();
  std::unique_ptr<tokenizer::Tokenizer> tok;
  const bool from_model_dir = opened.from_checkpoint && source.vocab_dir.empty();
  if (tokenizer_name == "byte") {
    tok = tokenizer::make_byte_tokenizer();
  } else if (tokenizer_name == "o200k") {
    // A gpt-oss checkpoint ships its tokenizer.json.
    const fs::path shipped = fs::path(source.model) / "tokenizer.json";
    tok = tokenizer::load_o200k_tokenizer(
        from_model_dir && fs::exists(shipped) ? shipped.string() : tokenizer::find_o200k_file(source.vocab_dir));
  } else {
    std::string dir = from_model_dir && has_gpt2_vocab(source.model)
                          ? source.model
                          : tokenizer::find_gpt2_vocab_directory(source.vocab_dir);
    tok = tokenizer::load_gpt2_tokenizer(dir);
  }
  require(tok->vocab_size() <= config.vocab_size,
          "the {} tokenizer has {} tokens but the model's vocabulary is only {}", tokenizer_name,
          tok->vocab_size(), config.vocab_size);
  return tok;
}

void add_model_flags(CLI::App* command, ModelSource& source, bool model_required) {
  auto* model = command->add_option("--model", source.model,
                                    fmt::format("model preset ({}) or checkpoint directory (config.json + "
                                                "model.safetensors, or shards and their index)",
                                                fmt::join(model::preset_names(), ", ")));
  if (model_required) model->required();
  command->add_option("--device", source.device, "backend to run on (see `switchyard devices`)")
      ->capture_default_str();
  command
      ->add_option("--dtype", source.dtype,
                   "precision: fp32, bf16 (mixed: fp32 master weights, reductions and losses) or "
                   "auto (the device's default; for cpu, bf16 where the CPU computes it natively, "
                   "see `switchyard devices`)")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}))
      ->capture_default_str();
  // Everything after parsing (checkpoint settings, same-run checks, the backend) sees the device
  // the run takes; a device that contradicts --dtype is a mistake in the command line.
  command->parse_complete_callback([&source] {
    try {
      source.device = backend::device_for_dtype(source.device, source.dtype);
    } catch (const Error& e) {
      throw CLI::ValidationError("--dtype", e.what());
    }
  });
  command->add_option("--tokenizer", source.tokenizer, "gpt2, o200k or byte (default: from the model)")
      ->check(CLI::IsMember({"gpt2", "o200k", "byte"}));
  command->add_option("--vocab", source.vocab_dir,
                      "gpt2: directory with encoder.json + vocab.bpe (default: $SWITCHYARD_GPT2_VOCAB "
                      "or ../shared/data/gpt2); o200k: ranks file or tokenizer.json (default: the "
                      "checkpoint's tokenizer.json, $SWITCHYARD_O200K or "
                      "../shared/data/o200k/o200k_base.tiktoken)");
  command->add_option("--seed", source.seed, "seed for a preset's random initialisation")
      ->capture_default_str();
  // Any other size: start from a preset and change its shape.
  command->add_option("--n-layer", source.layers, "override the preset's number of layers")->check(CLI::Range(1, 4096));
  command->add_option("--n-head", source.heads, "override the preset's number of heads")->check(CLI::Range(1, 4096));
  command->add_option("--n-embd", source.channels, "override the preset's channels")->check(CLI::Range(1, 1 << 16));
  command->add_option("--n-positions", source.context, "override the preset's context length")->check(CLI::Range(1, 1 << 20));
  command->add_option("--vocab-size", source.vocab_size, "override the preset's vocabulary size")->check(CLI::Range(1, 1 << 22));
  command->add_option("--n-kv-head", source.kv_heads, "gpt-oss: override the key-value heads")->check(CLI::Range(1, 4096));
  command->add_option("--head-dim", source.head_dim, "gpt-oss: override the head size")->check(CLI::Range(2, 4096));
  command->add_option("--experts", source.experts, "gpt-oss: override the experts per layer")->check(CLI::Range(1, 4096));
  command->add_option("--experts-per-token", source.experts_per_token, "gpt-oss: override the experts each token runs")->check(CLI::Range(1, 4096));
  command->add_option("--intermediate", source.intermediate, "gpt-oss: override each expert's inner width")->check(CLI::Range(1, 1 << 16));
  command->add_option("--window", source.window, "gpt-oss: override the sliding layers' window")->check(CLI::Range(1, 1 << 20));
}

void add_tensor_parallel_flag(CLI::App* command, ModelSource& source) {
  command
      ->add_option("--tensor-parallel", source.tensor_parallel,
                   "simulator devices, gpt-oss presets: time the shard one core of a group of this "
                   "many cores holds (heads, expert widths and vocabulary split; weights random), "
                   "with the group's all-reduces")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  command
      ->add_option("--expert-weights", source.expert_weights,
                   "gpt-oss presets (random weights): the experts' format, mxfp4 as published or bf16")
      ->check(CLI::IsMember({"mxfp4", "bf16"}))
      ->capture_default_str();
}

}  // namespace switchyard::cli
