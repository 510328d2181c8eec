// The training loop: AdamW with warmup + cosine schedule, global-norm clipping, gradient
// accumulation, periodic validation and checkpoints, exact resume, a JSON-lines log and a loss plot.
// What happens as it runs is reported through TrainEvents; the loop prints nothing.
//
// A run can be stopped at any time and resumed to the same numbers: checkpoints are atomic sets
// (model/file_set_commit.h) written every checkpoint_every steps, every checkpoint_minutes and when
// the run ends or is asked to stop; log.jsonl reaches each checkpoint before it is committed, and a
// resumed run cuts the log back to its checkpoint before appending (train/run_log.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dist/communicator.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "train/train_events.h"

namespace switchyard::train {

struct TrainOptions {
  std::vector<std::string> train_shards;
  std::string val_shard;  // empty: no validation
  std::string out_dir;    // checkpoints and log.jsonl go here
  int batch = 8;
  int seq = 128;
  int grad_accum = 1;     // micro-batches per optimizer step
  int steps = 1000;       // total optimizer steps of the run (a resumed run counts the earlier ones;
                          // it may end later or earlier than the run it resumes, past its checkpoint)
  float lr = 6e-4f;
  float min_lr_ratio = 0.1f;
  int warmup = 0;
  model::AdamWConfig adamw;
  float clip = 1.0f;      // global gradient norm limit; 0 disables clipping
  uint64_t seed = 1337;
  int eval_every = 0;     // steps between validation losses; 0: only at the end
  int eval_windows = 20;
  int checkpoint_every = 0;         // steps between checkpoints; 0: none by step count
  double checkpoint_minutes = 10;   // wall-clock minutes between checkpoints; 0: none by time
  double time_limit_s = 0;   // stop (and checkpoint) after this much wall time; 0: no limit
  bool resume = false;       // continue from the checkpoint in out_dir
  // How checkpoints hold the weights; a lossy format keeps the fp32 ones in the training state,
  // so resuming is exact whatever the format.
  model::SaveFormat save_format;
  std::map<std::string, std::string> model_info;  // written into config.json (tokenizer, ...)
  // Written into config.json's "switchyard" section as "run" (with "step", the checkpoint's step):
  // whatever the caller needs to resume the run without being told its settings again.
  nlohmann::json run_settings;
  // Polled before each micro-batch. Once it returns true the run abandons the step in progress
  // (the model and data position are still those of the last whole step), writes a checkpoint and
  // returns with TrainResult::stopped set. A signal handler's flag belongs here; the library
  // installs no handlers.
  std::function<bool()> stop_requested;
  TrainEvents events;
  // The ranks that share every step (data parallelism, train/data_parallel.h); null: this process
  // alone. `batch` is then the global batch: rank r trains on windows [r B / N, (r + 1) B / N) of
  // each one. All ranks must be given the same options (checked at start). Rank 0 alone writes
  // the log and the checkpoints, evaluates, and reports events; a stop, a checkpoint and a time
  // limit take effect on every rank at the same step.
  dist::Communicator* comm = nullptr;
  size_t bucket_floats = size_t{1} << 22;  // gradients per reduction bucket, at least (whole layers)
};

struct TrainResult {
  int first_step = 0;   // where this run started (the checkpoint's step when resuming)
  int steps_done = 0;   // optimizer steps completed in all, and the step of the last checkpoint
  bool stopped = false;     // stop_requested ended the run before options.steps
  bool timed_out = false;   // time_limit_s ended the run before options.steps
  float last_loss = 0;
  float val_loss = -1;  // < 0 when no validation ran
  double seconds = 0;
  double tokens_per_s = 0;
  double simulated_seconds = 0;  // simulator devices: simulated time of the steps run
  size_t optimizer_state_bytes = 0;  // this rank's AdamW moments (1/N of them on N ranks)
};

// Trains `model` in place. With options.resume, first loads weights, optimizer state and data
// position from options.out_dir and checks that the settings that shape the numbers (batch, seq,
// grad-accum, lr, warmup) match; every mismatch is named in one Error. A checkpoint holds the
// whole optimizer state whatever the number of ranks that wrote it, so it resumes on any number.
TrainResult train(model::Model& model, const TrainOptions& options);

}  // namespace switchyard::train
