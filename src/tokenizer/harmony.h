// The harmony chat format of OpenAI's gpt-oss models: conversations rendered into the text and
// token ids the model reads (harmony_parser.h reads back what it writes).
//
// Published spec: https://github.com/openai/harmony/blob/main/docs/format.md and
// https://cookbook.openai.com/articles/openai-harmony. Each message is
//   <|start|>{header}<|message|>{content}<|end|>
// where the header is the role (a tool message's tool name instead), then ` to={recipient}`,
// `<|channel|>{channel}` and ` {content type}` when present, in that order (the order of OpenAI's
// renderer). An assistant message with a recipient is a tool call and ends with <|call|> instead of
// <|end|>. The system and developer messages have standard contents (SystemOptions,
// DeveloperOptions); function tools are written as the TypeScript-like declarations the spec shows.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace switchyard::tokenizer {

enum class HarmonyRole { kSystem, kDeveloper, kUser, kAssistant, kTool };
enum class HarmonyChannel { kAnalysis, kCommentary, kFinal };
enum class ReasoningEffort { kLow, kMedium, kHigh };

// "system", "developer", "user", "assistant", "tool".
std::string_view role_name(HarmonyRole role);
// "analysis", "commentary", "final".
std::string_view channel_name(HarmonyChannel channel);
// The channel called `name`, or nullopt.
std::optional<HarmonyChannel> channel_from_name(std::string_view name);
// "low", "medium", "high".
std::string_view effort_name(ReasoningEffort effort);

struct HarmonyMessage {
  HarmonyRole role = HarmonyRole::kUser;
  // A tool message's author, the tool that answered (e.g. "functions.get_weather"); it takes the
  // role's place in the header. Required for kTool, unused otherwise.
  std::string tool_name{};
  // Whom the message is for: a tool ("functions.get_weather") for an assistant's tool call,
  // "assistant" for a tool's answer.
  std::optional<std::string> recipient{};
  std::optional<HarmonyChannel> channel{};
  // Format of the content, e.g. "<|constrain|>json" for JSON tool arguments; the "<|constrain|>"
  // prefix is written as its special token.
  std::optional<std::string> content_type{};
  std::string text{};
};

// A function tool: name, description and JSON-schema parameters (an object schema; absent for a
// function without arguments). ordered_json keeps the properties in the caller's order, which is
// the order they are declared in.
struct HarmonyFunction {
  std::string name;
  std::string description;
  std::optional<nlohmann::ordered_json> parameters;
};

// A namespace of tools, written under "## {name}". The developer message's function tools go in
// the namespace "functions".
struct HarmonyToolNamespace {
  std::string name;
  std::optional<std::string> description{};
  std::vector<HarmonyFunction> tools{};
};

// The system message. The defaults are those of OpenAI's renderer (SystemContent::new()).
struct SystemOptions {
  std::optional<std::string> model_identity = "You are ChatGPT, a large language model trained by OpenAI.";
  std::optional<std::string> knowledge_cutoff = "2024-06";  // "Knowledge cutoff: ..." line
  std::optional<std::string> current_date;                  // "Current date: ..." line
  std::optional<ReasoningEffort> reasoning_effort = ReasoningEffort::kMedium;
  // The "# Valid channels: ..." line; omitted when empty.
  std::vector<HarmonyChannel> valid_channels = {HarmonyChannel::kAnalysis, HarmonyChannel::kCommentary,
                                                HarmonyChannel::kFinal};
  bool channel_required = true;
  // Built-in tools (such as browser or python) go in the system message.
  std::vector<HarmonyToolNamespace> tools;
};

// The developer message: what other formats call the system prompt, and the function tools.
struct DeveloperOptions {
  std::optional<std::string> instructions{};
  std::vector<HarmonyToolNamespace> tools{};
};

// A conversation: the system message, the developer message (each rendered when present) and then
// the messages in order.
struct HarmonyConversation {
  std::optional<SystemOptions> system;
  std::optional<DeveloperOptions> developer;
  std::vector<HarmonyMessage> messages;
};

struct HarmonyRenderOptions {
  // Drop every assistant analysis message that a later assistant final message follows: the
  // chain of thought of finished turns. Analysis after the last final message (an unfinished turn,
  // for example one waiting for a tool's answer) is kept.
  bool drop_finished_analysis = true;
};

// Strings of the harmony special tokens.
inline constexpr std::string_view kHarmonyStart = "<|start|>";
inline constexpr std::string_view kHarmonyEnd = "<|end|>";
inline constexpr std::string_view kHarmonyMessage = "<|message|>";
inline constexpr std::string_view kHarmonyChannel = "<|channel|>";
inline constexpr std::string_view kHarmonyConstrain = "<|constrain|>";
inline constexpr std::string_view kHarmonyReturn = "<|return|>";
inline constexpr std::string_view kHarmonyCall = "<|call|>";

// The ids of the harmony special tokens in `tokenizer`; throws Error naming the first one it lacks
// (only o200k has them). <|return|> and <|call|> are the ids that end generation.
struct HarmonyTokenIds {
  int32_t start, end, message, channel, constrain, return_, call;
};
HarmonyTokenIds harmony_token_ids(const Tokenizer& tokenizer);

// The conversation as text with special-token strings, ready for the model to write the next
// assistant message: it ends with "<|start|>assistant". Throws Error for a tool message without a
// tool name, or a function whose parameters are not a JSON-schema object.
std::string render_harmony_for_completion(const HarmonyConversation& conversation,
                                          const HarmonyRenderOptions& options = {});
// The conversation as text, without the trailing "<|start|>assistant".
std::string render_harmony(const HarmonyConversation& conversation, const HarmonyRenderOptions& options = {});

// The same as token ids: special tokens as their ids and everything between them as ordinary text
// (a special-token string inside a message's text stays plain text). `tokenizer` must have the
// harmony special tokens (o200k); throws Error otherwise.
std::vector<int32_t> render_harmony_tokens_for_completion(const HarmonyConversation& conversation,
                                                          const Tokenizer& tokenizer,
                                                          const HarmonyRenderOptions& options = {});

// The content of the system message and of the developer message (without header or end token).
// `conversation_has_functions` adds the line telling the model that function calls go to the
// commentary channel.
std::string render_system_content(const SystemOptions& system, bool conversation_has_functions);
std::string render_developer_content(const DeveloperOptions& developer);

}  // namespace switchyard::tokenizer
