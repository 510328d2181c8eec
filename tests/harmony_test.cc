// The harmony chat format (tokenizer/harmony.h, harmony_parser.h) against OpenAI's published
// examples (https://github.com/openai/harmony/blob/main/docs/format.md): rendered text and ids,
// parsing and streaming of replies, and the errors for malformed ones.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "expect_error.h"
#include "tokenizer/harmony.h"
#include "tokenizer/harmony_parser.h"
#include "tokenizer/tokenizer.h"

namespace switchyard::tokenizer {
namespace {

const std::string kRanksPath = std::string(SWITCHYARD_SHARED_DATA) + "/o200k/o200k_base.tiktoken";

// The o200k tokenizer, or nullptr when its ranks file is absent.
const Tokenizer* o200k() {
  static const std::unique_ptr<Tokenizer> tokenizer =
      std::filesystem::exists(kRanksPath) ? load_o200k_tokenizer(kRanksPath) : nullptr;
  return tokenizer.get();
}

#define REQUIRE_O200K()                                             \
  if (o200k() == nullptr) GTEST_SKIP() << kRanksPath << " is absent"

HarmonyMessage user(std::string text) { return {.role = HarmonyRole::kUser, .text = std::move(text)}; }
HarmonyMessage assistant(HarmonyChannel channel, std::string text) {
  return {.role = HarmonyRole::kAssistant, .channel = channel, .text = std::move(text)};
}

// The system message of the spec's examples: identity, dates, high reasoning, the three channels.
SystemOptions spec_system() {
  SystemOptions system;
  system.knowledge_cutoff = "2024-06";
  system.current_date = "2025-06-28";
  system.reasoning_effort = ReasoningEffort::kHigh;
  return system;
}

// The three functions of the spec's "Function calling" example.
HarmonyToolNamespace spec_functions() {
  const auto schema = [](const char* text) { return nlohmann::ordered_json::parse(text); };
  return {.name = "functions",
          .tools = {{"get_location", "Gets the location of the user.", std::nullopt},
                    {"get_current_weather", "Gets the current weather in the provided location.",
                     schema(R"({"type": "object", "properties": {
                       "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                       "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}},
                       "required": ["location"]})")},
                    {"get_multiple_weathers", "Gets the current weather in the provided list of locations.",
                     schema(R"({"type": "object", "properties": {
                       "locations": {"type": "array", "items": {"type": "string"},
                         "description": "List of city and state, e.g. [\"San Francisco, CA\", \"New York, NY\"]"},
                       "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}},
                       "required": ["locations"]})")}}};
}

// The spec's system and developer messages with the three functions, as its "Function calling"
// section writes them.
const std::string kSpecSystemAndDeveloper =
    "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
    "Knowledge cutoff: 2024-06\n"
    "Current date: 2025-06-28\n\n"
    "Reasoning: high\n\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every message.\n"
    "Calls to these tools must go to the commentary channel: 'functions'.<|end|>"
    "<|start|>developer<|message|># Instructions\n\n"
    "Use a friendly tone.\n\n"
    "# Tools\n\n"
    "## functions\n\n"
    "namespace functions {\n\n"
    "// Gets the location of the user.\n"
    "type get_location = () => any;\n\n"
    "// Gets the current weather in the provided location.\n"
    "type get_current_weather = (_: {\n"
    "// The city and state, e.g. San Francisco, CA\n"
    "location: string,\n"
    "format?: \"celsius\" | \"fahrenheit\", // default: celsius\n"
    "}) => any;\n\n"
    "// Gets the current weather in the provided list of locations.\n"
    "type get_multiple_weathers = (_: {\n"
    "// List of city and state, e.g. [\"San Francisco, CA\", \"New York, NY\"]\n"
    "locations: string[],\n"
    "format?: \"celsius\" | \"fahrenheit\", // default: celsius\n"
    "}) => any;\n\n"
    "} // namespace functions<|end|>";

HarmonyConversation spec_tools_conversation() {
  HarmonyConversation c;
  c.system = spec_system();
  c.developer = DeveloperOptions{.instructions = "Use a friendly tone.", .tools = {spec_functions()}};
  c.messages = {user("What is the weather like in SF?")};
  return c;
}

// Text and ids agree: the ids are the expected text encoded with its special tokens.
void expect_renders(const HarmonyConversation& c, const std::string& expected,
                    const HarmonyRenderOptions& options = {}) {
  EXPECT_EQ(render_harmony_for_completion(c, options), expected);
  if (o200k() != nullptr) {
    EXPECT_EQ(render_harmony_tokens_for_completion(c, *o200k(), options), o200k()->encode_with_special_tokens(expected));
  }
}

TEST(HarmonyRender, SystemDeveloperAndUserWithFunctionsAsTheSpecShows) {
  expect_renders(spec_tools_conversation(),
                 kSpecSystemAndDeveloper + "<|start|>user<|message|>What is the weather like in SF?<|end|><|start|>assistant");
}

TEST(HarmonyRender, BasicSystemAndDeveloperMessages) {
  // The spec's "Developer message format": instructions only; no functions, so no 'functions' line.
  HarmonyConversation c;
  c.system = spec_system();
  c.system->reasoning_effort = ReasoningEffort::kLow;
  c.developer = DeveloperOptions{.instructions = "Always respond in riddles"};
  c.messages = {user("What is 2 + 2?")};
  expect_renders(c,
                 "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
                 "Knowledge cutoff: 2024-06\nCurrent date: 2025-06-28\n\nReasoning: low\n\n"
                 "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>"
                 "<|start|>developer<|message|># Instructions\n\nAlways respond in riddles<|end|>"
                 "<|start|>user<|message|>What is 2 + 2?<|end|><|start|>assistant");
}

TEST(HarmonyRender, FinishedTurnDropsItsAnalysis) {
  // The spec's "Handling reasoning output in subsequent sampling" (its line breaks between
  // messages are for reading; the stored final message ends with <|end|>, not <|return|>).
  HarmonyConversation c;
  c.messages = {user("What is 2 + 2?"),
                assistant(HarmonyChannel::kAnalysis, "User asks: \"What is 2 + 2?\" Simple arithmetic. Provide answer."),
                assistant(HarmonyChannel::kFinal, "2 + 2 = 4."), user("What about 9 / 2?")};
  expect_renders(c,
                 "<|start|>user<|message|>What is 2 + 2?<|end|>"
                 "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|end|>"
                 "<|start|>user<|message|>What about 9 / 2?<|end|><|start|>assistant");
  expect_renders(c,
                 "<|start|>user<|message|>What is 2 + 2?<|end|>"
                 "<|start|>assistant<|channel|>analysis<|message|>User asks: \"What is 2 + 2?\" Simple arithmetic. "
                 "Provide answer.<|end|>"
                 "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|end|>"
                 "<|start|>user<|message|>What about 9 / 2?<|end|><|start|>assistant",
                 {.drop_finished_analysis = false});
}

TEST(HarmonyRender, ToolCallTurnKeepsItsAnalysis) {
  // The spec's "Handling tool calls": the chain of thought before the call goes back in, with the
  // call (ended by <|call|>) and the tool's answer. The recipient stands after the role, where
  // OpenAI's renderer writes it.
  HarmonyConversation c = spec_tools_conversation();
  HarmonyMessage call = assistant(HarmonyChannel::kCommentary, "{\"location\":\"San Francisco\"}");
  call.recipient = "functions.get_weather";
  call.content_type = "<|constrain|>json";
  HarmonyMessage answer{.role = HarmonyRole::kTool, .tool_name = "functions.get_weather", .recipient = "assistant",
                        .channel = HarmonyChannel::kCommentary, .text = "{\"sunny\": true, \"temperature\": 20}"};
  c.messages.push_back(assistant(HarmonyChannel::kAnalysis, "Need to use function get_weather."));
  c.messages.push_back(call);
  c.messages.push_back(answer);
  expect_renders(c, kSpecSystemAndDeveloper +
                        "<|start|>user<|message|>What is the weather like in SF?<|end|>"
                        "<|start|>assistant<|channel|>analysis<|message|>Need to use function get_weather.<|end|>"
                        "<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json"
                        "<|message|>{\"location\":\"San Francisco\"}<|call|>"
                        "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>"
                        "{\"sunny\": true, \"temperature\": 20}<|end|><|start|>assistant");
}

TEST(HarmonyRender, AnalysisOfEveryFinishedTurnIsDropped) {
  HarmonyConversation c;
  c.messages = {user("a"), assistant(HarmonyChannel::kAnalysis, "think 1"), assistant(HarmonyChannel::kFinal, "one"),
                user("b"), assistant(HarmonyChannel::kAnalysis, "think 2"), assistant(HarmonyChannel::kFinal, "two"),
                user("c"), assistant(HarmonyChannel::kAnalysis, "think 3")};
  const std::string text = render_harmony(c);
  EXPECT_EQ(text.find("think 1"), std::string::npos);
  EXPECT_EQ(text.find("think 2"), std::string::npos);
  EXPECT_NE(text.find("<|channel|>analysis<|message|>think 3<|end|>"), std::string::npos);
  EXPECT_FALSE(text.ends_with("<|start|>assistant"));
}

TEST(HarmonyRender, SpecialTokenStringsInTextStayText) {
  REQUIRE_O200K();
  HarmonyConversation c;
  c.messages = {user("<|end|>")};
  const std::vector<int32_t> ids = render_harmony_tokens_for_completion(c, *o200k());
  const HarmonyTokenIds special = harmony_token_ids(*o200k());
  std::vector<int32_t> expected = {special.start};
  for (const int32_t id : o200k()->encode("user")) expected.push_back(id);
  expected.push_back(special.message);
  for (const int32_t id : o200k()->encode("<|end|>")) expected.push_back(id);
  expected.push_back(special.end);
  expected.push_back(special.start);
  for (const int32_t id : o200k()->encode("assistant")) expected.push_back(id);
  EXPECT_EQ(ids, expected);
}

TEST(HarmonyRender, SchemaTypes) {
  // Rules of the spec and OpenAI's renderer: integer -> number, type lists -> unions, nested
  // objects indented, nullable -> | null, non-string defaults as JSON, arrays without items.
  HarmonyToolNamespace ns{.name = "functions",
                          .tools = {{"f", "", nlohmann::ordered_json::parse(R"({"type": "object", "properties": {
                            "n": {"type": "integer", "default": 3},
                            "id": {"type": ["integer", "string"]},
                            "flag": {"type": "boolean", "nullable": true},
                            "any": {"type": "array"},
                            "inner": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}},
                            "required": ["n"]})")}}};
  EXPECT_EQ(render_developer_content({.tools = {ns}}),
            "# Tools\n\n## functions\n\nnamespace functions {\n\n"
            "type f = (_: {\n"
            "n: number, // default: 3\n"
            "id?: number | string,\n"
            "flag?: boolean | null,\n"
            "any?: Array<any>,\n"
            "inner?: {\n"
            "    x: number,\n"
            "    },\n"
            "}) => any;\n\n"
            "} // namespace functions");
}

TEST(HarmonyRender, Errors) {
  HarmonyConversation c;
  c.messages = {{.role = HarmonyRole::kTool, .text = "{}"}};
  expect_error([&] { render_harmony(c); }, {"tool message", "name"});
  HarmonyConversation bad_schema;
  bad_schema.developer = DeveloperOptions{
      .tools = {{.name = "functions", .tools = {{"f", "d", nlohmann::ordered_json::array()}}}}};
  expect_error([&] { render_harmony(bad_schema); }, {"'f'", "JSON schema object"});
  const auto bytes = make_byte_tokenizer();
  expect_error([&] { render_harmony_tokens_for_completion(spec_tools_conversation(), *bytes); }, {"byte"});
}

std::vector<int32_t> ids_of(const std::string& text) { return o200k()->encode_with_special_tokens(text); }

void expect_message(const HarmonyMessage& m, HarmonyChannel channel, const std::string& text) {
  EXPECT_EQ(m.role, HarmonyRole::kAssistant);
  EXPECT_EQ(m.channel, channel);
  EXPECT_EQ(m.text, text);
}

TEST(HarmonyParse, AnalysisThenFinal) {
  REQUIRE_O200K();
  // The spec's example output, and the same reply as the ids the spec lists for its stream parser.
  const std::vector<int32_t> from_text = ids_of(
      "<|channel|>analysis<|message|>User asks: \"What is 2 + 2?\" Simple arithmetic. Provide answer.<|end|>"
      "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>");
  const std::vector<int32_t> from_spec = {200005, 35644, 200008, 1844,  31064,  25,    392,   4827,  382,
                                          220,    17,    659,    220,   17,     16842, 12295, 81645, 13,
                                          51441,  6052,  13,     200007, 200006, 173781, 200005, 17196, 200008,
                                          17,     659,   220,    17,    314,    220,   19,    13,    200002};
  EXPECT_EQ(from_text, from_spec);
  const HarmonyCompletion reply = parse_harmony_completion(from_spec, *o200k());
  ASSERT_EQ(reply.messages.size(), 2u);
  expect_message(reply.messages[0], HarmonyChannel::kAnalysis,
                 "User asks: \"What is 2 + 2?\" Simple arithmetic. Provide answer.");
  expect_message(reply.messages[1], HarmonyChannel::kFinal, "2 + 2 = 4.");
  EXPECT_FALSE(reply.messages[1].recipient.has_value());
  EXPECT_EQ(reply.stop, HarmonyStop::kReturn);
}

TEST(HarmonyParse, ToolCall) {
  REQUIRE_O200K();
  // The recipient after the channel (the spec's example output) or after the role.
  for (const std::string header : {"<|channel|>commentary to=functions.get_weather <|constrain|>json",
                                   " to=functions.get_weather<|channel|>commentary <|constrain|>json",
                                   "<|channel|>commentary to=functions.get_weather<|constrain|>json"}) {
    const HarmonyCompletion reply = parse_harmony_completion(
        ids_of("<|channel|>analysis<|message|>Need to use function get_weather.<|end|><|start|>assistant" + header +
               "<|message|>{\"location\":\"San Francisco\"}<|call|>"),
        *o200k());
    ASSERT_EQ(reply.messages.size(), 2u) << header;
    expect_message(reply.messages[0], HarmonyChannel::kAnalysis, "Need to use function get_weather.");
    const HarmonyMessage& call = reply.messages[1];
    expect_message(call, HarmonyChannel::kCommentary, "{\"location\":\"San Francisco\"}");
    EXPECT_EQ(call.recipient, "functions.get_weather") << header;
    EXPECT_EQ(call.content_type, "<|constrain|>json") << header;
    EXPECT_EQ(reply.stop, HarmonyStop::kCall);
  }
}

TEST(HarmonyParse, OpenAiParserTestReply) {
  REQUIRE_O200K();
  // The ids of openai/harmony's test_simple_tool_call: a content type without <|constrain|>, and
  // the reply cut short before any stop token.
  const std::vector<int32_t> ids = {200005, 35644, 200008, 1844,  31064, 25,     392,    4827,  382,   290,
                                    11122,  306,   40510,  16842, 1416,  1309,   316,    1199,  37342, 170154,
                                    4584,   13,    200007, 200006, 173781, 200005, 35644, 316,   28,    29712,
                                    170154, 3490,  200008, 10848, 7693,  1243,   392,    173844, 18583};
  const HarmonyCompletion reply = parse_harmony_completion(ids, *o200k());
  ASSERT_EQ(reply.messages.size(), 2u);
  expect_message(reply.messages[0], HarmonyChannel::kAnalysis,
                 "User asks: \"What is the weather in Tokyo?\" We need to use lookup_weather tool.");
  expect_message(reply.messages[1], HarmonyChannel::kAnalysis, "{\"location\": \"Tokyo\"}");
  EXPECT_EQ(reply.messages[1].recipient, "lookup_weather");
  EXPECT_EQ(reply.messages[1].content_type, "code");
  EXPECT_EQ(reply.stop, HarmonyStop::kNone);
}

TEST(HarmonyParse, RenderedHistoryParsesBack) {
  REQUIRE_O200K();
  // A tool message, as the renderer writes it, read back after its <|start|>.
  const std::vector<int32_t> ids = ids_of(
      "<|channel|>final<|message|>ok<|end|><|start|>functions.get_weather to=assistant<|channel|>commentary"
      "<|message|>{}<|end|>");
  const HarmonyCompletion reply = parse_harmony_completion(ids, *o200k());
  ASSERT_EQ(reply.messages.size(), 2u);
  EXPECT_EQ(reply.messages[1].role, HarmonyRole::kTool);
  EXPECT_EQ(reply.messages[1].tool_name, "functions.get_weather");
  EXPECT_EQ(reply.messages[1].recipient, "assistant");
  EXPECT_EQ(reply.messages[1].channel, HarmonyChannel::kCommentary);
}

TEST(HarmonyStream, DeltasAddUpToTheWholeParse) {
  REQUIRE_O200K();
  const std::vector<int32_t> ids = ids_of(
      "<|channel|>analysis<|message|>User asks: \"What is 2 + 2?\" Simple arithmetic.<|end|>"
      "<|start|>assistant<|channel|>commentary<|message|>Plan: compute.<|end|>"
      "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4, naïvely — 四.<|return|>");
  const HarmonyCompletion whole = parse_harmony_completion(ids, *o200k());
  ASSERT_EQ(whole.messages.size(), 3u);

  HarmonyStreamParser parser(*o200k());
  std::vector<std::string> texts(3);
  size_t message = 0, tokens_with_text = 0;
  for (const int32_t id : ids) {
    const HarmonyDelta delta = parser.process(id);
    if (!delta.text.empty()) {
      ASSERT_TRUE(delta.channel.has_value());
      EXPECT_EQ(*delta.channel, whole.messages[message].channel);
      ASSERT_NE(parser.current(), nullptr);
      texts[message] += delta.text;
      ++tokens_with_text;
    }
    if (delta.message_done) ++message;
    EXPECT_EQ(delta.stop, id == ids.back() ? HarmonyStop::kReturn : HarmonyStop::kNone);
  }
  EXPECT_TRUE(parser.done());
  EXPECT_GT(tokens_with_text, 10u);  // streamed token by token, not at the end
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(texts[i], whole.messages[i].text);
  EXPECT_EQ(whole.messages[2].text, "2 + 2 = 4, naïvely — 四.");
}

TEST(HarmonyStream, CharactersSplitAcrossTokensWaitForTheirLastByte) {
  REQUIRE_O200K();
  const HarmonyTokenIds special = harmony_token_ids(*o200k());
  std::vector<int32_t> ids = ids_of("<|channel|>final<|message|>");
  // U+1F984 (F0 9F A6 84) one byte per token, then a byte that is never valid, then an unfinished
  // character at the end of the message.
  for (const char* byte : {"\xF0", "\x9F", "\xA6", "\x84", "\xFF", "\xE2", "\x82"}) {
    const std::vector<int32_t> one = o200k()->encode(byte);
    ASSERT_EQ(one.size(), 1u);
    ids.push_back(one[0]);
  }
  ids.push_back(special.end);
  HarmonyStreamParser parser(*o200k());
  std::vector<std::string> deltas;
  for (const int32_t id : ids) deltas.push_back(parser.process(id).text);
  const size_t first = ids.size() - 8;
  EXPECT_EQ(deltas[first], "");
  EXPECT_EQ(deltas[first + 1], "");
  EXPECT_EQ(deltas[first + 2], "");
  EXPECT_EQ(deltas[first + 3], "\xF0\x9F\xA6\x84");
  EXPECT_EQ(deltas[first + 4], "\xEF\xBF\xBD");
  EXPECT_EQ(deltas[first + 5], "");
  EXPECT_EQ(deltas[first + 6], "");
  EXPECT_EQ(deltas[first + 7], "\xEF\xBF\xBD");  // E2 82 never finished: one replacement
  ASSERT_EQ(parser.messages().size(), 1u);
  EXPECT_EQ(parser.messages()[0].text, "\xF0\x9F\xA6\x84\xEF\xBF\xBD\xEF\xBF\xBD");
}

void expect_parse_error(const std::string& text, const std::vector<std::string>& parts) {
  expect_error([&] { parse_harmony_completion(ids_of(text), *o200k()); }, parts);
}

TEST(HarmonyParse, MalformedRepliesAreErrorsNamingTheProblem) {
  REQUIRE_O200K();
  expect_parse_error("<|channel|>final<|message|>a<|end|>stray text", {"content before any header", "<|start|>"});
  expect_parse_error("<|channel|>thoughts<|message|>a<|end|>", {"unknown channel 'thoughts'"});
  expect_parse_error("<|channel|><|message|>a<|end|>", {"without a channel name"});
  expect_parse_error("<|channel|>final<|end|>", {"<|message|> missing"});
  expect_parse_error("<|channel|>final one two three<|message|>a<|end|>", {"unexpected text 'one'"});
  expect_parse_error("<|channel|>final<|message|>a<|start|>", {"<|start|> inside the content"});
  expect_parse_error("<|channel|>final<|message|>a<|return|>b", {"after the stop token <|return|>"});
  expect_parse_error("<|channel|>final<|message|>a<|call|><|start|>", {"after the stop token <|call|>"});
  expect_parse_error("<|channel|>final", {"ended inside a message header"});
  expect_parse_error("<|channel|>final<|message|>a<|end|><|start|>nobody<|message|>b<|end|>", {"unknown role 'nobody'"});
  for (const int32_t bad : {201088, -1}) {
    expect_error([&] { parse_harmony_completion(std::vector<int32_t>{bad}, *o200k()); },
                 {std::to_string(bad), "outside the vocabulary"});
  }
  const auto bytes = make_byte_tokenizer();
  expect_error([&] { HarmonyStreamParser parser(*bytes); }, {"byte"});
}

}  // namespace
}  // namespace switchyard::tokenizer
