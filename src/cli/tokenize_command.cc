// switchyard tokenize: text on stdin -> token ids on stdout, or ids -> text with --decode.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/tokenize_text.h"

namespace switchyard::cli {

namespace {

std::string read_all_stdin() {
  std::string input;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, stdin)) > 0) input.append(buffer, n);
  require(!std::ferror(stdin), "cannot read standard input");
  return input;
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto options = std::make_shared<tokenizer::TokenizeOptions>();
  CLI::App* command = app.add_subcommand(
      "tokenize", "Encode stdin into token ids (printed separated by spaces), or decode ids into text");
  command->add_option("--tokenizer", options->tokenizer,
                      "gpt2 (byte-level BPE), o200k (gpt-oss's o200k_harmony) or byte")
      ->check(CLI::IsMember({"gpt2", "o200k", "byte"}))
      ->capture_default_str();
  command->add_option("--vocab", options->vocab,
                      "gpt2: vocabulary directory (encoder.json + vocab.bpe, or vocab.json + merges.txt; "
                      "default $SWITCHYARD_GPT2_VOCAB, else ../shared/data/gpt2); o200k: ranks file "
                      "(.tiktoken) or tokenizer.json (default $SWITCHYARD_O200K, else "
                      "../shared/data/o200k/o200k_base.tiktoken)");
  command->add_flag("--decode", options->decode,
                    "read whitespace-separated ids from stdin and write the decoded bytes");
  command->add_flag("--special-tokens", options->special_tokens,
                    "encode special-token strings such as <|start|> as their special ids (o200k); "
                    "without it they are encoded as ordinary text");
  command->callback([options] {
    const std::string output = tokenizer::run_tokenize(*options, read_all_stdin());
    require(std::fwrite(output.data(), 1, output.size(), stdout) == output.size() && std::fflush(stdout) == 0,
            "cannot write to standard output");
  });
}

}  // namespace switchyard::cli
