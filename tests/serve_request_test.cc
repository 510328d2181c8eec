// Request parsing of the OpenAI-compatible API (serve/api_request.h): every accepted form of each
// field, and every refusal with its HTTP status, param and code.
#include <gtest/gtest.h>

#include <string>

#include "serve/api_error.h"
#include "serve/api_request.h"

namespace switchyard::serve {
namespace {

const ServedModelLimits kLimits{.name = "tiny", .context_length = 256, .vocab_size = 1000};

ApiRequest completion(const std::string& body) { return parse_api_request(Endpoint::kCompletions, body, kLimits); }
ApiRequest chat(const std::string& body) { return parse_api_request(Endpoint::kChatCompletions, body, kLimits); }

// The ApiError parsing `body` throws.
ApiError refusal(Endpoint endpoint, const std::string& body) {
  try {
    parse_api_request(endpoint, body, kLimits);
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body;
  return ApiError(0, "", "");
}

void expect_refused(Endpoint endpoint, const std::string& body, int status, const std::string& param,
                    const std::string& code, const std::string& words) {
  const ApiError e = refusal(endpoint, body);
  EXPECT_EQ(e.status, status) << body << ": " << e.message;
  EXPECT_EQ(e.param, param) << body << ": " << e.message;
  EXPECT_EQ(e.code, code) << body << ": " << e.message;
  EXPECT_EQ(e.type, "invalid_request_error");
  EXPECT_NE(e.message.find(words), std::string::npos) << "'" << e.message << "' lacks '" << words << "'";
}

TEST(ServeRequest, CompletionPromptForms) {
  ApiRequest r = completion(R"({"model": "tiny", "prompt": "Hello"})");
  EXPECT_EQ(r.prompt_text, "Hello");
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_EQ(r.top_logprobs, -1);
  EXPECT_FALSE(r.stream);
  r = completion(R"({"model": "tiny", "prompt": [1, 2, 999]})");
  EXPECT_FALSE(r.prompt_text.has_value());
  EXPECT_EQ(r.prompt_tokens, (std::vector<int32_t>{1, 2, 999}));
  r = completion(R"({"model": "tiny", "prompt": ["only one"]})");
  EXPECT_EQ(r.prompt_text, "only one");
}

TEST(ServeRequest, EveryParameterIsRead) {
  const ApiRequest r = completion(R"({"model": "tiny", "prompt": "x", "max_tokens": 7, "temperature": 0.5,
      "top_p": 0.9, "top_k": 40, "seed": -3, "stop": ["a", "bc"], "logprobs": 2, "n": 1, "stream": true,
      "stream_options": {"include_usage": true}, "user": "u1", "unknown_field": {"x": [1]}, "echo": null})");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_EQ(r.seed, -3);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(r.top_logprobs, 2);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.user, "u1");
  // null means "not given".
  const ApiRequest nulls = completion(R"({"model": "tiny", "prompt": "x", "max_tokens": null, "stop": null,
      "temperature": null, "logprobs": null})");
  EXPECT_FALSE(nulls.max_tokens.has_value());
  EXPECT_TRUE(nulls.stop.empty());
  EXPECT_EQ(nulls.top_logprobs, -1);
  EXPECT_EQ(completion(R"({"model": "tiny", "prompt": "x", "stop": "end"})").stop, std::vector<std::string>{"end"});
}

TEST(ServeRequest, ChatMessagesAndOptions) {
  const ApiRequest r = chat(R"({"model": "tiny", "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "developer", "content": [{"type": "text", "text": "Use "}, {"type": "text", "text": "French."}]},
      {"role": "user", "content": "Hi", "name": "ann"},
      {"role": "assistant", "content": null},
      {"role": "user", "content": "Again"}],
      "reasoning_effort": "high", "max_completion_tokens": 9, "max_tokens": 100,
      "logprobs": true, "top_logprobs": 3})");
  ASSERT_EQ(r.messages.size(), 5u);
  EXPECT_EQ(r.messages[0].role, ChatRole::kSystem);
  EXPECT_EQ(r.messages[1].content, "Use French.");
  EXPECT_EQ(r.messages[1].role, ChatRole::kDeveloper);
  EXPECT_EQ(r.messages[3].role, ChatRole::kAssistant);
  EXPECT_EQ(r.messages[3].content, "");
  EXPECT_EQ(r.reasoning_effort, tokenizer::ReasoningEffort::kHigh);
  EXPECT_EQ(r.max_tokens, 9);  // max_completion_tokens wins over the older name
  EXPECT_EQ(r.top_logprobs, 3);
  EXPECT_EQ(chat(R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"logprobs":true})").top_logprobs, 0);
  EXPECT_EQ(chat(R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"logprobs":false})").top_logprobs, -1);
  EXPECT_EQ(chat(R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":5})").max_tokens, 5);
}

TEST(ServeRequest, MalformedBodies) {
  for (const std::string body : {"", "{", R"({"model": "tiny",})", "nul", "{\"model\": \"\xff\"}"}) {
    expect_refused(Endpoint::kCompletions, body, 400, "", "", "could not parse the JSON body");
  }
  expect_refused(Endpoint::kCompletions, "[1, 2]", 400, "", "", "must be a JSON object, but it is array");
  expect_refused(Endpoint::kCompletions, R"({"model": "tiny", "model": "tiny", "prompt": "x"})", 400, "", "",
                 "the key \"model\" appears twice");
  expect_refused(Endpoint::kCompletions, std::string(100, '[') + std::string(100, ']'), 400, "", "",
                 "could not parse");
}

TEST(ServeRequest, ModelMissingOrUnknown) {
  expect_refused(Endpoint::kCompletions, R"({"prompt": "x"})", 400, "model", "missing_required_parameter",
                 "must provide a model");
  expect_refused(Endpoint::kCompletions, R"({"model": 3, "prompt": "x"})", 400, "model", "invalid_type",
                 "expected a string, but got integer");
  expect_refused(Endpoint::kChatCompletions, R"({"model": "gpt-4o", "messages": []})", 404, "", "model_not_found",
                 "The model `gpt-4o` does not exist");
}

TEST(ServeRequest, WrongTypesNameTheParam) {
  const std::string head = R"({"model": "tiny", "prompt": "x", )";
  const std::pair<std::string, std::string> cases[] = {
      {R"("max_tokens": "5")", "max_tokens"}, {R"("max_tokens": 5.5)", "max_tokens"},
      {R"("temperature": "hot")", "temperature"}, {R"("top_p": [1])", "top_p"},
      {R"("seed": 1.5)", "seed"},         {R"("stop": 5)", "stop"},
      {R"("stop": ["a", 1])", "stop"},    {R"("logprobs": true)", "logprobs"},
      {R"("stream": "yes")", "stream"},   {R"("stream": true, "stream_options": 1)", "stream_options"},
      {R"("stream": true, "stream_options": {"include_usage": 1})", "stream_options.include_usage"},
      {R"("user": 5)", "user"},           {R"("n": "1")", "n"},
      {R"("top_k": 1.5)", "top_k"}};
  for (const auto& [field, param] : cases) {
    expect_refused(Endpoint::kCompletions, head + field + "}", 400, param, "invalid_type", "Invalid type for '" + param);
  }
  expect_refused(Endpoint::kCompletions, R"({"model": "tiny", "prompt": 5})", 400, "prompt", "invalid_type",
                 "expected a string or an array");
  expect_refused(Endpoint::kCompletions, R"({"model": "tiny", "prompt": [1, "a"]})", 400, "prompt", "invalid_value",
                 "one prompt per request");
  expect_refused(Endpoint::kCompletions, R"({"model": "tiny", "prompt": [1, 2.5]})", 400, "prompt", "invalid_type",
                 "prompt[1]");
  expect_refused(Endpoint::kChatCompletions, R"({"model": "tiny", "messages": {}})", 400, "messages", "invalid_type",
                 "expected an array");
  expect_refused(Endpoint::kChatCompletions, R"({"model": "tiny", "messages": [{"role": "user", "content": 5}]})", 400,
                 "messages[0].content", "invalid_type", "Invalid type for 'messages[0].content'");
  expect_refused(Endpoint::kChatCompletions, R"({"model": "tiny", "messages": ["hi"]})", 400, "messages[0]",
                 "invalid_type", "expected an object");
  expect_refused(Endpoint::kChatCompletions,
                 R"({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "logprobs": 1})", 400, "logprobs",
                 "invalid_type", "expected a boolean");
}

TEST(ServeRequest, ValuesOutOfRange) {
  const std::string head = R"({"model": "tiny", "prompt": "x", )";
  const std::pair<std::string, std::string> cases[] = {
      {R"("max_tokens": 0)", "max_tokens"},  {R"("max_tokens": -4)", "max_tokens"},
      {R"("temperature": 2.5)", "temperature"}, {R"("temperature": -0.1)", "temperature"},
      {R"("top_p": 0)", "top_p"},            {R"("top_p": 1.01)", "top_p"},
      {R"("logprobs": 6)", "logprobs"},      {R"("logprobs": -1)", "logprobs"},
      {R"("n": 2)", "n"},                    {R"("n": 0)", "n"},
      {R"("top_k": -2)", "top_k"}};
  for (const auto& [field, param] : cases) {
    expect_refused(Endpoint::kCompletions, head + field + "}", 400, param, "invalid_value", "Invalid value for '" + param);
  }
  // Past the context (256): at most 255 leave room for a one-token prompt.
  EXPECT_EQ(completion(head + R"("max_tokens": 255})").max_tokens, 255);
  expect_refused(Endpoint::kCompletions, head + R"("max_tokens": 256})", 400, "max_tokens", "context_length_exceeded",
                 "context of 256 tokens");
  expect_refused(Endpoint::kCompletions, head + R"("max_tokens": 18446744073709551615})", 400, "max_tokens",
                 "invalid_value", "too large");
  expect_refused(Endpoint::kCompletions, head + R"("stop": ["a", "b", "c", "d", "e"]})", 400, "stop", "invalid_value",
                 "at most 4");
  expect_refused(Endpoint::kCompletions, head + R"("stop": ""})", 400, "stop", "invalid_value", "cannot be empty");
  expect_refused(Endpoint::kCompletions, head + R"("stream_options": {"include_usage": true}})", 400, "stream_options",
                 "invalid_value", "only allowed when 'stream' is true");
  expect_refused(Endpoint::kCompletions, R"({"model": "tiny", "prompt": [1, 1000]})", 400, "prompt", "invalid_value",
                 "token id 1000 is outside the model's vocabulary [0, 1000)");
  expect_refused(Endpoint::kCompletions, R"({"model": "tiny", "prompt": [-1]})", 400, "prompt", "invalid_value",
                 "outside the model's vocabulary");
  expect_refused(Endpoint::kCompletions, R"({"model": "tiny", "prompt": []})", 400, "prompt", "invalid_value", "empty");
  expect_refused(Endpoint::kCompletions, R"({"model": "tiny"})", 400, "prompt", "missing_required_parameter",
                 "provide a prompt");

  const std::string chat_head = R"({"model": "tiny", "messages": [{"role": "user", "content": "x"}], )";
  expect_refused(Endpoint::kChatCompletions, chat_head + R"("top_logprobs": 21, "logprobs": true})", 400,
                 "top_logprobs", "invalid_value", "from 0 to 20");
  expect_refused(Endpoint::kChatCompletions, chat_head + R"("top_logprobs": 2})", 400, "top_logprobs", "invalid_value",
                 "'logprobs' must be true");
  expect_refused(Endpoint::kChatCompletions, chat_head + R"("reasoning_effort": "extreme"})", 400, "reasoning_effort",
                 "invalid_value", "'low', 'medium' or 'high'");
  expect_refused(Endpoint::kChatCompletions, chat_head + R"("max_completion_tokens": 0})", 400,
                 "max_completion_tokens", "invalid_value", "at least 1");
  expect_refused(Endpoint::kChatCompletions, R"({"model": "tiny", "messages": []})", 400, "messages", "empty_array",
                 "empty array");
  expect_refused(Endpoint::kChatCompletions, R"({"model": "tiny", "messages": [{"role": "tool", "content": "x"}]})",
                 400, "messages[0].role", "invalid_value", "'tool' is not a supported role");
  expect_refused(Endpoint::kChatCompletions, R"({"model": "tiny", "messages": [{"content": "x"}]})", 400,
                 "messages[0].role", "missing_required_parameter", "messages[0].role");
  expect_refused(Endpoint::kChatCompletions, R"({"model": "tiny", "messages": [{"role": "user"}]})", 400,
                 "messages[0].content", "missing_required_parameter", "messages[0].content");
  expect_refused(Endpoint::kChatCompletions,
                 R"({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", 400,
                 "messages[0].content[0].type", "invalid_value", "only text parts");
}

TEST(ServeRequest, ErrorBodyIsOpenAisShape) {
  const nlohmann::json body = error_body(ApiError(404, "gone", "invalid_request_error", "", "model_not_found"));
  EXPECT_EQ(body, nlohmann::json::parse(
                      R"({"error": {"message": "gone", "type": "invalid_request_error", "param": null, "code": "model_not_found"}})"));
  EXPECT_EQ(error_body(invalid_request("bad", "stop"))["error"]["param"], "stop");
  EXPECT_TRUE(error_body(invalid_request("bad", "stop"))["error"]["code"].is_null());
}

}  // namespace
}  // namespace switchyard::serve
