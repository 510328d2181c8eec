#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backend/simulated_span.h"
#include "core/error.h"
#include "data/batch_loader.h"
#include "data/token_shard.h"
#include "model/checkpoint.h"
#include "train/evaluate.h"
#include "train/loss_curve.h"
#include "train/lr_schedule.h"
#include "train/progress.h"

namespace switchyard::train {

namespace fs = std::filesystem;

namespace {

// Settings that must not change across a resume: a different value would silently change the run.
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

void save_checkpoint(const model::Gpt& model, const TrainOptions& o, int steps_done,
                     const data::LoaderPosition& position) {
  model::save_model(model, o.out_dir, o.model_info);
  model::TrainingState state;
  state.step = steps_done;
  state.values = run_settings(o);
  state.values["loader_shard"] = std::to_string(position.shard);
  state.values["loader_offset"] = std::to_string(position.offset);
  state.values["loader_epoch"] = std::to_string(position.epoch);
  model::save_training_state(model, o.out_dir, state);
}

}  // namespace

TrainResult train(model::Gpt& model, const TrainOptions& o) {
  require(o.batch > 0 && o.seq > 0 && o.grad_accum > 0 && o.steps > 0,
          "batch, seq, grad-accum and steps must be positive");
  require(o.seq <= model.config().max_seq_len, "--seq {} exceeds the model's context of {} tokens",
          o.seq, model.config().max_seq_len);
  require(o.lr > 0 && std::isfinite(o.lr), "learning rate must be positive, got {}", o.lr);
  require(!o.train_shards.empty(), "no training data given");
  require(!o.out_dir.empty(), "no output directory given");
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) fail("cannot create output directory {}: {}", o.out_dir, ec.message());

  data::BatchLoader loader(o.train_shards, o.batch, o.seq, model.config().vocab_size);
  std::vector<uint16_t> val_tokens;
  if (!o.val_shard.empty()) {
    val_tokens = data::read_shard(o.val_shard);
    for (size_t i = 0; i < val_tokens.size(); ++i) {
      if (val_tokens[i] >= model.config().vocab_size) {
        fail("{}: token {} at index {} is outside the model's vocabulary of {}", o.val_shard,
             val_tokens[i], i, model.config().vocab_size);
      }
    }
  }

  int first_step = 0;
  if (o.resume) {
    model::load_weights(model, o.out_dir);
    model::TrainingState state = model::load_training_state(model, o.out_dir);
    for (const auto& [key, value] : run_settings(o)) {
      auto it = state.values.find(key);
      if (it != state.values.end() && it->second != value) {
        fail("cannot resume from {}: it was trained with --{} {}, this run asks for {}", o.out_dir,
             key == "grad_accum" ? "grad-accum" : key, it->second, value);
      }
    }
    data::LoaderPosition position;
    position.shard = parse_size(state.values, "loader_shard", o.out_dir);
    position.offset = parse_size(state.values, "loader_offset", o.out_dir);
    position.epoch = parse_size(state.values, "loader_epoch", o.out_dir);
    loader.seek(position);
    first_step = state.step;
    require(first_step <= o.steps, "checkpoint in {} is at step {}, beyond --steps {}", o.out_dir,
            first_step, o.steps);
  }

  std::string log_path = (fs::path(o.out_dir) / "log.jsonl").string();
  std::ofstream log(log_path, o.resume ? std::ios::app : std::ios::trunc);
  if (!log) fail("cannot write {}", log_path);

  LrSchedule schedule{o.lr, o.lr * o.min_lr_ratio, o.warmup, o.steps};
  const size_t tokens_per_step = static_cast<size_t>(o.batch) * o.seq * o.grad_accum;
  ProgressLine progress(first_step, o.steps, o.log_every);
  std::vector<int32_t> inputs, targets;
  TrainResult result;
  int step = first_step;
  auto run_eval = [&](int at_step) {
    if (val_tokens.empty()) return;
    EvalResult eval = evaluate(model, val_tokens, o.seq, o.eval_windows, o.batch);
    result.val_loss = static_cast<float>(eval.loss);
    log << nlohmann::json{{"step", at_step}, {"val_loss", eval.loss}}.dump() << "\n" << std::flush;
    progress.finish();
    std::fprintf(stderr, "step %d: validation loss %.4f (perplexity %.2f, %zu tokens)\n", at_step,
                 eval.loss, eval.perplexity, eval.tokens);
  };

  // On a simulator device every step also reports its simulated time on the chip.
  backend::SimulatedClock sim_clock(model.backend());
  double sim_ms_total = 0;
  for (; step < o.steps; ++step) {
    sim_clock.restart();
    auto t0 = std::chrono::steady_clock::now();
    // The loss and gradient norm stay on the device until finish_step, so the device never waits
    // for the host inside a step; a diverged step is caught right after it (and not saved).
    model.begin_step();
    for (int micro = 0; micro < o.grad_accum; ++micro) {
      loader.next_batch(inputs, targets);
      model.forward_backward(inputs.data(), targets.data(), o.batch, o.seq,
                             1.0f / static_cast<float>(o.grad_accum));
    }
    const float lr = schedule.at(step);
    const model::Gpt::StepResult stats = model.finish_step(o.adamw, lr, step + 1, o.clip);
    const float loss = stats.loss, norm = stats.grad_norm;
    if (!std::isfinite(loss)) {
      progress.finish();
      fail("training diverged: loss is {} at step {} (try a lower --lr)", loss, step + 1);
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

    result.last_loss = loss;
    nlohmann::json entry{{"step", step + 1},  {"loss", loss}, {"lr", lr},
                         {"grad_norm", norm}, {"ms", ms},   {"tokens_per_s", tokens_per_step / (ms / 1000.0)}};
    std::string sim_text;
    if (std::optional<backend::SimulatedSpan> sim = sim_clock.lap(static_cast<double>(tokens_per_step))) {
      entry["simulated_ms"] = sim->ms;
      entry["simulated_tokens_per_s_per_core"] = sim->tokens_per_s_per_core;
      entry["simulated_tokens_per_s_per_chip"] = sim->tokens_per_s_per_chip;
      sim_ms_total += sim->ms;
      sim_text = fmt::format(" | sim {:.2f} ms, {:.0f} tok/s/core", sim->ms, sim->tokens_per_s_per_core);
    }
    log << entry.dump() << "\n";
    progress.update(step, static_cast<double>(tokens_per_step) * (step + 1 - first_step),
                    fmt::format("loss {:.4f} | lr {:.2e} | norm {:.3f} | {:.0f} ms{}", loss, lr, norm, ms, sim_text));

    bool last = step + 1 == o.steps;
    bool out_of_time = o.time_limit_s > 0 && progress.elapsed_seconds() >= o.time_limit_s;
    if (o.eval_every > 0 && (step + 1) % o.eval_every == 0 && !last) run_eval(step + 1);
    if (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0 && !last) {
      save_checkpoint(model, o, step + 1, loader.position());
    }
    if (out_of_time && !last) {
      progress.finish();
      std::fprintf(stderr, "time limit of %.0f s reached after step %d of %d\n", o.time_limit_s,
                   step + 1, o.steps);
      ++step;
      break;
    }
  }
  progress.finish();
  log.flush();
  if (step > first_step || !o.resume) run_eval(step);
  save_checkpoint(model, o, step, loader.position());
  write_loss_curve(log_path, (fs::path(o.out_dir) / "loss.svg").string());

  result.steps_done = step;
  result.seconds = progress.elapsed_seconds();
  result.tokens_per_s = result.seconds > 0 ? tokens_per_step * (step - first_step) / result.seconds : 0;
  std::fprintf(stderr, "trained %d steps in %s (%.0f tokens/s); checkpoint in %s\n", step - first_step,
               format_duration(result.seconds).c_str(), result.tokens_per_s, o.out_dir.c_str());
  if (sim_clock.active() && step > first_step) {
    const backend::SimulationReport report = *model.backend().simulation_report();
    const double sim_s = sim_ms_total / 1000.0;
    result.simulated_seconds = sim_s;
    std::fprintf(stderr, "simulated %s %s: %.3f s for those steps, %.0f tokens/s per core, %.0f per chip (%d cores)\n",
                 report.target.c_str(), report.core.c_str(), sim_s, tokens_per_step * (step - first_step) / sim_s,
                 tokens_per_step * (step - first_step) / sim_s * report.cores_per_chip, report.cores_per_chip);
  }
  return result;
}

}  // namespace switchyard::train
