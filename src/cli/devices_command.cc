// `switchyard devices [--json]`: which backends this binary has and whether each can run here.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cli/commands.h"

namespace switchyard::cli {
namespace {

void print_table(const std::vector<backend::BackendInfo>& backends) {
  size_t name_width = std::string("device").size();
  for (const backend::BackendInfo& info : backends)
    name_width = std::max(name_width, info.name.size());
  fmt::print("{:<{}}  {:<9}  {}\n", "device", name_width, "available", "detail");
  for (const backend::BackendInfo& info : backends) {
    fmt::print("{:<{}}  {:<9}  {}\n", info.name, name_width, info.available ? "yes" : "no",
               info.detail);
  }
}

void print_json(const std::vector<backend::BackendInfo>& backends) {
  nlohmann::json array = nlohmann::json::array();
  for (const backend::BackendInfo& info : backends) {
    array.push_back({{"name", info.name}, {"available", info.available}, {"detail", info.detail}});
  }
  fmt::print("{}\n", array.dump(2));
}

}  // namespace

void add_devices_command(CLI::App& app) {
  CLI::App* command =
      app.add_subcommand("devices", "List the backends built in and whether each can run here");
  // Shared with the callback, which runs after parsing, when this function's locals are gone.
  auto json = std::make_shared<bool>(false);
  command->add_flag("--json", *json, "Print a JSON array of {name, available, detail}");
  command->callback([json] {
    const std::vector<backend::BackendInfo> backends = backend::list_backends();
    if (*json) {
      print_json(backends);
    } else {
      print_table(backends);
    }
  });
}

}  // namespace switchyard::cli
