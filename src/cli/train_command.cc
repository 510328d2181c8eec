// switchyard train: trains a model (a preset from scratch, or a checkpoint) on a text file or shards.
//
// SIGINT or SIGTERM stops the run after the step in progress with a checkpoint, and exits 130 or 143
// with the command that continues it; `train --out DIR --resume` takes the run's settings from its
// checkpoint (train_settings.h).
//
// Started by mpirun or srun as N processes, it trains data-parallel (train/data_parallel.h): rank 0
// prepares the data, prints and writes; a rank that dies stops the others (dist/peer_watch.h).
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "backend/simulated_span.h"
#include "cli/commands.h"
#include "cli/model_source.h"
#include "cli/progress_line.h"
#include "cli/simulated_cluster_report.h"
#include "cli/stop_signals.h"
#include "cli/train_settings.h"
#include "core/error.h"
#include "data/text_to_shards.h"
#include "dist/job.h"
#include "dist/peer_watch.h"
#include "model/checkpoint.h"
#include "model/file_set_commit.h"
#include "train/loss_curve.h"
#include "train/trainer.h"

namespace switchyard::cli {

namespace fs = std::filesystem;

namespace {

// How this program was started (argv[0]), for a command line the user can paste.
std::string program_name() {
  std::ifstream cmdline("/proc/self/cmdline", std::ios::binary);
  std::string first;
  if (std::getline(cmdline, first, '\0') && !first.empty()) return first;
  return "switchyard";
}

// `text` as one word for a POSIX shell.
std::string shell_quote(const std::string& text) {
  const bool plain = !text.empty() && text.find_first_not_of(
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-./=:,+@%") == std::string::npos;
  if (plain) return text;
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// Fills o.train_shards and o.val_shard: a text file is tokenised once into out/data/{train,val}.bin
// (a resumed run finds them there); shards are used as they are.
// Of several ranks, rank 0 (`writer`) tokenises; the others wait for it at the barrier and take
// its files.
void prepare_data(TrainFlags& flags, const tokenizer::Tokenizer& tokenizer, dist::Communicator& comm) {
  train::TrainOptions& o = flags.options;
  const bool is_text = flags.data.size() == 1 && !flags.data[0].ends_with(".bin");
  if (!is_text) {
    o.train_shards = flags.data;
    o.val_shard = flags.val_data;
    return;
  }
  fs::path data_dir = fs::path(o.out_dir) / "data";
  data::PreparedData prepared;
  const bool reuse = o.resume && fs::exists(data_dir / "train.bin");
  if (comm.rank() == 0 && !reuse) {
    prepared = data::prepare_text(flags.data[0], tokenizer, data_dir.string(), flags.val_fraction);
    std::fprintf(stderr, "tokenised %s with the %s tokenizer: %zu training and %zu validation tokens\n",
                 flags.data[0].c_str(), tokenizer.name().c_str(), prepared.train_tokens, prepared.val_tokens);
  } else {
    prepared.train_path = (data_dir / "train.bin").string();
    prepared.val_path = (data_dir / "val.bin").string();
  }
  if (comm.size() > 1) comm.barrier();  // the other ranks read what rank 0 wrote
  o.train_shards = {prepared.train_path};
  o.val_shard = prepared.val_path;
}

// The run's events as the CLI shows them: a live progress line (started at the first step, whose
// report says where a resumed run began), validations and notes on lines of their own.
class TrainDisplay {
 public:
  explicit TrainDisplay(int every) : every_(every) {}
  train::TrainEvents events() {
    train::TrainEvents e;
    e.step = [this](const train::StepReport& r) { on_step(r); };
    e.evaluated = [this](const train::EvalReport& r) {
      finish();
      std::fprintf(stderr, "step %d: validation loss %.4f (perplexity %.2f, %zu tokens)\n", r.step,
                   r.loss, r.perplexity, r.tokens);
    };
    e.note = [this](const std::string& text) {
      finish();
      std::fprintf(stderr, "%s\n", text.c_str());
    };
    return e;
  }
  void finish() {
    if (line_) line_->finish();
  }

 private:
  void on_step(const train::StepReport& r) {
    if (!line_) line_.emplace(r.first_step, r.total, every_, r.ms / 1000.0);
    std::string text = fmt::format("loss {:.4f} | lr {:.2e} | norm {:.3f} | {:.0f} ms", r.loss,
                                   r.learning_rate, r.grad_norm, r.ms);
    if (r.simulated) {
      text += fmt::format(" | sim {:.2f} ms, {:.0f} tok/s/core", r.simulated->ms,
                          r.simulated->tokens_per_s_per_core);
    }
    line_->update(r.step - 1, r.tokens * (r.step - r.first_step), text);
  }

  int every_;
  std::optional<ProgressLine> line_;
};

void report_summary(const train::TrainResult& result, const train::TrainOptions& o,
                    const model::Model& model) {
  const int steps = result.steps_done - result.first_step;
  std::fprintf(stderr, "trained %d steps in %s (%.0f tokens/s); checkpoint in %s\n", steps,
               format_duration(result.seconds).c_str(), result.tokens_per_s, o.out_dir.c_str());
  const std::optional<backend::SimulationReport> report = backend::simulation_report(model.backend());
  if (!report || steps <= 0 || result.simulated_seconds <= 0) return;
  const double tokens = static_cast<double>(o.batch) * o.seq * o.grad_accum * steps;
  const double per_core = tokens / result.simulated_seconds;
  std::fprintf(stderr, "simulated %s %s: %.3f s for those steps, %.0f tokens/s per core, %.0f per chip (%d cores)%s\n",
               report->target.c_str(), report->core.c_str(), result.simulated_seconds, per_core,
               per_core * report->cores_per_chip, report->cores_per_chip,
               backend::describe_unsimulated(report->unsimulated_ops).c_str());
}

// Runs the training as rank comm.rank() of comm.size(); returns the process's exit status (0, or
// 128 + the signal that stopped it).
int train_as_rank(TrainFlags& flags, const std::set<std::string>& given, dist::Communicator& comm) {
  train::TrainOptions& o = flags.options;
  const bool first = comm.rank() == 0;  // the rank that prints
  make_paths_absolute(flags);
  if (o.resume) {
    // A checkpoint committed just before a crash counts; rank 0 finishes committing it.
    if (first) model::recover_file_set(o.out_dir);
    if (comm.size() > 1) comm.barrier();
    require(fs::exists(fs::path(o.out_dir) / "config.json"), "--resume: no checkpoint in {} (config.json is missing)",
            o.out_dir);
    ResumePlan plan = take_recorded_settings(flags, given, model::read_switchyard_section(o.out_dir), o.out_dir);
    if (plan.complete) {
      // A run killed after its last checkpoint may not have drawn its loss curve yet.
      if (!first) return 0;
      train::write_loss_curve((fs::path(o.out_dir) / "log.jsonl").string(),
                              (fs::path(o.out_dir) / "loss.svg").string());
      std::fprintf(stderr, "the run in %s is complete (step %d of %d); give --steps above %d to train it further\n",
                   o.out_dir.c_str(), plan.checkpoint_step, o.steps, plan.checkpoint_step);
      return 0;
    }
    for (const std::string& note : plan.notes) {
      if (first) std::fprintf(stderr, "%s\n", note.c_str());
    }
  } else if (flags.data.empty()) {
    throw CLI::RequiredError("--data");
  }
  ModelSource source = flags.source;
  if (o.resume) {  // the checkpoint decides the architecture; the device and tokenizer are the run's
    source.model = o.out_dir;
    source.layers = source.heads = source.channels = source.context = source.vocab_size = 0;
  }
  o.seed = flags.source.seed;
  o.run_settings = record_settings(flags);
  o.save_format = save_format(flags);

  OpenedModel opened = open_model(source, /*load_tokenizer=*/true);
  o.model_info = opened.info;
  const model::ModelConfig& c = opened.model->config();
  // Shape mistakes are reported before the (possibly long) tokenisation of the data.
  require(o.seq <= c.max_seq_len, "--seq {} exceeds the model's context of {} tokens", o.seq, c.max_seq_len);
  model::check_save_format(*opened.model, o.save_format);
  if (given.contains("cores") || flags.cores > 1) {  // a resumed run keeps its recorded --cores
    require(comm.size() == 1,
            "--cores simulates a cluster in one process; run it without mpirun (this job has {} ranks)",
            comm.size());
    std::fprintf(stderr, "%s\n", describe_training_cluster(source, *opened.backend, o.batch, o.seq,
                                                           o.grad_accum, flags.cores).c_str());
  }
  prepare_data(flags, *opened.tokenizer, comm);
  const std::string experts =
      c.num_experts > 0 ? fmt::format(", {} experts (top {})", c.num_experts, c.experts_per_token) : "";
  if (first) {
    std::fprintf(stderr, "model: %s, %d layers, %d heads, %d channels%s, vocabulary %d, context %d (%.2fM parameters) on %s\n",
               c.family.c_str(), c.num_layers, c.num_heads, c.channels, experts.c_str(), c.vocab_size,
               c.max_seq_len, opened.model->shape().num_parameters() / 1e6,
               opened.backend->description().c_str());
  }
  if (first && comm.size() > 1) {
    std::fprintf(stderr, "data-parallel over %d ranks (%s): batch %d per rank, optimizer state sharded\n",
                 comm.size(), comm.description().c_str(), o.batch / std::max(1, comm.size()));
  }

  StopSignals signals;
  o.stop_requested = [] { return StopSignals::requested(); };
  TrainDisplay display(flags.log_every);
  o.events = display.events();
  const std::string resume_command = program_name() + " train --out " + shell_quote(o.out_dir) + " --resume";
  std::optional<dist::PeerWatch> watch;
  if (comm.size() > 1) {
    o.comm = &comm;
    watch.emplace(comm, [resume_command](const std::string& message) {
      std::fprintf(stderr, "\n%s; the last checkpoint continues the run: %s\n", message.c_str(),
                   resume_command.c_str());
      std::fflush(stderr);
      std::_Exit(1);  // another rank's collective can never complete: nothing to unwind to
    });
  }
  const train::TrainResult result = train::train(*opened.model, o);
  if (watch) {
    watch->stop();  // every rank stops watching before any leaves
    comm.barrier();
  }
  // A stop asked of one rank stops all; the others exit as if the signal were theirs.
  const int signal = StopSignals::received() != 0 ? StopSignals::received() : SIGTERM;
  if (!first) return result.stopped ? StopSignals::exit_code(signal) : 0;
  display.finish();
  report_summary(result, o, *opened.model);
  if (result.timed_out) std::fprintf(stderr, "continue with: %s\n", resume_command.c_str());
  if (!result.stopped) return 0;
  std::fprintf(stderr, "stopped by %s at step %d of %d with a checkpoint in %s; continue with: %s\n",
               StopSignals::name(signal), result.steps_done, o.steps, o.out_dir.c_str(), resume_command.c_str());
  return StopSignals::exit_code(signal);
}

// Joins the job the launcher started (one process alone: a job of one) and trains in it.
int run_train(TrainFlags& flags, const std::set<std::string>& given) {
  const dist::Transport transport =
      flags.source.device.starts_with("cuda") ? dist::Transport::kCuda : dist::Transport::kHostMemory;
  std::unique_ptr<dist::Communicator> comm = dist::join_job(transport);
  if (comm->size() == 1) return train_as_rank(flags, given, *comm);
  try {
    return train_as_rank(flags, given, *comm);
  } catch (const std::exception& e) {
    // A failing rank leaves at once, without MPI's orderly end (which would wait for the others
    // in their next collective): they see it gone (PeerWatch) or the launcher ends them.
    std::fprintf(stderr, "error: rank %d: %s\n", comm->rank(), e.what());
    std::fflush(stderr);
    std::_Exit(1);
  }
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto flags = std::make_shared<TrainFlags>();
  CLI::App* cmd = app.add_subcommand("train", "train a model on a text file or token shards");
  add_model_flags(cmd, flags->source, /*model_required=*/false);
  train::TrainOptions& o = flags->options;
  cmd->add_option("--data", flags->data, "a UTF-8 text file, or one or more .bin token shards (required unless --resume)");
  cmd->add_option("--val-data", flags->val_data, "validation .bin shard (text input splits its own)");
  cmd->add_option("--val-fraction", flags->val_fraction, "share of a text file kept for validation")
      ->check(CLI::Range(0.0, 0.5))->capture_default_str();
  cmd->add_option("--out", o.out_dir, "directory for checkpoints, log.jsonl and loss.svg")->required();
  cmd->add_option("--batch", o.batch, "sequences per micro-batch (with --cores: the global one, split over the cores)")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  cmd->add_option("--seq", o.seq, "tokens per sequence")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_option("--grad-accum", o.grad_accum, "micro-batches per optimizer step")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  cmd->add_option("--steps", o.steps, "optimizer steps (on --resume: may change, to more than the checkpoint's step)")
      ->check(CLI::Range(1, 1 << 30))->capture_default_str();
  cmd->add_option("--lr", o.lr, "peak learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--min-lr-ratio", o.min_lr_ratio, "final learning rate as a share of the peak")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--warmup", o.warmup, "linear warmup steps")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--weight-decay", o.adamw.weight_decay, "AdamW weight decay for matrices")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--beta1", o.adamw.beta1, "AdamW beta1")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  cmd->add_option("--beta2", o.adamw.beta2, "AdamW beta2")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  cmd->add_option("--clip", o.clip, "global gradient-norm clip (0: off)")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--eval-every", o.eval_every, "steps between validation losses (0: at the end only)")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--eval-windows", o.eval_windows, "validation windows per evaluation")->check(CLI::Range(1, 1 << 30))->capture_default_str();
  cmd->add_option("--checkpoint-every", o.checkpoint_every, "steps between checkpoints (0: none by step count)")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--checkpoint-minutes", o.checkpoint_minutes, "minutes of wall time between checkpoints (0: none by time)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--time-limit", o.time_limit_s, "stop after this many seconds, with a checkpoint (0: none)")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--log-every", flags->log_every, "progress line cadence when stderr is not a terminal")->check(CLI::Range(1, 1 << 30))->capture_default_str();
  cmd->add_option("--save-dtype", flags->save_dtype,
                  "weights in checkpoints: f32, or bf16 (rounded to nearest even; the training state keeps "
                  "fp32 weights for --resume)")
      ->check(CLI::IsMember({"f32", "bf16"}))->capture_default_str();
  cmd->add_flag("--save-mxfp4", flags->save_mxfp4,
                "gpt-oss: experts in checkpoints as MXFP4 blocks and scales, as published (with "
                "--save-dtype bf16: the published layout throughout)");
  cmd->add_flag("--resume", o.resume, "continue the run checkpointed in --out, with its recorded settings");
  add_cores_flag(cmd, flags->cores,
                 "train computes the global batch on one simulated core, exactly as without "
                 "--cores (the cluster's reduced gradient is the mean over the global batch); the "
                 "cluster's step is timed once on timing-only copies and printed before training");
  cmd->callback([flags, cmd] {
    if (flags->source.model.empty() && !flags->options.resume) {
      throw CLI::RequiredError("--model");
    }
    std::set<std::string> given;  // long names of the flags on the command line
    for (const CLI::Option* option : cmd->get_options()) {
      if (option->count() > 0 && !option->get_lnames().empty()) given.insert(option->get_lnames().front());
    }
    const int status = run_train(*flags, given);
    if (status != 0) {
      std::fflush(nullptr);
      std::exit(status);
    }
  });
}

}  // namespace switchyard::cli
