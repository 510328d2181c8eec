#include "cli/usage_error.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "cli/name_suggestion.h"

namespace switchyard::cli {

namespace {

constexpr const char* kProgram = "switchyard";

// The commands the user selected, outermost first: root, then e.g. "neuron", then "bench".
std::vector<const CLI::App*> parsed_chain(const CLI::App& root) {
  std::vector<const CLI::App*> chain{&root};
  while (!chain.back()->get_subcommands().empty()) chain.push_back(chain.back()->get_subcommands().front());
  return chain;
}

// "neuron bench" for the innermost command of `chain`; empty for the root.
std::string command_path(const std::vector<const CLI::App*>& chain) {
  std::string path;
  for (size_t i = 1; i < chain.size(); ++i) path += (path.empty() ? "" : " ") + chain[i]->get_name();
  return path;
}

std::string help_hint(const std::string& path) {
  return fmt::format("see '{}{}{} --help'", kProgram, path.empty() ? "" : " ", path);
}

bool looks_like_flag(const std::string& arg) {
  if (arg.size() < 2 || arg[0] != '-') return false;
  return arg[1] == '-' || std::isalpha(static_cast<unsigned char>(arg[1]));  // "-1" is a value
}

std::vector<std::string> command_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App* s) { return !s->get_disabled(); })) {
    if (!sub->get_name().empty()) names.push_back(sub->get_name());
  }
  return names;
}

std::vector<std::string> flag_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::Option* option : app.get_options()) {
    for (const std::string& name : option->get_lnames()) names.push_back("--" + name);
    for (const std::string& name : option->get_snames()) names.push_back("-" + name);
  }
  return names;
}

std::string unknown_command(const CLI::App& app, const std::string& path, const std::string& typed) {
  const std::string where = path.empty() ? "" : fmt::format(" for '{}'", path);
  const std::vector<std::string> names = command_names(app);
  if (std::optional<std::string> meant = closest_name(typed, names)) {
    return fmt::format("unknown command '{}'{}; did you mean '{}'?", typed, where, *meant);
  }
  return fmt::format("unknown command '{}'{}; commands: {}", typed, where, fmt::join(names, ", "));
}

std::string unknown_flag(const CLI::App& app, const std::string& path, const std::string& arg) {
  const std::string typed = arg.substr(0, arg.find('='));  // "--step=5" names "--step"
  const std::string where = fmt::format("'{}'", path.empty() ? kProgram : path);
  if (std::optional<std::string> meant = closest_name(typed, flag_names(app))) {
    return fmt::format("unknown flag '{}' for {}; did you mean '{}'?", typed, where, *meant);
  }
  // A flag given before the command it belongs to: "bench --model tiny train".
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    const std::vector<std::string> names = flag_names(*sub);
    if (std::find(names.begin(), names.end(), typed) != names.end()) {
      return fmt::format("unknown flag '{}' for {}; it belongs after the command, as in '{}{} {} {}'", typed,
                         where, kProgram, path.empty() ? "" : " " + path, sub->get_name(), typed);
    }
  }
  return fmt::format("unknown flag '{}' for {}; {}", typed, where, help_hint(path));
}

// What CLI11 left unmatched, named from the innermost command that received it; empty when all
// was matched.
std::string describe_unmatched(const std::vector<const CLI::App*>& chain) {
  for (size_t depth = chain.size(); depth-- > 0;) {
    const CLI::App& app = *chain[depth];
    const std::vector<std::string> unmatched = app.remaining();
    if (unmatched.empty()) continue;
    const std::vector<const CLI::App*> prefix(chain.begin(), chain.begin() + depth + 1);
    const std::string path = command_path(prefix);
    const std::string& first = unmatched.front();
    if (looks_like_flag(first)) return unknown_flag(app, path, first);
    if (app.get_subcommands().empty() && !command_names(app).empty()) return unknown_command(app, path, first);
    return fmt::format("unexpected argument '{}' for '{}'; {}", first, path.empty() ? kProgram : path,
                       help_hint(path));
  }
  return "";
}

std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n') c = ' ';
  }
  return text;
}

}  // namespace

std::string describe_usage_error(const CLI::App& root, const CLI::ParseError& error) {
  const std::vector<const CLI::App*> chain = parsed_chain(root);
  // A mistyped name explains every other complaint (a "missing" flag, a stray value), so it comes first.
  if (std::string unmatched = describe_unmatched(chain); !unmatched.empty()) return unmatched;

  const CLI::App& innermost = *chain.back();
  const std::string path = command_path(chain);
  if (innermost.get_require_subcommand_min() > 0 && innermost.get_subcommands().empty()) {
    const std::string commands = fmt::format("{}", fmt::join(command_names(innermost), ", "));
    if (path.empty()) return fmt::format("no command given; commands: {}; {}", commands, help_hint(path));
    return fmt::format("'{}' needs a command: {}", path, commands);
  }
  return fmt::format("{}; {}", one_line(error.what()), help_hint(path));
}

}  // namespace switchyard::cli
