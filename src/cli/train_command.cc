// switchyard train: trains a model (a preset from scratch, or a checkpoint) on a text file or shards.
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "cli/model_source.h"
#include "core/error.h"
#include "data/text_to_shards.h"
#include "model/checkpoint.h"
#include "train/trainer.h"

namespace switchyard::cli {

namespace fs = std::filesystem;

namespace {

struct TrainFlags {
  ModelSource source;
  std::vector<std::string> data;
  std::string val_data;
  double val_fraction = 0.1;
  train::TrainOptions options;
};

void run_train(TrainFlags& flags) {
  train::TrainOptions& o = flags.options;
  require(!(o.resume && fs::exists(fs::path(o.out_dir) / "config.json") == false),
          "--resume: no checkpoint in {} (config.json is missing)", o.out_dir);
  if (o.resume) flags.source.model = o.out_dir;  // the checkpoint decides the architecture
  OpenedModel opened = open_model(flags.source, /*load_tokenizer=*/true);
  o.model_info = opened.info;
  const model::GptConfig& c = opened.model->config();
  // Shape mistakes are reported before the (possibly long) tokenisation of the data.
  require(o.seq <= c.max_seq_len, "--seq {} exceeds the model's context of {} tokens", o.seq, c.max_seq_len);

  // A text file is tokenised once into out/data/{train,val}.bin; shards are used as they are.
  bool is_text = flags.data.size() == 1 && !flags.data[0].ends_with(".bin");
  if (is_text) {
    fs::path data_dir = fs::path(o.out_dir) / "data";
    data::PreparedData prepared;
    if (o.resume && fs::exists(data_dir / "train.bin")) {
      prepared.train_path = (data_dir / "train.bin").string();
      prepared.val_path = (data_dir / "val.bin").string();
    } else {
      prepared = data::prepare_text(flags.data[0], *opened.tokenizer, data_dir.string(), flags.val_fraction);
      std::fprintf(stderr, "tokenised %s with the %s tokenizer: %zu training and %zu validation tokens\n",
                   flags.data[0].c_str(), opened.tokenizer->name().c_str(), prepared.train_tokens,
                   prepared.val_tokens);
    }
    o.train_shards = {prepared.train_path};
    if (o.val_shard.empty()) o.val_shard = prepared.val_path;
  } else {
    o.train_shards = flags.data;
    o.val_shard = flags.val_data;
  }
  std::fprintf(stderr, "model: %d layers, %d heads, %d channels, vocabulary %d, context %d (%.2fM parameters) on %s\n",
               c.num_layers, c.num_heads, c.channels, c.vocab_size, c.max_seq_len,
               c.num_parameters() / 1e6, opened.backend->description().c_str());
  train::train(*opened.model, o);
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto flags = std::make_shared<TrainFlags>();
  CLI::App* cmd = app.add_subcommand("train", "train a model on a text file or token shards");
  add_model_flags(cmd, flags->source, /*model_required=*/false);
  train::TrainOptions& o = flags->options;
  cmd->add_option("--data", flags->data, "a UTF-8 text file, or one or more .bin token shards")->required();
  cmd->add_option("--val-data", flags->val_data, "validation .bin shard (text input splits its own)");
  cmd->add_option("--val-fraction", flags->val_fraction, "share of a text file kept for validation")
      ->check(CLI::Range(0.0, 0.5))->capture_default_str();
  cmd->add_option("--out", o.out_dir, "directory for checkpoints, log.jsonl and loss.svg")->required();
  cmd->add_option("--batch", o.batch, "sequences per micro-batch")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  cmd->add_option("--seq", o.seq, "tokens per sequence")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_option("--grad-accum", o.grad_accum, "micro-batches per optimizer step")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  cmd->add_option("--steps", o.steps, "optimizer steps")->check(CLI::Range(1, 1 << 30))->capture_default_str();
  cmd->add_option("--lr", o.lr, "peak learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--min-lr-ratio", o.min_lr_ratio, "final learning rate as a share of the peak")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--warmup", o.warmup, "linear warmup steps")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--weight-decay", o.adamw.weight_decay, "AdamW weight decay for matrices")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--beta1", o.adamw.beta1, "AdamW beta1")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  cmd->add_option("--beta2", o.adamw.beta2, "AdamW beta2")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  cmd->add_option("--clip", o.clip, "global gradient-norm clip (0: off)")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--eval-every", o.eval_every, "steps between validation losses (0: at the end only)")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--eval-windows", o.eval_windows, "validation windows per evaluation")->check(CLI::Range(1, 1 << 30))->capture_default_str();
  cmd->add_option("--checkpoint-every", o.checkpoint_every, "steps between checkpoints (0: at the end only)")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--time-limit", o.time_limit_s, "stop after this many seconds, with a checkpoint (0: none)")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--log-every", o.log_every, "progress line cadence when stderr is not a terminal")->check(CLI::Range(1, 1 << 30))->capture_default_str();
  cmd->add_flag("--resume", o.resume, "continue the run checkpointed in --out");
  cmd->callback([flags, cmd] {
    flags->options.seed = flags->source.seed;
    if (flags->source.model.empty() && !flags->options.resume) {
      throw CLI::RequiredError("--model");
    }
    run_train(*flags);
  });
}

}  // namespace switchyard::cli
