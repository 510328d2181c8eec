// A `switchyard` process run in the background by a CLI test (fork and exec, output to a file),
// and the log it writes, for tests that signal, kill or wait on a run.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace switchyard {

namespace fs = std::filesystem;

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A `switchyard` process with its stdout and stderr going to a file.
class Process {
 public:
  Process(const std::vector<std::string>& args, const std::string& output_path) : output_path_(output_path) {
    pid_ = fork();
    if (pid_ == 0) {
      const int fd = open(output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      std::vector<char*> argv;
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~Process() {
    if (pid_ > 0 && !waited_) {
      kill(pid_, SIGKILL);
      wait();
    }
  }
  bool running() {
    if (waited_) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      waited_ = true;
      status_ = status;
    }
    return !waited_;
  }
  void signal(int sig) { kill(pid_, sig); }
  pid_t pid() const { return pid_; }
  // The exit status (128 + signal when a signal ended it, as a shell reports).
  int wait() {
    if (!waited_) {
      waitpid(pid_, &status_, 0);
      waited_ = true;
    }
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  }
  std::string output() const { return read_file(output_path_); }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool waited_ = false;
  std::string output_path_;
};

// Complete lines in a log (a line still being written is not counted).
inline int log_lines(const fs::path& log) {
  const std::string text = read_file(log);
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

// Waits until `log` holds `lines` lines or the process ends; true in the first case.
inline bool wait_for_lines(Process& p, const fs::path& log, int lines) {
  while (p.running()) {
    if (log_lines(log) >= lines) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

}  // namespace switchyard
