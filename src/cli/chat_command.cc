// switchyard chat: a conversation with a gpt-oss model in the harmony chat format
// (tokenizer/harmony.h renders it, harmony_parser.h reads the replies). Each turn renders the
// system message (with the reasoning effort), the developer instructions and the conversation so
// far, generates until <|return|> or <|call|>, and shows the final channel (the analysis channel
// too with --show-reasoning). One turn with --message; otherwise one turn per line of stdin.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/model_source.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/generator.h"
#include "model/sampler.h"
#include "tokenizer/harmony.h"
#include "tokenizer/harmony_parser.h"

namespace switchyard::cli {

namespace {

using tokenizer::HarmonyChannel;

struct ChatFlags {
  ModelSource source;
  std::string message;       // one turn; empty: read turns from stdin
  std::string instructions;  // the developer message
  std::string reasoning = "medium";
  bool show_reasoning = false;
  int max_new_tokens = 2048;
  model::SamplingOptions sampling;
  bool json = false;
};

tokenizer::ReasoningEffort effort_of(const std::string& name) {
  if (name == "low") return tokenizer::ReasoningEffort::kLow;
  if (name == "high") return tokenizer::ReasoningEffort::kHigh;
  return tokenizer::ReasoningEffort::kMedium;
}

// Prints each channel's text as it arrives: the final channel on stdout, the analysis channel
// too when asked for, each under a label once the reply switches channels.
class ReplyPrinter {
 public:
  explicit ReplyPrinter(bool show_reasoning) : show_reasoning_(show_reasoning) {}
  void print(const tokenizer::HarmonyDelta& delta) {
    if (!delta.channel || delta.text.empty()) return;
    const HarmonyChannel channel = *delta.channel;
    if (channel != HarmonyChannel::kFinal && !show_reasoning_) return;
    if (show_reasoning_ && channel != shown_) {
      std::printf("%s[%s] ", printed_ ? "\n" : "", std::string(tokenizer::channel_name(channel)).c_str());
      shown_ = channel;
    }
    std::fwrite(delta.text.data(), 1, delta.text.size(), stdout);
    std::fflush(stdout);
    printed_ = true;
  }

 private:
  bool show_reasoning_;
  bool printed_ = false;
  std::optional<HarmonyChannel> shown_;
};

struct TurnResult {
  std::vector<tokenizer::HarmonyMessage> messages;
  tokenizer::HarmonyStop stop = tokenizer::HarmonyStop::kNone;
  int generated = 0;
};

// Generates the assistant's reply to `conversation` and reads it as harmony messages.
TurnResult run_turn(model::Model& m, const tokenizer::Tokenizer& tok,
                    const tokenizer::HarmonyConversation& conversation, const ChatFlags& flags,
                    Rng& rng) {
  const std::vector<int32_t> prompt = tokenizer::render_harmony_tokens_for_completion(conversation, tok);
  const int context = m.config().max_seq_len;
  require(static_cast<int>(prompt.size()) < context,
          "the conversation is {} tokens, but the model's context is {}", prompt.size(), context);
  const int budget = std::min(flags.max_new_tokens, context - static_cast<int>(prompt.size()));
  const tokenizer::HarmonyTokenIds ids = tokenizer::harmony_token_ids(tok);
  model::Generator generator(m, 1, static_cast<int>(prompt.size()) + budget);
  model::GenerateOptions options{.max_new_tokens = budget, .sampling = flags.sampling,
                                 .stop_tokens = {ids.return_, ids.call}};
  tokenizer::HarmonyStreamParser parser(tok);
  ReplyPrinter printer(flags.show_reasoning);
  TurnResult result;
  try {
    result.generated = static_cast<int>(
        model::generate(generator, prompt, options, rng, [&](int32_t token) {
          printer.print(parser.process(token));
        }).tokens.size());
    if (!parser.done()) parser.finish();  // the length limit cut the reply short
  } catch (const Error& e) {
    fail("the model's reply is not in the harmony format: {}", e.what());
  }
  std::printf("\n");
  std::fflush(stdout);
  result.messages = parser.messages();
  result.stop = parser.stop();
  return result;
}

std::string channel_text(const std::vector<tokenizer::HarmonyMessage>& messages, HarmonyChannel channel) {
  std::string text;
  for (const tokenizer::HarmonyMessage& m : messages) {
    if (m.channel == channel) text += m.text;
  }
  return text;
}

void run_chat(const ChatFlags& flags) {
  model::validate(flags.sampling);
  ModelSource source = flags.source;
  source.inference_only = true;
  if (source.tokenizer.empty()) source.tokenizer = "o200k";
  require(source.tokenizer == "o200k", "chat speaks the harmony format, which needs the o200k tokenizer, not {}",
          source.tokenizer);
  OpenedModel opened = open_model(source, /*load_tokenizer=*/false);
  require(opened.model->config().is_gpt_oss(), "chat needs a gpt-oss model; {} is a {} model",
          source.model, opened.model->config().family);
  opened.tokenizer = open_tokenizer(source, opened);
  const tokenizer::Tokenizer& tok = *opened.tokenizer;

  tokenizer::HarmonyConversation conversation;
  conversation.system = tokenizer::SystemOptions{};
  conversation.system->reasoning_effort = effort_of(flags.reasoning);
  if (!flags.instructions.empty()) {
    conversation.developer = tokenizer::DeveloperOptions{.instructions = flags.instructions};
  }
  Rng rng(source.seed);
  const bool interactive = flags.message.empty();
  std::string line = flags.message;
  while (true) {
    if (interactive) {
      if (isatty(STDIN_FILENO)) std::fprintf(stderr, "> ");
      if (!std::getline(std::cin, line)) break;
      if (line.empty()) continue;
    }
    conversation.messages.push_back({.role = tokenizer::HarmonyRole::kUser, .text = line});
    const TurnResult turn = run_turn(*opened.model, tok, conversation, flags, rng);
    for (tokenizer::HarmonyMessage message : turn.messages) conversation.messages.push_back(message);
    if (flags.json) {
      const char* stop = turn.stop == tokenizer::HarmonyStop::kReturn ? "return"
                         : turn.stop == tokenizer::HarmonyStop::kCall ? "call"
                                                                      : "length";
      nlohmann::json json{{"final", channel_text(turn.messages, HarmonyChannel::kFinal)},
                          {"analysis", channel_text(turn.messages, HarmonyChannel::kAnalysis)},
                          {"stop", stop},
                          {"generated_tokens", turn.generated}};
      std::printf("%s\n", json.dump().c_str());
    }
    if (!interactive) break;
  }
}

}  // namespace

void add_chat_command(CLI::App& app) {
  auto flags = std::make_shared<ChatFlags>();
  CLI::App* cmd = app.add_subcommand("chat", "talk with a gpt-oss model in the harmony chat format");
  add_model_flags(cmd, flags->source);
  cmd->add_option("--message", flags->message, "one user message (default: one turn per line of stdin)");
  cmd->add_option("--instructions", flags->instructions, "developer instructions (the system prompt)");
  cmd->add_option("--reasoning", flags->reasoning, "reasoning effort: low, medium or high")
      ->check(CLI::IsMember({"low", "medium", "high"}))
      ->capture_default_str();
  cmd->add_flag("--show-reasoning", flags->show_reasoning, "show the analysis channel too");
  cmd->add_option("--max-new-tokens,-n", flags->max_new_tokens, "most tokens in one reply")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  cmd->add_option("--temperature", flags->sampling.temperature, "softmax temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-p", flags->sampling.top_p, "nucleus sampling threshold")->capture_default_str();
  cmd->add_flag("--json", flags->json, "print one JSON object per reply");
  cmd->callback([flags] { run_chat(*flags); });
}

}  // namespace switchyard::cli
