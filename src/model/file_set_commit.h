// Replaces several files of one directory as a unit: after a crash at any instant (kill -9, power
// loss) the directory holds either all of the old files or all of the new ones, never a mix. A
// training checkpoint needs this: config.json, model.safetensors and training_state.safetensors only
// make sense together, and renaming each into place on its own would leave a window with new weights
// beside old optimizer moments.
//
// The protocol, each stage durable (files and directory fsynced) before the next begins:
//   1. stage     each new file is written as <name>.incoming; the current files are untouched.
//   2. commit    a record naming the staged files is written as checkpoint.commit.incoming, fsynced
//                and renamed to checkpoint.commit. This rename is the commit point.
//   3. install   each <name>.incoming is renamed over <name>.
//   4. finish    checkpoint.commit is removed.
// Recovery (recover_file_set, and every FileSetCommit before it stages anything) looks at what a
// crash left: with a record, the set was committed, so the installs are redone (roll forward; each
// rename is idempotent because a file already installed has no .incoming left); without one, the
// set was not committed, so every *.incoming is deleted (roll back). Either way the record goes.
//
// A lock file (checkpoint.lock, flock) keeps a commit and a recovery in another process from
// interleaving: a reader that finds leftovers waits for the writer's commit to end before it
// touches anything. A directory with nothing left over is never written to, so published,
// read-only model directories load as they are.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace switchyard::model {

class FileSetCommit {
 public:
  // Locks `directory` (creating it if needed) and recovers whatever an interrupted earlier commit
  // left there. Throws Error naming the directory if it cannot.
  explicit FileSetCommit(std::string directory);
  // Releases the lock; files staged but never committed are deleted (the old set stays current).
  ~FileSetCommit();
  FileSetCommit(const FileSetCommit&) = delete;
  FileSetCommit& operator=(const FileSetCommit&) = delete;

  // The path to write the new content of `name` (a plain file name inside the directory) to.
  std::string stage(const std::string& name);
  // Makes every staged file current at once (stages 2-4 above). Throws Error on an I/O failure;
  // the directory then still holds a complete set, old or new, once recovered.
  void commit();

  // For tests: called after each durable stage of commit() with its name ("staged", "committed",
  // "installed <name>", "finished"), so that a test can end the process exactly there.
  std::function<void(const std::string& stage)> after_stage;

 private:
  void reached(const std::string& stage) const;

  std::string directory_;
  std::vector<std::string> staged_;
  int lock_fd_ = -1;
  bool committed_ = false;
};

// Finishes or discards an interrupted commit in `directory` (see above). Does nothing, and writes
// nothing, when no commit was interrupted there. Throws Error if leftovers exist but cannot be
// dealt with (a read-only directory, an unreadable record).
void recover_file_set(const std::string& directory);

// The suffix of staged files, and the names of the commit record and the lock file.
inline constexpr const char* kStagedSuffix = ".incoming";
inline constexpr const char* kCommitRecord = "checkpoint.commit";
inline constexpr const char* kCommitLock = "checkpoint.lock";

}  // namespace switchyard::model
