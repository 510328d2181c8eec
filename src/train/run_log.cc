#include "train/run_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace switchyard::train {

namespace fs = std::filesystem;

namespace {

bool write_all(int fd, const std::string& text) {
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    left -= static_cast<size_t>(n);
  }
  return true;
}

// Writes `text` to `path` through a synced temporary, renamed into place and the directory synced.
void replace_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  require(fd >= 0, "cannot write {}: {}", tmp, std::strerror(errno));
  bool ok = write_all(fd, text) && ::fsync(fd) == 0;
  const int saved_errno = errno;
  ok = ::close(fd) == 0 && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const int error = ok ? errno : saved_errno;
    ::unlink(tmp.c_str());
    fail("cannot rewrite {}: {}", path, std::strerror(error));
  }
  fs::path dir = fs::path(path).parent_path();
  const int dir_fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

bool is_step_record(const nlohmann::json& record) {
  return record.is_object() && record.contains("step") && record["step"].is_number_integer();
}

}  // namespace

RunLog::RunLog(std::string path, bool append) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644);
  require(fd_ >= 0, "cannot write {}: {}", path_, std::strerror(errno));
}

RunLog::~RunLog() { ::close(fd_); }

void RunLog::write(const nlohmann::json& record) {
  require(write_all(fd_, record.dump() + "\n"), "cannot write {}: {}", path_, std::strerror(errno));
}

void RunLog::sync() { require(::fsync(fd_) == 0, "cannot sync {}: {}", path_, std::strerror(errno)); }

LogCut cut_log_back(const std::string& path, int step, bool keep_validation_at_step) {
  LogCut cut;
  std::ifstream in(path, std::ios::binary);
  if (!in) return cut;
  std::stringstream whole;
  whole << in.rdbuf();
  const std::string text = whole.str();

  std::string kept;
  std::set<int> validation_steps;
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t end = text.find('\n', begin);
    if (end == std::string::npos) {  // a last line without its newline was cut short by a crash
      ++cut.dropped_lines;
      break;
    }
    const std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    bool keep = false;
    if (is_step_record(record)) {
      const int at = record["step"].get<int>();
      if (record.contains("loss")) {
        keep = at <= step && at > cut.last_training_step;
        if (keep) {
          ++cut.training_lines;
          cut.last_training_step = at;
        }
      } else if (record.contains("val_loss")) {
        keep = (at < step || (at == step && keep_validation_at_step)) && validation_steps.insert(at).second;
        if (keep && at == step) cut.validation_at_step = true;
      } else {
        keep = at <= step;
      }
    } else {
      keep = record.is_object() && !record.contains("step");  // a line of another kind, kept as it is
    }
    if (keep) {
      kept += line + "\n";
    } else {
      ++cut.dropped_lines;
    }
  }
  if (cut.dropped_lines > 0) replace_file(path, kept);
  return cut;
}

}  // namespace switchyard::train
