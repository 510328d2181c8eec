#include "tokenizer/data_path.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "core/error.h"

namespace switchyard::tokenizer {

std::string find_data_path(const std::string& explicit_path, const DataPathSearch& search) {
  if (!explicit_path.empty()) return explicit_path;
  auto exists = [&](const std::string& path) {
    return search.directory ? std::filesystem::is_directory(path) : std::filesystem::is_regular_file(path);
  };
  std::vector<std::string> tried;
  if (const char* env = std::getenv(search.env); env != nullptr && *env != '\0') {
    if (exists(env)) return env;
    tried.push_back(fmt::format("${}={}", search.env, env));
  } else {
    tried.push_back(fmt::format("${} (not set)", search.env));
  }
  if (exists(search.relative)) return search.relative;
  std::error_code ignored;
  tried.push_back(fmt::format("{} (from {})", search.relative,
                              std::filesystem::current_path(ignored).string()));
  fail("no {} found; tried {}; {}", search.what, fmt::join(tried, ", "), search.hint);
}

}  // namespace switchyard::tokenizer
