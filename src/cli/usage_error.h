// Turns a failed command-line parse into the one line a user needs: the command or flag that was
// not understood and, when one is close, the name they probably meant; or CLI11's own message
// (missing flag, bad value) with the command it concerns.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace switchyard::cli {

// Exit status of a mistake in the command line (unknown command or flag, missing or bad value).
inline constexpr int kUsageExitCode = 2;

// One line, without a trailing newline, describing why `root.parse()` threw `error`. Call it right
// after the parse: it reads what CLI11 left unmatched on each parsed command.
std::string describe_usage_error(const CLI::App& root, const CLI::ParseError& error);

}  // namespace switchyard::cli
