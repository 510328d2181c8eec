// log.jsonl, the record of a training run: one JSON object a line, a training line per step
// ({"step", "loss", "lr", "grad_norm", timings}) and a validation line per evaluation
// ({"step", "val_loss"}). loss.svg is drawn from it.
//
// Each line reaches the file in one write() as it happens, so a killed run leaves at most a partial
// last line; sync() makes the lines so far durable and is called with every checkpoint, so the log
// always reaches at least the newest checkpoint's step. A resumed run first cuts the log back to
// its checkpoint (cut_log_back), so that what it appends continues it line for line.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

namespace switchyard::train {

class RunLog {
 public:
  // Opens `path`, appending to what is there or starting it afresh. Throws Error naming the path.
  RunLog(std::string path, bool append);
  ~RunLog();
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;

  // Writes `record` as one line. Throws Error naming the path on failure.
  void write(const nlohmann::json& record);
  // fsync: every line written so far survives a crash.
  void sync();

 private:
  std::string path_;
  int fd_ = -1;
};

struct LogCut {
  int training_lines = 0;           // training lines kept (one per step, in order)
  int last_training_step = 0;       // the step of the last of them (0 when none)
  bool validation_at_step = false;  // a validation line at the cut's step was kept
  int dropped_lines = 0;            // lines removed: partial, unreadable, repeated or beyond the step
};

// Cuts the log of a run resumed from its checkpoint at `step` back to what the run had written up to
// that checkpoint: drops a partial or unreadable line, training lines after `step` (and any line
// repeating a step already kept), validation lines after `step`, and a validation line at `step`
// unless `keep_validation_at_step`. Rewrites the file atomically, and only if anything is dropped.
// A missing log is left missing.
LogCut cut_log_back(const std::string& path, int step, bool keep_validation_at_step);

}  // namespace switchyard::train
