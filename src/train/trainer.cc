#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "backend/simulated_span.h"
#include "core/error.h"
#include "data/batch_loader.h"
#include "data/token_shard.h"
#include "model/checkpoint.h"
#include "train/evaluate.h"
#include "train/loss_curve.h"
#include "train/lr_schedule.h"
#include "train/run_log.h"

namespace switchyard::train {

namespace fs = std::filesystem;

namespace {

// Settings that must not change across a resume: a different value would silently change the run.
// (The number of steps may change: the schedule is fitted to the new length.)
std::map<std::string, std::string> run_settings(const TrainOptions& o) {
  return {{"batch", std::to_string(o.batch)},       {"seq", std::to_string(o.seq)},
          {"grad_accum", std::to_string(o.grad_accum)}, {"steps", std::to_string(o.steps)},
          {"lr", fmt::format("{}", o.lr)},          {"warmup", std::to_string(o.warmup)}};
}

size_t parse_size(const std::map<std::string, std::string>& values, const std::string& key,
                  const std::string& where) {
  auto it = values.find(key);
  if (it == values.end()) fail("{}: training state has no '{}'", where, key);
  try {
    return std::stoull(it->second);
  } catch (const std::exception&) {
    fail("{}: training state '{}' = '{}' is not a number", where, key, it->second);
  }
}

void save_checkpoint(const model::Model& model, const TrainOptions& o, int steps_done,
                     const data::LoaderPosition& position) {
  nlohmann::json info = o.model_info;
  info["step"] = steps_done;
  if (o.run_settings.is_object()) info["run"] = o.run_settings;
  model::TrainingState state;
  state.step = steps_done;
  state.values = run_settings(o);
  state.values["loader_shard"] = std::to_string(position.shard);
  state.values["loader_offset"] = std::to_string(position.offset);
  state.values["loader_epoch"] = std::to_string(position.epoch);
  model::save_training_checkpoint(model, o.out_dir, info, state, o.save_format);
}

// Loads the checkpoint in o.out_dir into `model` (the fp32 weights from the training state where a
// lossy weights file has them there) and `loader`; returns its step.
int load_checkpoint(model::Model& model, const TrainOptions& o, data::BatchLoader& loader) {
  model::load_weights(model, o.out_dir);
  model::TrainingState state = model::load_training_state(model, o.out_dir);
  std::vector<std::string> differences;
  for (const auto& [key, value] : run_settings(o)) {
    auto it = state.values.find(key);
    if (key != "steps" && it != state.values.end() && it->second != value) {
      differences.push_back(fmt::format("--{} {} (the checkpoint has {})",
                                        key == "grad_accum" ? "grad-accum" : key, value, it->second));
    }
  }
  require(differences.empty(), "cannot resume from {} with other settings: {}", o.out_dir,
          fmt::join(differences, ", "));
  data::LoaderPosition position;
  position.shard = parse_size(state.values, "loader_shard", o.out_dir);
  position.offset = parse_size(state.values, "loader_offset", o.out_dir);
  position.epoch = parse_size(state.values, "loader_epoch", o.out_dir);
  loader.seek(position);
  require(state.step <= o.steps, "--steps {}: the checkpoint in {} is already at step {}", o.steps,
          o.out_dir, state.step);
  return state.step;
}

bool stop_requested(const TrainOptions& o) { return o.stop_requested && o.stop_requested(); }

}  // namespace

TrainResult train(model::Model& model, const TrainOptions& o) {
  require(o.batch > 0 && o.seq > 0 && o.grad_accum > 0 && o.steps > 0,
          "batch, seq, grad-accum and steps must be positive");
  require(o.seq <= model.config().max_seq_len, "--seq {} exceeds the model's context of {} tokens",
          o.seq, model.config().max_seq_len);
  require(o.lr > 0 && std::isfinite(o.lr), "learning rate must be positive, got {}", o.lr);
  require(!o.train_shards.empty(), "no training data given");
  require(!o.out_dir.empty(), "no output directory given");
  model::check_save_format(model, o.save_format);  // before the run, not at its first checkpoint
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) fail("cannot create output directory {}: {}", o.out_dir, ec.message());

  data::BatchLoader loader(o.train_shards, o.batch, o.seq, model.config().vocab_size);
  std::vector<uint32_t> val_tokens;
  if (!o.val_shard.empty()) {
    val_tokens = data::read_shard(o.val_shard);
    for (size_t i = 0; i < val_tokens.size(); ++i) {
      if (val_tokens[i] >= static_cast<uint32_t>(model.config().vocab_size)) {
        fail("{}: token {} at index {} is outside the model's vocabulary of {}", o.val_shard,
             val_tokens[i], i, model.config().vocab_size);
      }
    }
  }

  // An uninterrupted run evaluates every eval_every steps before the last, and at the last.
  auto evaluates_at = [&](int step) {
    return step > 0 && (step == o.steps || (o.eval_every > 0 && step % o.eval_every == 0));
  };
  const std::string log_path = (fs::path(o.out_dir) / "log.jsonl").string();
  const int first_step = o.resume ? load_checkpoint(model, o, loader) : 0;
  int last_eval_step = -1, last_checkpoint_step = o.resume ? first_step : -1;
  if (o.resume) {
    // The log may run past the checkpoint (a crash) or hold an evaluation the uninterrupted run
    // would not have made (a time limit's); both go, so that what follows continues it exactly.
    const LogCut cut = cut_log_back(log_path, first_step, evaluates_at(first_step));
    if (cut.validation_at_step) last_eval_step = first_step;
    if (cut.training_lines != first_step) {
      o.events.on_note(fmt::format("note: {} holds {} of the {} training steps up to the checkpoint; "
                                   "the others are lost",
                                   log_path, cut.training_lines, first_step));
    }
  }
  RunLog log(log_path, o.resume);

  LrSchedule schedule{o.lr, o.lr * o.min_lr_ratio, o.warmup, o.steps};
  const size_t tokens_per_step = static_cast<size_t>(o.batch) * o.seq * o.grad_accum;
  const auto started = std::chrono::steady_clock::now();
  auto elapsed_seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  std::vector<int32_t> inputs, targets;
  TrainResult result;
  result.first_step = first_step;
  int step = first_step;  // optimizer steps completed
  auto run_eval = [&](int at_step) {
    last_eval_step = at_step;
    if (val_tokens.empty()) return;
    EvalResult eval = evaluate(model, val_tokens, o.seq, o.eval_windows, o.batch);
    result.val_loss = static_cast<float>(eval.loss);
    log.write(nlohmann::json{{"step", at_step}, {"val_loss", eval.loss}});
    o.events.on_eval({.step = at_step, .loss = eval.loss, .perplexity = eval.perplexity,
                      .tokens = eval.tokens});
  };
  auto checkpoint_clock = std::chrono::steady_clock::now();
  auto checkpoint = [&] {
    log.sync();  // the log reaches the checkpoint's step before the checkpoint exists
    save_checkpoint(model, o, step, loader.position());
    last_checkpoint_step = step;
    checkpoint_clock = std::chrono::steady_clock::now();
  };
  auto checkpoint_due = [&] {
    if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0) return true;
    const double minutes =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - checkpoint_clock).count() / 60.0;
    return o.checkpoint_minutes > 0 && minutes >= o.checkpoint_minutes;
  };

  // A checkpoint of an interrupted run can predate the evaluation at its own step; make it now.
  if (step < o.steps && evaluates_at(step) && last_eval_step != step) run_eval(step);

  // On a simulator device every step also reports its simulated time on the chip.
  backend::SimulatedClock sim_clock(model.backend());
  double sim_ms_total = 0;
  while (step < o.steps) {
    if (stop_requested(o)) {
      result.stopped = true;
      break;
    }
    sim_clock.restart();
    auto t0 = std::chrono::steady_clock::now();
    // The loss and gradient norm stay on the device until finish_step, so the device never waits
    // for the host inside a step; a diverged step is caught right after it (and not saved).
    // A stop between micro-batches abandons the step: nothing of it reaches the parameters before
    // finish_step, so rewinding the data position is all it takes.
    const data::LoaderPosition step_start = loader.position();
    model.begin_step();
    bool abandoned = false;
    for (int micro = 0; micro < o.grad_accum; ++micro) {
      if (micro > 0 && stop_requested(o)) {
        abandoned = true;
        break;
      }
      loader.next_batch(inputs, targets);
      model.forward_backward(inputs.data(), targets.data(), o.batch, o.seq,
                             1.0f / static_cast<float>(o.grad_accum));
    }
    if (abandoned) {
      loader.seek(step_start);
      result.stopped = true;
      break;
    }
    const float lr = schedule.at(step);
    const model::Model::StepResult stats = model.finish_step(o.adamw, lr, step + 1, o.clip);
    const float loss = stats.loss, norm = stats.grad_norm;
    if (!std::isfinite(loss)) {
      fail("training diverged: loss is {} at step {} (try a lower --lr)", loss, step + 1);
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ++step;

    result.last_loss = loss;
    nlohmann::json entry{{"step", step},  {"loss", loss}, {"lr", lr},
                         {"grad_norm", norm}, {"ms", ms},   {"tokens_per_s", tokens_per_step / (ms / 1000.0)}};
    const std::optional<backend::SimulatedSpan> sim =
        sim_clock.lap(static_cast<double>(tokens_per_step));
    if (sim) {
      entry["simulated_ms"] = sim->ms;
      entry["simulated_tokens_per_s_per_core"] = sim->tokens_per_s_per_core;
      entry["simulated_tokens_per_s_per_chip"] = sim->tokens_per_s_per_chip;
      sim_ms_total += sim->ms;
    }
    log.write(entry);
    o.events.on_step({.step = step, .first_step = first_step, .total = o.steps, .loss = loss,
                      .learning_rate = lr, .grad_norm = norm, .ms = ms,
                      .tokens = static_cast<double>(tokens_per_step), .simulated = sim});

    if (step == o.steps) break;  // the end of the run evaluates and checkpoints below
    if (stop_requested(o)) {  // skip this step's evaluation: a resumed run makes it first
      result.stopped = true;
      break;
    }
    if (evaluates_at(step)) run_eval(step);
    if (checkpoint_due()) checkpoint();
    if (o.time_limit_s > 0 && elapsed_seconds() >= o.time_limit_s) {
      o.events.on_note(fmt::format("time limit of {:.0f} s reached after step {} of {}",
                                   o.time_limit_s, step, o.steps));
      result.timed_out = true;
      break;
    }
  }
  // The last step is evaluated; so is a time limit's stop, to show where the run got to.
  if ((step == o.steps || result.timed_out) && last_eval_step != step) run_eval(step);
  if (last_checkpoint_step != step) checkpoint();
  log.sync();
  write_loss_curve(log_path, (fs::path(o.out_dir) / "loss.svg").string());

  result.steps_done = step;
  result.seconds = elapsed_seconds();
  result.tokens_per_s = result.seconds > 0 ? tokens_per_step * (step - first_step) / result.seconds : 0;
  if (sim_clock.active() && step > first_step) result.simulated_seconds = sim_ms_total / 1000.0;
  return result;
}

}  // namespace switchyard::train
