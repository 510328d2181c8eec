#include "cli/model_source.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>

#include "tokenizer/o200k.h"
#include "tokenizer/tokenize_text.h"
#include "core/error.h"
#include "model/checkpoint.h"

namespace switchyard::cli {

namespace fs = std::filesystem;

namespace {

bool has_gpt2_vocab(const fs::path& dir) {
  return (fs::exists(dir / "encoder.json") && fs::exists(dir / "vocab.bpe")) ||
         (fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt"));
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
    require(source.layers == 0 && source.heads == 0 && source.channels == 0 && source.context == 0 &&
                source.vocab_size == 0,
            "--n-layer/--n-head/--n-embd/--n-positions/--vocab-size change a preset; the checkpoint {} "
            "has its own config.json",
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
    config = model::preset(source.model);
    if (source.layers > 0) config.num_layers = source.layers;
    if (source.heads > 0) config.num_heads = source.heads;
    if (source.channels > 0) config.channels = source.channels;
    if (source.context > 0) config.max_seq_len = source.context;
    if (source.vocab_size > 0) config.vocab_size = source.vocab_size;
    config.validate();
  }
  if (tokenizer_name.empty()) tokenizer_name = config.vocab_size == 256 ? "byte" : "gpt2";
  require(tokenizer_name == "gpt2" || tokenizer_name == "o200k" || tokenizer_name == "byte",
          "unknown tokenizer '{}' (expected gpt2, o200k or byte)", tokenizer_name);
  opened.info["tokenizer"] = tokenizer_name;

  opened.backend = backend::create_backend(source.device);
  backend::Backend* device = opened.backend.get();
  if (source.profile) {
    opened.profiler = std::make_unique<backend::ProfilingBackend>(*opened.backend);
    device = opened.profiler.get();
  }
  opened.model = model::Model::create(*device, config);
  if (opened.from_checkpoint) {
    model::load_weights(*opened.model, source.model);
  } else {
    opened.model->init_random(source.seed);
  }

  if (load_tokenizer) {
    const bool from_model_dir = opened.from_checkpoint && source.vocab_dir.empty();
    if (tokenizer_name == "byte") {
      opened.tokenizer = tokenizer::make_byte_tokenizer();
    } else if (tokenizer_name == "o200k") {
      // A gpt-oss checkpoint ships its tokenizer.json.
      const fs::path shipped = fs::path(source.model) / "tokenizer.json";
      opened.tokenizer = tokenizer::load_o200k_tokenizer(
          from_model_dir && fs::exists(shipped) ? shipped.string() : tokenizer::find_o200k_file(source.vocab_dir));
    } else {
      std::string dir = from_model_dir && has_gpt2_vocab(source.model)
                            ? source.model
                            : tokenizer::find_gpt2_vocab_directory(source.vocab_dir);
      opened.tokenizer = tokenizer::load_gpt2_tokenizer(dir);
    }
    require(opened.tokenizer->vocab_size() <= config.vocab_size,
            "the {} tokenizer has {} tokens but the model's vocabulary is only {}", tokenizer_name,
            opened.tokenizer->vocab_size(), config.vocab_size);
  }
  return opened;
}

void add_model_flags(CLI::App* command, ModelSource& source, bool model_required) {
  auto* model = command->add_option("--model", source.model,
                                    "model preset (gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1558m, tiny) "
                                    "or checkpoint directory (config.json + model.safetensors, or shards and their index)");
  if (model_required) model->required();
  command->add_option("--device", source.device, "backend to run on (see `switchyard devices`)")
      ->capture_default_str();
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
}

}  // namespace switchyard::cli
