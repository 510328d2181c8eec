// Runs a shell command line for the tests that drive the CLI or the project's scripts.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace switchyard {

struct ShellResult {
  int exit_code = -1;  // -1 when the command did not exit normally or could not start
  std::string output;  // what it wrote to stdout (redirect stderr in the command to see it here)
};

inline ShellResult run_shell(const std::string& command) {
  ShellResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) {
    result.output = "popen failed";
    return result;
  }
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// The CLI with `args`, stdout and stderr together; `prefix` goes first on the line (a cd, variables).
inline ShellResult run_cli(const std::string& args, const std::string& prefix = "") {
  return run_shell(prefix + std::string(SWITCHYARD_CLI) + " " + args + " 2>&1");
}

}  // namespace switchyard
