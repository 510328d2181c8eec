// switchyard prepare: tokenise a text file once into train.bin and val.bin token shards.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "tokenizer/tokenize_text.h"
#include "core/error.h"
#include "data/text_to_shards.h"
#include "tokenizer/tokenizer.h"

namespace switchyard::cli {

namespace {

struct PrepareFlags {
  std::string input;
  std::string out;
  std::string tokenizer = "gpt2";
  std::string vocab;
  double val_fraction = 0.1;
};

void run_prepare(const PrepareFlags& flags) {
  const std::unique_ptr<tokenizer::Tokenizer> tokenizer = tokenizer::make_tokenizer(flags.tokenizer, flags.vocab);
  const data::PreparedData prepared =
      data::prepare_text(flags.input, *tokenizer, flags.out, flags.val_fraction);
  std::printf("tokenizer %s (vocabulary %d)\n", tokenizer->name().c_str(), tokenizer->vocab_size());
  std::printf("train %s  %zu tokens\n", prepared.train_path.c_str(), prepared.train_tokens);
  std::printf("val   %s  %zu tokens\n", prepared.val_path.c_str(), prepared.val_tokens);
}

}  // namespace

void add_prepare_command(CLI::App& app) {
  auto flags = std::make_shared<PrepareFlags>();
  CLI::App* command = app.add_subcommand(
      "prepare", "Tokenise a text file into <out>/train.bin and <out>/val.bin token shards");
  command->add_option("--input", flags->input, "text file to tokenise")->required();
  command->add_option("--out", flags->out, "output directory (created if missing)")->required();
  command->add_option("--tokenizer", flags->tokenizer,
                      "gpt2 (byte-level BPE), o200k (gpt-oss's o200k_harmony; writes uint32 shards) or byte")
      ->check(CLI::IsMember({"gpt2", "o200k", "byte"}))
      ->capture_default_str();
  command->add_option("--vocab", flags->vocab,
                      "gpt2: vocabulary directory (default: $SWITCHYARD_GPT2_VOCAB, else "
                      "../shared/data/gpt2); o200k: ranks file or tokenizer.json (default: "
                      "$SWITCHYARD_O200K, else ../shared/data/o200k/o200k_base.tiktoken)");
  command->add_option("--val-fraction", flags->val_fraction,
                      "share of the tokens, taken from the end, that goes to val.bin")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command->callback([flags] { run_prepare(*flags); });
}

}  // namespace switchyard::cli
