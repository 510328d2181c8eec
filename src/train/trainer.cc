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
#include "model/model_config.h"
#include "train/evaluate.h"
#include "train/loss_curve.h"
#include "train/lr_schedule.h"
#include "train/run_log.h"
#include "train/same_run_check.h"
#include "train/data_parallel.h"

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
                     const data::LoaderPosition& position, const model::OptimizerMoments* moments) {
  nlohmann::json info = o.model_info;
  info["step"] = steps_done;
  if (o.run_settings.is_object()) info["run"] = o.run_settings;
  model::TrainingState state;
  state.step = steps_done;
  state.values = run_settings(o);
  state.values["loader_shard"] = std::to_string(position.shard);
  state.values["loader_offset"] = std::to_string(position.offset);
  state.values["loader_epoch"] = std::to_string(position.epoch);
  model::save_training_checkpoint(model, o.out_dir, info, state, o.save_format, moments);
}

// What every rank of a data-parallel run must agree on: the model, the device, the data and every
// setting that shapes the numbers or the schedule of collectives.
std::map<std::string, std::string> same_run_settings(const model::Model& model, const TrainOptions& o) {
  std::map<std::string, std::string> settings = run_settings(o);
  settings["model"] = model::config_to_json(model.config()).dump();
  settings["device"] = model.backend().name();
  std::string shards;
  for (const std::string& shard : o.train_shards) {
    std::error_code ec;
    shards += fmt::format("{} ({} bytes) ", shard, fs::file_size(shard, ec));
  }
  settings["data"] = shards;
  settings["val_data"] = o.val_shard;
  settings["out"] = o.out_dir;
  settings["resume"] = o.resume ? "yes" : "no";
  settings["seed"] = std::to_string(o.seed);
  settings["clip"] = fmt::format("{}", o.clip);
  settings["adamw"] = fmt::format("{} {} {} {}", o.adamw.beta1, o.adamw.beta2, o.adamw.epsilon,
                                  o.adamw.weight_decay);
  settings["min_lr_ratio"] = fmt::format("{}", o.min_lr_ratio);
  settings["eval"] = fmt::format("every {}, {} windows", o.eval_every, o.eval_windows);
  settings["checkpoints"] = fmt::format("every {} steps, {} minutes, limit {} s", o.checkpoint_every,
                                        o.checkpoint_minutes, o.time_limit_s);
  return settings;
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

// What a step's end decides, the same on every rank: whether to stop, checkpoint, end on time.
struct StepEnd {
  bool stop = false, checkpoint = false, time_up = false;
};

// Each rank's view of the step's end made common: any rank's stop request stops all; rank 0's
// clock decides checkpoints and the time limit (ranks' clocks differ).
StepEnd agree(dist::Communicator* comm, StepEnd mine) {
  if (!comm || comm->size() == 1) return mine;
  const bool first = comm->rank() == 0;
  double votes[3] = {mine.stop ? 1.0 : 0.0, first && mine.checkpoint ? 1.0 : 0.0,
                     first && mine.time_up ? 1.0 : 0.0};
  comm->host().all_reduce_sum(Tensor::dense(votes, DType::kF64, {3}));
  return {votes[0] > 0, votes[1] > 0, votes[2] > 0};
}

// Rank 0's parameters on every rank, so that all start from the same weights whatever each
// loaded or drew.
void share_parameters(model::Model& model, dist::Communicator& comm) {
  const size_t decay_end = model.layout().decay_end(), total = model.layout().total();
  for (const model::FloatRange& region :
       {model::FloatRange{0, decay_end, true}, model::FloatRange{decay_end, total, false}}) {
    for (const Tensor& view : model.parameter_views(region)) comm.broadcast(view, 0);
  }
  model.parameters_from_host(model.parameters_to_host());  // refreshes any weight copy
}

}  // namespace

TrainResult train(model::Model& model, const TrainOptions& o) {
  require(o.batch > 0 && o.seq > 0 && o.grad_accum > 0 && o.steps > 0,
          "batch, seq, grad-accum and steps must be positive");
  require(o.seq <= model.config().max_seq_len, "--seq {} exceeds the model's context of {} tokens",
          o.seq, model.config().max_seq_len);
  require(o.lr > 0 && std::isfinite(o.lr), "learning rate must be positive, got {}", o.lr);
  require(!o.train_shards.empty(), "no training data given");
  require(!o.out_dir.empty(), "no output directory given");
  const int ranks = o.comm ? o.comm->size() : 1;
  const bool writer = !o.comm || o.comm->rank() == 0;  // logs, checkpoints, evaluates, reports
  require(o.batch % ranks == 0, "--batch {} does not split evenly over {} ranks", o.batch, ranks);
  model::check_save_format(model, o.save_format);  // before the run, not at its first checkpoint
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) fail("cannot create output directory {}: {}", o.out_dir, ec.message());

  std::optional<DataParallelSync> sync;  // before any optimizer state exists: it holds 1/N
  if (ranks > 1) {
    check_same_run(*o.comm, same_run_settings(model, o));
    sync.emplace(model, *o.comm, o.bucket_floats);
  }
  const TrainEvents events = writer ? o.events : TrainEvents{};
  data::BatchLoader loader(o.train_shards, o.batch, o.seq, model.config().vocab_size);
  std::vector<uint32_t> val_tokens;
  if (!o.val_shard.empty() && writer) {
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
  if (sync) share_parameters(model, *o.comm);
  int last_eval_step = -1, last_checkpoint_step = o.resume ? first_step : -1;
  if (o.resume && writer) {
    // The log may run past the checkpoint (a crash) or hold an evaluation the uninterrupted run
    // would not have made (a time limit's); both go, so that what follows continues it exactly.
    const LogCut cut = cut_log_back(log_path, first_step, evaluates_at(first_step));
    if (cut.validation_at_step) last_eval_step = first_step;
    if (cut.training_lines != first_step) {
      events.on_note(fmt::format("note: {} holds {} of the {} training steps up to the checkpoint; "
                                 "the others are lost",
                                 log_path, cut.training_lines, first_step));
    }
  }
  std::optional<RunLog> log;
  if (writer) log.emplace(log_path, o.resume);

  LrSchedule schedule{o.lr, o.lr * o.min_lr_ratio, o.warmup, o.steps};
  const size_t tokens_per_step = static_cast<size_t>(o.batch) * o.seq * o.grad_accum;
  const int rank_batch = o.batch / ranks;  // this rank's windows of each batch
  const size_t rank_offset = static_cast<size_t>(o.comm ? o.comm->rank() : 0) * rank_batch * o.seq;
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
    log->write(nlohmann::json{{"step", at_step}, {"val_loss", eval.loss}});
    events.on_eval({.step = at_step, .loss = eval.loss, .perplexity = eval.perplexity,
                    .tokens = eval.tokens});
  };
  auto checkpoint_clock = std::chrono::steady_clock::now();
  auto checkpoint = [&] {
    std::optional<model::OptimizerMoments> moments;  // ranks hold pieces: gathered, collectively
    if (sync) {
      moments = model::OptimizerMoments{sync->gather_pieces(model.adam_m_to_host()),
                                        sync->gather_pieces(model.adam_v_to_host())};
    }
    if (writer) {
      log->sync();  // the log reaches the checkpoint's step before the checkpoint exists
      save_checkpoint(model, o, step, loader.position(), moments ? &*moments : nullptr);
    }
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
  if (writer && step < o.steps && evaluates_at(step) && last_eval_step != step) run_eval(step);

  // On a simulator device every step also reports its simulated time on the chip.
  backend::SimulatedClock sim_clock(model.backend());
  double sim_ms_total = 0;
  while (step < o.steps) {
    // Several ranks agree on a stop at the end of each step (below) instead.
    if (!sync && stop_requested(o)) {
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
      if (!sync && micro > 0 && stop_requested(o)) {
        abandoned = true;
        break;
      }
      loader.next_batch(inputs, targets);
      if (sync) sync->begin_micro_batch(micro == o.grad_accum - 1);
      model.forward_backward(inputs.data() + rank_offset, targets.data() + rank_offset, rank_batch,
                             o.seq, 1.0f / static_cast<float>(o.grad_accum * ranks));
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
    if (sync) {
      const DataParallelSync::StepTiming comm = sync->last_step_timing();
      entry["comm_ms"] = comm.reduce_ms + comm.gather_ms;
      entry["comm_exposed_ms"] = comm.exposed_ms();
    }
    if (log) log->write(entry);
    events.on_step({.step = step, .first_step = first_step, .total = o.steps, .loss = loss,
                    .learning_rate = lr, .grad_norm = norm, .ms = ms,
                    .tokens = static_cast<double>(tokens_per_step), .simulated = sim});

    if (step == o.steps) break;  // the end of the run evaluates and checkpoints below
    const StepEnd end = agree(o.comm, {.stop = stop_requested(o), .checkpoint = checkpoint_due(),
                                       .time_up = o.time_limit_s > 0 && elapsed_seconds() >= o.time_limit_s});
    if (end.stop) {  // skip this step's evaluation: a resumed run makes it first
      result.stopped = true;
      break;
    }
    if (writer && evaluates_at(step)) run_eval(step);
    if (end.checkpoint) checkpoint();
    if (end.time_up) {
      events.on_note(fmt::format("time limit of {:.0f} s reached after step {} of {}",
                                 o.time_limit_s, step, o.steps));
      result.timed_out = true;
      break;
    }
  }
  // The last step is evaluated; so is a time limit's stop, to show where the run got to.
  if (writer && (step == o.steps || result.timed_out) && last_eval_step != step) run_eval(step);
  if (last_checkpoint_step != step) checkpoint();
  if (writer) {
    log->sync();
    write_loss_curve(log_path, (fs::path(o.out_dir) / "loss.svg").string());
  }

  result.steps_done = step;
  result.seconds = elapsed_seconds();
  result.tokens_per_s = result.seconds > 0 ? tokens_per_step * (step - first_step) / result.seconds : 0;
  if (sim_clock.active() && step > first_step) result.simulated_seconds = sim_ms_total / 1000.0;
  result.optimizer_state_bytes = model.optimizer_state_bytes();
  return result;
}

}  // namespace switchyard::train
