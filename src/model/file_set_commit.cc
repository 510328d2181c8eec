#include "model/file_set_commit.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace switchyard::model {

namespace fs = std::filesystem;

namespace {

// The record's first and last lines; anything else in between is a file name.
constexpr const char* kRecordHeader = "switchyard file set 1";
constexpr const char* kRecordEnd = "end";

std::string in(const std::string& directory, const std::string& name) {
  return (fs::path(directory) / name).string();
}

std::string staged_name(const std::string& name) { return name + kStagedSuffix; }

// fsync of a file or directory: once it returns, what was written (or renamed inside a directory)
// survives a power loss.
void sync_path(const std::string& path, int open_flags) {
  const int fd = ::open(path.c_str(), open_flags | O_CLOEXEC);
  require(fd >= 0, "cannot open {} to sync it: {}", path, std::strerror(errno));
  const bool ok = ::fsync(fd) == 0;
  const int saved_errno = errno;
  ::close(fd);
  require(ok, "cannot sync {}: {}", path, std::strerror(saved_errno));
}

void sync_file(const std::string& path) { sync_path(path, O_RDONLY); }
void sync_directory(const std::string& directory) { sync_path(directory, O_RDONLY | O_DIRECTORY); }

void rename_or_fail(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    fail("cannot rename {} to {}: {}", from, to, std::strerror(errno));
  }
}

void remove_or_fail(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    fail("cannot remove {}: {}", path, std::strerror(errno));
  }
}

std::vector<std::string> staged_leftovers(const std::string& directory) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(directory, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.ends_with(kStagedSuffix)) names.push_back(name);
  }
  require(!ec, "cannot list {}: {}", directory, ec.message());
  return names;
}

bool has_leftovers(const std::string& directory) {
  return fs::exists(in(directory, kCommitRecord)) || !staged_leftovers(directory).empty();
}

bool valid_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         !name.ends_with(kStagedSuffix) && name != kCommitRecord && name != kCommitLock;
}

std::vector<std::string> read_record(const std::string& path) {
  std::ifstream file(path);
  require(file.good(), "cannot read {}", path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(file, line);) lines.push_back(line);
  // The record is renamed into place complete, so a malformed one was not written by a commit.
  const bool well_formed = lines.size() >= 3 && lines.front() == kRecordHeader && lines.back() == kRecordEnd;
  require(well_formed, "{} is not a commit record (remove it if it is not yours)", path);
  std::vector<std::string> names(lines.begin() + 1, lines.end() - 1);
  for (const std::string& name : names) {
    require(valid_name(name), "{} names '{}', which is not a file of this directory", path, name);
  }
  return names;
}

void write_record(const std::string& directory, const std::vector<std::string>& names) {
  std::ostringstream text;
  text << kRecordHeader << "\n";
  for (const std::string& name : names) text << name << "\n";
  text << kRecordEnd << "\n";
  const std::string record = in(directory, kCommitRecord), staged = in(directory, staged_name(kCommitRecord));
  {
    std::ofstream out(staged, std::ios::binary | std::ios::trunc);
    out << text.str();
    out.flush();
    require(out.good(), "cannot write {}", staged);
  }
  sync_file(staged);
  rename_or_fail(staged, record);
  sync_directory(directory);
}

// Renames `name`'s staged file into place, unless an earlier (interrupted) pass already did.
void install(const std::string& directory, const std::string& name) {
  const std::string staged = in(directory, staged_name(name));
  if (fs::exists(staged)) rename_or_fail(staged, in(directory, name));
}

// Holds an exclusive flock on the directory's lock file; returns the descriptor.
int lock_directory(const std::string& directory) {
  const std::string path = in(directory, kCommitLock);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  require(fd >= 0, "cannot create the lock file {}: {}", path, std::strerror(errno));
  int rc;
  do {
    rc = ::flock(fd, LOCK_EX);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int saved_errno = errno;
    ::close(fd);
    fail("cannot lock {}: {}", path, std::strerror(saved_errno));
  }
  return fd;
}

// Rolls a committed set forward, or an uncommitted one back. The caller holds the lock.
void recover_locked(const std::string& directory) {
  const std::string record = in(directory, kCommitRecord);
  bool changed = false;
  if (fs::exists(record)) {
    for (const std::string& name : read_record(record)) install(directory, name);
    sync_directory(directory);  // the installs are durable before the record that redoes them goes
    remove_or_fail(record);
    changed = true;
  }
  for (const std::string& name : staged_leftovers(directory)) {
    remove_or_fail(in(directory, name));
    changed = true;
  }
  if (changed) sync_directory(directory);
}

}  // namespace

FileSetCommit::FileSetCommit(std::string directory) : directory_(std::move(directory)) {
  std::error_code ec;
  fs::create_directories(directory_, ec);
  require(!ec, "cannot create directory {}: {}", directory_, ec.message());
  lock_fd_ = lock_directory(directory_);
  try {
    recover_locked(directory_);
  } catch (...) {
    ::close(lock_fd_);
    throw;
  }
}

FileSetCommit::~FileSetCommit() {
  if (!committed_) {
    for (const std::string& name : staged_) ::unlink(in(directory_, staged_name(name)).c_str());
  }
  ::close(lock_fd_);  // releases the flock
}

std::string FileSetCommit::stage(const std::string& name) {
  require(valid_name(name), "cannot stage '{}': not a plain file name for {}", name, directory_);
  for (const std::string& s : staged_) require(s != name, "'{}' is staged twice in {}", name, directory_);
  require(!committed_, "{}: this set is already committed", directory_);
  staged_.push_back(name);
  return in(directory_, staged_name(name));
}

void FileSetCommit::reached(const std::string& stage) const {
  if (after_stage) after_stage(stage);
}

void FileSetCommit::commit() {
  require(!committed_ && !staged_.empty(), "{}: nothing staged to commit", directory_);
  for (const std::string& name : staged_) {
    const std::string path = in(directory_, staged_name(name));
    require(fs::is_regular_file(path), "{} was staged but never written", path);
    sync_file(path);
  }
  sync_directory(directory_);
  reached("staged");

  write_record(directory_, staged_);
  committed_ = true;  // from here on, recovery rolls forward: the staged files are the set
  reached("committed");

  for (const std::string& name : staged_) {
    install(directory_, name);
    reached("installed " + name);
  }
  sync_directory(directory_);
  remove_or_fail(in(directory_, kCommitRecord));
  sync_directory(directory_);
  reached("finished");
}

void recover_file_set(const std::string& directory) {
  if (!fs::is_directory(directory) || !has_leftovers(directory)) return;
  int fd;
  try {
    fd = lock_directory(directory);
  } catch (const Error& e) {
    fail("the last checkpoint written to {} was interrupted and cannot be finished here: {}", directory,
         e.what());
  }
  try {
    recover_locked(directory);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

}  // namespace switchyard::model
