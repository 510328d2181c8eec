// Where the GPT-2 vocabulary files (encoder.json + vocab.bpe, or vocab.json + merges.txt) are
// looked up for every subcommand that takes --vocab, so that they all agree.
#pragma once

#include <string>

namespace switchyard::cli {

// The environment variable that names a default vocabulary directory.
inline constexpr const char* kGpt2VocabEnv = "SWITCHYARD_GPT2_VOCAB";
// The fallback, relative to the working directory (the repository root in this project's layout).
inline constexpr const char* kGpt2VocabFallback = "../shared/data/gpt2";

// `flag_value` when non-empty (it must be an existing directory); otherwise the first existing
// directory of $SWITCHYARD_GPT2_VOCAB and ../shared/data/gpt2. Throws Error naming every place
// tried and suggesting --vocab when none exists.
std::string find_gpt2_vocab_dir(const std::string& flag_value);

}  // namespace switchyard::cli
