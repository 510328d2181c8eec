// `switchyard serve` as a child process for the tests of the command line: started with the
// arguments given, its first line of output (where it listens) read for the port, stderr kept in a
// file, killed when the test ends without waiting for it.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <regex>
#include <string>

namespace switchyard {

// `switchyard serve ARGS` with stdout on a pipe (stderr into a file), and the port it prints.
class ServeProcess {
 public:
  explicit ServeProcess(const std::string& args) {
    int out[2];
    if (pipe(out) != 0) return;
    stderr_path_ = "/tmp/switchyard_cli_serve_" + std::to_string(getpid()) + "_" + std::to_string(started_++) + ".err";
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      const std::string command = "exec " + std::string(SWITCHYARD_CLI) + " serve " + args + " 2>" + stderr_path_;
      execl("/bin/sh", "sh", "-c", command.c_str(), nullptr);
      _exit(127);
    }
    close(out[1]);
    FILE* stdout_of_child = fdopen(out[0], "r");
    char line[1024];
    // The first line says where it listens (after the model is made, which may take a while).
    if (fgets(line, sizeof(line), stdout_of_child)) {
      first_line_ = line;
      std::smatch m;
      if (std::regex_search(first_line_, m, std::regex("http://127\\.0\\.0\\.1:(\\d+)"))) port_ = std::stoi(m[1]);
    }
    fclose(stdout_of_child);
  }
  ~ServeProcess() {
    if (pid_ > 0 && !waited_) {
      kill(pid_, SIGKILL);
      wait_exit();
    }
    std::remove(stderr_path_.c_str());
  }

  int port() const { return port_; }
  const std::string& first_line() const { return first_line_; }
  void signal(int sig) { kill(pid_, sig); }
  // The exit status, or -1 when it did not exit normally.
  int wait_exit() {
    int status = 0;
    waitpid(pid_, &status, 0);
    waited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  std::string stderr_text() const {
    std::string text;
    if (FILE* f = std::fopen(stderr_path_.c_str(), "r")) {
      char buffer[4096];
      size_t n;
      while ((n = fread(buffer, 1, sizeof(buffer), f)) > 0) text.append(buffer, n);
      std::fclose(f);
    }
    return text;
  }

 private:
  static inline int started_ = 0;  // servers of this test process so far: each its own stderr file
  pid_t pid_ = -1;
  int port_ = 0;
  bool waited_ = false;
  std::string first_line_, stderr_path_;
};

}  // namespace switchyard
