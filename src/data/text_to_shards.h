// Tokenises a text file once into a training and a validation shard.
#pragma once

#include <string>

#include "tokenizer/tokenizer.h"

namespace switchyard::data {

struct PreparedData {
  std::string train_path;
  std::string val_path;
  size_t train_tokens = 0;
  size_t val_tokens = 0;
};

// Encodes `text_path` with `tokenizer` and writes <out_dir>/train.bin and <out_dir>/val.bin, the last
// `val_fraction` of the tokens (split at a token boundary) going to validation, in the shard version
// that the tokenizer's vocabulary needs (shard_version_for_vocab). Creates out_dir.
// Throws Error if the file is missing or empty, or too short to give both splits a token.
PreparedData prepare_text(const std::string& text_path, const tokenizer::Tokenizer& tokenizer,
                          const std::string& out_dir, double val_fraction);

}  // namespace switchyard::data
