#include "data/text_to_shards.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>

#include "core/error.h"
#include "data/token_shard.h"

namespace switchyard::data {

PreparedData prepare_text(const std::string& text_path, const tokenizer::Tokenizer& tokenizer,
                          const std::string& out_dir, double val_fraction) {
  require(val_fraction > 0.0 && val_fraction < 1.0,
          "validation fraction {} is out of range (expected a value strictly between 0 and 1)",
          val_fraction);
  std::error_code ec;
  require(std::filesystem::is_regular_file(text_path, ec), "text file {}: no such file", text_path);
  std::ifstream in(text_path, std::ios::binary);
  require(in.good(), "text file {}: cannot open for reading", text_path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  require(!in.bad(), "text file {}: read error", text_path);
  require(!text.empty(), "text file {}: file is empty (expected text to tokenise)", text_path);

  const std::vector<int32_t> tokens = tokenizer.encode(text);
  const size_t n = tokens.size();
  require(n >= 2,
          "text file {}: encodes to {} token(s) with the {} tokenizer; need at least 2 so that both "
          "the training and the validation split get one",
          text_path, n, tokenizer.name());

  // Round to the nearest token, but keep at least one token on each side of the split.
  size_t val_count = static_cast<size_t>(std::llround(static_cast<double>(n) * val_fraction));
  val_count = std::clamp<size_t>(val_count, 1, n - 1);
  const size_t train_count = n - val_count;

  std::filesystem::create_directories(out_dir, ec);
  require(!ec && std::filesystem::is_directory(out_dir),
          "output directory {}: cannot create it{}{}", out_dir, ec ? ": " : "",
          ec ? ec.message() : "");

  PreparedData result;
  result.train_path = (std::filesystem::path(out_dir) / "train.bin").string();
  result.val_path = (std::filesystem::path(out_dir) / "val.bin").string();
  result.train_tokens = train_count;
  result.val_tokens = val_count;
  std::span<const int32_t> all(tokens);
  const int32_t version = shard_version_for_vocab(tokenizer.vocab_size());
  write_shard(result.train_path, all.subspan(0, train_count), version);
  write_shard(result.val_path, all.subspan(train_count), version);
  return result;
}

}  // namespace switchyard::data
