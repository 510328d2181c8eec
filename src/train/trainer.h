// The training loop: AdamW with warmup + cosine schedule, global-norm clipping, gradient
// accumulation, periodic validation and checkpoints, exact resume, progress line and JSON-lines log.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/gpt.h"

namespace switchyard::train {

struct TrainOptions {
  std::vector<std::string> train_shards;
  std::string val_shard;  // empty: no validation
  std::string out_dir;    // checkpoints and log.jsonl go here
  int batch = 8;
  int seq = 128;
  int grad_accum = 1;     // micro-batches per optimizer step
  int steps = 1000;       // total optimizer steps of the run (a resumed run counts the earlier ones)
  float lr = 6e-4f;
  float min_lr_ratio = 0.1f;
  int warmup = 0;
  model::AdamWConfig adamw;
  float clip = 1.0f;      // global gradient norm limit; 0 disables clipping
  uint64_t seed = 1337;
  int eval_every = 0;     // steps between validation losses; 0: only at the end
  int eval_windows = 20;
  int checkpoint_every = 0;  // steps between checkpoints; 0: only at the end
  double time_limit_s = 0;   // stop (and checkpoint) after this much wall time; 0: no limit
  int log_every = 10;        // progress line cadence when stderr is not a terminal
  bool resume = false;       // continue from the checkpoint in out_dir
  std::map<std::string, std::string> model_info;  // written into config.json (tokenizer, ...)
};

struct TrainResult {
  int steps_done = 0;
  float last_loss = 0;
  float val_loss = -1;  // < 0 when no validation ran
  double seconds = 0;
  double tokens_per_s = 0;
  double simulated_seconds = 0;  // simulator devices: simulated time of the steps run
};

// Trains `model` in place. With options.resume, first loads weights, optimizer state and data
// position from options.out_dir and checks that the run's settings match.
TrainResult train(model::Gpt& model, const TrainOptions& options);

}  // namespace switchyard::train
