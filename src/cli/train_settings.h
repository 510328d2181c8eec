// The settings of a training run as `switchyard train` takes them (every flag), and their record in
// each checkpoint (config.json's "switchyard" section, "run", beside "step"), from which
// `train --out DIR --resume` continues a run without being told its flags again.
//
// On --resume a flag not given takes the recorded value. A flag given may differ from the record
// only if it leaves the numbers of the steps already taken valid: --steps (any number above the
// checkpoint's step; the learning-rate schedule is fitted to the new length), the logging,
// evaluation and checkpoint intervals, the time limit, the checkpoints' weight format, the device
// and where the GPT-2 vocabulary lives. Everything else that differs is refused, all of it in one
// message.
#pragma once

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/model_source.h"
#include "train/trainer.h"

namespace switchyard::cli {

struct TrainFlags {
  ModelSource source;
  std::vector<std::string> data;
  std::string val_data;
  double val_fraction = 0.1;
  int log_every = 10;  // progress line cadence when stderr is not a terminal
  std::string save_dtype = "f32";  // checkpoints' weights: "f32" or "bf16"
  bool save_mxfp4 = false;         // gpt-oss's experts as MXFP4 in checkpoints
  int cores = 1;                   // simulator devices: data-parallel cores the step is timed on
  train::TrainOptions options;
};

// The checkpoints' weight format that --save-dtype and --save-mxfp4 ask for.
model::SaveFormat save_format(const TrainFlags& flags);

// Makes the data, validation data, vocabulary and checkpoint-directory model paths absolute, so that
// the record works from any working directory.
void make_paths_absolute(TrainFlags& flags);

// Every setting, keyed by its flag's long name ("batch", "n-layer", ...).
nlohmann::json record_settings(TrainFlags& flags);

struct ResumePlan {
  bool recorded = false;      // the checkpoint records its run's settings (older ones do not)
  bool complete = false;      // the run already reached its last step; nothing to do
  int checkpoint_step = -1;   // the step of the checkpoint being resumed
  std::vector<std::string> notes;  // lines to show before training (a changed length, ...)
};

// Takes the recorded settings (config.json's "switchyard" section of the checkpoint in
// `checkpoint_dir`) into `flags` for every flag whose long name is not in `given`, and checks the
// given ones. Throws one Error naming every refused difference.
ResumePlan take_recorded_settings(TrainFlags& flags, const std::set<std::string>& given,
                                  const nlohmann::json& section, const std::string& checkpoint_dir);

}  // namespace switchyard::cli
