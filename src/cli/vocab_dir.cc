#include "cli/vocab_dir.h"

#include <cstdlib>
#include <filesystem>

#include "core/error.h"

namespace switchyard::cli {

std::string find_gpt2_vocab_dir(const std::string& flag_value) {
  std::error_code ec;
  if (!flag_value.empty()) {
    require(std::filesystem::is_directory(flag_value, ec),
            "--vocab {}: no such directory (expected GPT-2's encoder.json + vocab.bpe there)",
            flag_value);
    return flag_value;
  }
  const char* env = std::getenv(kGpt2VocabEnv);
  const std::string from_env = env != nullptr ? env : "";
  if (!from_env.empty() && std::filesystem::is_directory(from_env, ec)) return from_env;
  if (std::filesystem::is_directory(kGpt2VocabFallback, ec)) return kGpt2VocabFallback;
  fail("no GPT-2 vocabulary directory found: ${} is {} and {} does not exist (relative to {}); "
       "pass --vocab DIR",
       kGpt2VocabEnv, from_env.empty() ? "unset" : fmt::format("'{}', which is not a directory", from_env),
       kGpt2VocabFallback, std::filesystem::current_path(ec).string());
}

}  // namespace switchyard::cli
