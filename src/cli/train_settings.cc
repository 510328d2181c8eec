#include "cli/train_settings.h"

#include <filesystem>
#include <functional>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/error.h"
#include "model/checkpoint.h"

namespace switchyard::cli {

namespace fs = std::filesystem;

namespace {

// A float is recorded as the shortest decimal that reads back as the same float, so that
// config.json says 0.001 rather than 0.0010000000474974513.
template <typename T>
nlohmann::json to_record(const T& value) {
  if constexpr (std::is_same_v<T, float>) {
    return std::stod(fmt::format("{}", value));
  } else {
    return value;
  }
}

template <typename T>
std::string to_text(const T& value) {
  if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    return fmt::format("{}", fmt::join(value, " "));
  } else if constexpr (std::is_same_v<T, std::string>) {
    return value.empty() ? "''" : value;
  } else {
    return fmt::format("{}", value);
  }
}

enum class OnResume { kFixed, kMayChange };

// One flag bound to its field in TrainFlags.
struct Setting {
  std::string name;  // the flag's long name
  OnResume on_resume;
  std::function<nlohmann::json()> get;
  std::function<void(const nlohmann::json&)> set;   // throws nlohmann::json::exception on a bad type
  std::function<std::string(const nlohmann::json&)> text;  // a recorded value as the flag shows it
};

template <typename T>
Setting bind(const char* name, OnResume on_resume, T& field) {
  return {name, on_resume, [&field] { return to_record(field); },
          [&field](const nlohmann::json& value) { field = value.get<T>(); },
          [](const nlohmann::json& value) { return to_text(value.get<T>()); }};
}

std::vector<Setting> settings_of(TrainFlags& f) {
  ModelSource& s = f.source;
  train::TrainOptions& o = f.options;
  const OnResume fixed = OnResume::kFixed, may_change = OnResume::kMayChange;
  return {
      bind("model", fixed, s.model),
      bind("n-layer", fixed, s.layers),
      bind("n-head", fixed, s.heads),
      bind("n-embd", fixed, s.channels),
      bind("n-positions", fixed, s.context),
      bind("vocab-size", fixed, s.vocab_size),
      bind("tokenizer", fixed, s.tokenizer),
      bind("vocab", may_change, s.vocab_dir),
      bind("seed", fixed, s.seed),
      bind("device", may_change, s.device),  // as --dtype resolved it
      bind("dtype", may_change, s.dtype),
      bind("data", fixed, f.data),
      bind("val-data", fixed, f.val_data),
      bind("val-fraction", fixed, f.val_fraction),
      bind("batch", fixed, o.batch),
      bind("seq", fixed, o.seq),
      bind("grad-accum", fixed, o.grad_accum),
      bind("steps", may_change, o.steps),  // above the checkpoint's step: checked on its own
      bind("lr", fixed, o.lr),
      bind("min-lr-ratio", fixed, o.min_lr_ratio),
      bind("warmup", fixed, o.warmup),
      bind("weight-decay", fixed, o.adamw.weight_decay),
      bind("beta1", fixed, o.adamw.beta1),
      bind("beta2", fixed, o.adamw.beta2),
      bind("clip", fixed, o.clip),
      bind("eval-every", may_change, o.eval_every),
      bind("eval-windows", may_change, o.eval_windows),
      bind("checkpoint-every", may_change, o.checkpoint_every),
      bind("checkpoint-minutes", may_change, o.checkpoint_minutes),
      bind("time-limit", may_change, o.time_limit_s),
      bind("log-every", may_change, f.log_every),
      bind("save-dtype", may_change, f.save_dtype),  // the training state keeps exact weights
      bind("save-mxfp4", may_change, f.save_mxfp4),
      bind("cores", may_change, f.cores),  // times the step; changes no number of the run
  };
}

std::string absolute(const std::string& path) {
  return path.empty() ? path : fs::absolute(path).lexically_normal().string();
}

std::vector<std::string> changeable_flags(TrainFlags& flags) {
  std::vector<std::string> names;
  for (const Setting& s : settings_of(flags)) {
    if (s.on_resume == OnResume::kMayChange) names.push_back("--" + s.name);
  }
  return names;
}

// What the checkpoint says about the run, taken into the flags not given.
struct Recorded {
  int checkpoint_step = -1;
  int steps = 0;                     // the run's length as recorded
  std::vector<std::string> refused;  // given flags that differ from the record and may not
};

// config.json's record of every flag.
Recorded take_run_record(TrainFlags& flags, const std::set<std::string>& given, const nlohmann::json& section,
                         const std::string& checkpoint_dir) {
  Recorded r;
  r.steps = flags.options.steps;
  const nlohmann::json& run = section.at("run");
  auto step = section.find("step");
  require(step != section.end() && step->is_number_integer(),
          "{}/config.json records the run's settings but not its step", checkpoint_dir);
  r.checkpoint_step = step->get<int>();
  for (const Setting& s : settings_of(flags)) {
    auto recorded = run.find(s.name);
    if (recorded == run.end()) continue;  // a setting newer than the checkpoint keeps its default
    try {
      if (s.name == "steps") r.steps = recorded->get<int>();
      if (!given.contains(s.name)) {
        s.set(*recorded);
      } else if (s.on_resume == OnResume::kFixed && s.get() != *recorded) {
        r.refused.push_back(fmt::format("--{} {} (the run has {})", s.name, s.text(s.get()), s.text(*recorded)));
      }
    } catch (const nlohmann::json::exception&) {
      fail("{}/config.json: the recorded setting '{}' = {} is not valid", checkpoint_dir, s.name, recorded->dump());
    }
  }
  return r;
}

// Checkpoints from before settings were recorded keep a few in training_state.safetensors, under
// the trainer's names (batch, seq, grad_accum, steps, lr, warmup); the flags not given take them,
// and the trainer checks the given ones against them.
Recorded take_older_state(TrainFlags& flags, const std::set<std::string>& given, const std::string& checkpoint_dir) {
  const std::map<std::string, std::string> state = model::read_training_state_values(checkpoint_dir);
  Recorded r;
  r.steps = flags.options.steps;
  for (const Setting& s : settings_of(flags)) {
    const std::string key = s.name == "grad-accum" ? "grad_accum" : s.name;
    auto it = state.find(key);
    if (it == state.end() || key == "step") continue;
    try {
      if (key == "steps") r.steps = std::stoi(it->second);
      if (!given.contains(s.name)) s.set(nlohmann::json::parse(it->second));
    } catch (const std::exception&) {
      fail("{}/training_state.safetensors: '{}' = '{}' is not a valid --{}", checkpoint_dir, key, it->second, s.name);
    }
  }
  auto step = state.find("step");
  require(step != state.end(), "{}/training_state.safetensors has no step", checkpoint_dir);
  try {
    r.checkpoint_step = std::stoi(step->second);
  } catch (const std::exception&) {
    fail("{}/training_state.safetensors: step '{}' is not a number", checkpoint_dir, step->second);
  }
  return r;
}

}  // namespace

void make_paths_absolute(TrainFlags& flags) {
  for (std::string& path : flags.data) path = absolute(path);
  flags.val_data = absolute(flags.val_data);
  flags.source.vocab_dir = absolute(flags.source.vocab_dir);
  if (!flags.source.model.empty() && is_checkpoint_dir(flags.source.model)) {
    flags.source.model = absolute(flags.source.model);
  }
}

model::SaveFormat save_format(const TrainFlags& flags) {
  return {.dtype = parse_dtype(flags.save_dtype), .mxfp4_experts = flags.save_mxfp4};
}

nlohmann::json record_settings(TrainFlags& flags) {
  nlohmann::json record = nlohmann::json::object();
  for (const Setting& s : settings_of(flags)) record[s.name] = s.get();
  return record;
}

ResumePlan take_recorded_settings(TrainFlags& flags, const std::set<std::string>& given,
                                  const nlohmann::json& section, const std::string& checkpoint_dir) {
  ResumePlan plan;
  auto run = section.find("run");
  plan.recorded = run != section.end() && run->is_object();
  if (!plan.recorded) {
    require(!flags.data.empty(),
            "--resume: the checkpoint in {} does not record its run's settings (an older version wrote "
            "it); give the flags of that run again, at least --data",
            checkpoint_dir);
    plan.notes.push_back(fmt::format(
        "note: the checkpoint in {} does not record its run's settings (an older version wrote it): "
        "batch, seq, grad-accum, steps, lr and warmup come from its training state, the rest from the "
        "flags given and defaults; the next checkpoint records them all",
        checkpoint_dir));
  }
  Recorded recorded = plan.recorded ? take_run_record(flags, given, section, checkpoint_dir)
                                    : take_older_state(flags, given, checkpoint_dir);
  plan.checkpoint_step = recorded.checkpoint_step;
  if (given.contains("dtype") && !given.contains("device")) {  // the recorded device in that dtype
    flags.source.device = backend::device_for_dtype(backend::plain_device_name(flags.source.device),
                                                    flags.source.dtype);
  }
  const int steps = flags.options.steps;
  if (given.contains("steps") && steps <= plan.checkpoint_step) {
    recorded.refused.push_back(fmt::format("--steps {} (the checkpoint is already at step {}; give more than that)",
                                           steps, plan.checkpoint_step));
  }
  require(recorded.refused.empty(),
          "cannot resume the run in {} with other settings: {}. On --resume only {} may change; start a "
          "new run in another --out to change the rest",
          checkpoint_dir, fmt::join(recorded.refused, ", "), fmt::join(changeable_flags(flags), ", "));

  if (steps <= plan.checkpoint_step) {
    plan.complete = true;
  } else if (steps != recorded.steps) {
    plan.notes.push_back(fmt::format("{} the run from {} to {} steps: the learning-rate schedule now ends at step {}",
                                     steps > recorded.steps ? "extending" : "shortening", recorded.steps, steps,
                                     steps));
  }
  return plan;
}

}  // namespace switchyard::cli
