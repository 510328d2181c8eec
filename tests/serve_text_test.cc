// The text side of serving: UTF-8 from token bytes that split characters, stop strings matched
// across token boundaries and never shown, harmony replies read into content and reasoning, the
// response and chunk shapes, and the Prometheus page.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "serve/histogram.h"
#include "serve/logprobs_json.h"
#include "serve/reply_text.h"
#include "serve/response_json.h"
#include "serve/server_metrics.h"
#include "serve/stop_matcher.h"
#include "tokenizer/harmony.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8_stream.h"

namespace switchyard::serve {
namespace {

using nlohmann::json;

// Pushes each piece and returns everything shown, with "|" between what each push returned.
std::string shown(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces) out += m.push(p).text + "|";
  return out;
}

TEST(ServeText, StopStringAcrossPiecesIsNeverShown) {
  StopMatcher m({"STOP", "\n\n"});
  // "ST" could begin "STOP": held back until "x" shows it is not.
  EXPECT_EQ(shown(m, {"ab", "cS", "T", "x"}), "ab|c||STx|");
  EXPECT_FALSE(m.stopped());
  const StopMatcher::Result r = m.push("yyST");
  EXPECT_EQ(r.text, "yy");
  EXPECT_FALSE(r.stopped);
  const StopMatcher::Result end = m.push("OPzz");
  EXPECT_EQ(end.text, "");
  EXPECT_TRUE(end.stopped);
  EXPECT_EQ(m.push("more").text, "");  // nothing after a stop
  EXPECT_EQ(m.flush(), "");
}

TEST(ServeText, EarliestStopWinsAndFlushReturnsHeldText) {
  StopMatcher m({"world", "lo w"});
  const StopMatcher::Result r = m.push("hello world");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "hel");
  StopMatcher held({"abc"});
  EXPECT_EQ(held.push("xab").text, "x");
  EXPECT_EQ(held.flush(), "ab");  // the reply ended: "ab" was never part of a stop
  StopMatcher none({});
  EXPECT_EQ(none.push("anything").text, "anything");
  // A stop string that overlaps itself ("aab" inside "aaab").
  StopMatcher overlap({"aab"});
  EXPECT_EQ(shown(overlap, {"a", "a", "a"}), "||a|");
  EXPECT_TRUE(overlap.push("b").stopped);
}

TEST(ServeText, Utf8StreamNeverSplitsACharacter) {
  tokenizer::Utf8Stream s;
  const std::string euro = "\xE2\x82\xAC";  // U+20AC, three bytes
  EXPECT_EQ(s.push("a\xE2"), "a");
  EXPECT_EQ(s.pending(), 1u);
  EXPECT_EQ(s.push("\x82"), "");
  EXPECT_EQ(s.push("\xAC" "b"), euro + "b");
  // An invalid byte becomes U+FFFD at once; an unfinished character at the end, at flush.
  EXPECT_EQ(s.push("\xFF"), std::string(tokenizer::kReplacementCharacter));
  EXPECT_EQ(s.push("\xF0\x9F"), "");
  EXPECT_EQ(s.flush(), std::string(tokenizer::kReplacementCharacter));
  // A lead byte followed by a byte that cannot continue it.
  EXPECT_EQ(s.push("\xE2" "x"), std::string(tokenizer::kReplacementCharacter) + "x");
}

TEST(ServeText, PlainReplyDecodesSplitCharactersAndStops) {
  const std::unique_ptr<tokenizer::Tokenizer> bytes = tokenizer::make_byte_tokenizer();
  // "é!" then a stop string "<e>" spread over three tokens, then more text.
  std::unique_ptr<ReplyText> reply = make_plain_reply(*bytes, {"<e>"});
  std::string content;
  bool stopped = false;
  for (const unsigned char b : std::string("\xC3\xA9!<e>tail")) {
    const ReplyDelta d = reply->add(b);
    if (b == 0xC3) {
      EXPECT_EQ(d.content, "");  // half of é is never shown
    }
    content += d.content;
    if (d.stopped) {
      stopped = true;
      break;
    }
  }
  EXPECT_TRUE(stopped);
  EXPECT_EQ(content, "\xC3\xA9!");
  // Without a stop, finish() gives back what was held.
  std::unique_ptr<ReplyText> open = make_plain_reply(*bytes, {"<e>"});
  std::string text;
  for (const unsigned char b : std::string("ab<")) text += open->add(b).content;
  EXPECT_EQ(text, "ab");
  EXPECT_EQ(open->finish().content, "<");
}

const tokenizer::Tokenizer* o200k() {
  static const std::string path = std::string(SWITCHYARD_SHARED_DATA) + "/o200k/o200k_base.tiktoken";
  static const std::unique_ptr<tokenizer::Tokenizer> t =
      std::filesystem::exists(path) ? tokenizer::load_o200k_tokenizer(path) : nullptr;
  return t.get();
}

TEST(ServeText, HarmonyReplySplitsReasoningFromContent) {
  if (!o200k()) GTEST_SKIP() << "the o200k ranks file is absent";
  const std::vector<int32_t> tokens = o200k()->encode_with_special_tokens(
      "<|channel|>analysis<|message|>User greets. Answer briefly.<|end|>"
      "<|start|>assistant<|channel|>final<|message|>Hello there! END more<|return|>");
  std::unique_ptr<ReplyText> reply = make_harmony_reply(*o200k(), tokenizer::harmony_token_ids(*o200k()), {});
  std::string content, reasoning;
  for (const int32_t t : tokens) {
    const ReplyDelta d = reply->add(t);
    content += d.content;
    reasoning += d.reasoning;
  }
  content += reply->finish().content;
  EXPECT_EQ(reasoning, "User greets. Answer briefly.");
  EXPECT_EQ(content, "Hello there! END more");

  // A stop string cuts the content, not the reasoning.
  std::unique_ptr<ReplyText> stopping = make_harmony_reply(*o200k(), tokenizer::harmony_token_ids(*o200k()), {" END"});
  content.clear();
  reasoning.clear();
  bool stopped = false;
  for (const int32_t t : tokens) {
    const ReplyDelta d = stopping->add(t);
    content += d.content;
    reasoning += d.reasoning;
    if (d.stopped) {
      stopped = true;
      break;
    }
  }
  EXPECT_TRUE(stopped);
  EXPECT_EQ(content, "Hello there!");
  EXPECT_EQ(reasoning, "User greets. Answer briefly.");

  // Text where a header belongs is refused, naming the problem.
  std::unique_ptr<ReplyText> broken = make_harmony_reply(*o200k(), tokenizer::harmony_token_ids(*o200k()), {});
  const std::vector<int32_t> junk = o200k()->encode_with_special_tokens("hello<|end|>");
  EXPECT_THROW(
      {
        for (const int32_t t : junk) broken->add(t);
        broken->finish();
      },
      Error);
}

TEST(ServeText, ResponseShapes) {
  const ResponseHeader h{.id = "cmpl-1", .created = 1700000000, .model = "tiny"};
  const Usage usage{.prompt_tokens = 5, .completion_tokens = 3, .cached_prompt_tokens = 2};
  const json c = completion_response(h, "abc", nullptr, "length", usage);
  EXPECT_EQ(c, json::parse(R"({"id": "cmpl-1", "object": "text_completion", "created": 1700000000, "model": "tiny",
      "choices": [{"index": 0, "text": "abc", "logprobs": null, "finish_reason": "length"}],
      "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                "prompt_tokens_details": {"cached_tokens": 2}}})"));
  const json chat = chat_response(h, "hi", "thinking", nullptr, "stop", usage);
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"], json::parse(R"({"role": "assistant", "content": "hi",
      "reasoning_content": "thinking"})"));
  EXPECT_FALSE(chat_response(h, "hi", "", nullptr, "stop", usage)["choices"][0]["message"].contains("reasoning_content"));
  const json chunk = chat_chunk(h, {{"content", "x"}}, nullptr, std::nullopt);
  EXPECT_EQ(chunk["object"], "chat.completion.chunk");
  EXPECT_TRUE(chunk["choices"][0]["finish_reason"].is_null());
  const json u = usage_chunk(Endpoint::kChatCompletions, h, usage);
  EXPECT_TRUE(u["choices"].empty());
  EXPECT_EQ(u["usage"]["total_tokens"], 8);
  // Invalid UTF-8 never breaks an event.
  EXPECT_EQ(sse_event(json{{"t", "a\xFF"}}), "data: {\"t\":\"a\xEF\xBF\xBD\"}\n\n");
}

TEST(ServeText, LogprobShapes) {
  const std::unique_ptr<tokenizer::Tokenizer> bytes = tokenizer::make_byte_tokenizer();
  const std::vector<GeneratedToken> tokens = {
      {.token = 'h', .chosen = TokenLogprob{'h', -0.5f}, .top = {{'h', -0.5f}, {'j', -1.5f}}},
      {.token = 0xC3, .chosen = TokenLogprob{0xC3, -2.0f}, .top = {{0xC3, -2.0f}, {'k', -2.5f}}}};
  const json c = completion_logprobs(tokens, *bytes, 10);
  EXPECT_EQ(c["tokens"], json::parse(R"(["h", "\ufffd"])"));
  EXPECT_EQ(c["token_logprobs"], json::parse("[-0.5, -2.0]"));
  EXPECT_EQ(c["top_logprobs"][0], json::parse(R"({"h": -0.5, "j": -1.5})"));
  EXPECT_EQ(c["text_offset"], json::parse("[10, 11]"));
  const json chat = chat_logprobs(chat_logprobs_content(tokens, *bytes));
  EXPECT_TRUE(chat["refusal"].is_null());
  EXPECT_EQ(chat["content"][1]["bytes"], json::parse("[195]"));
  EXPECT_EQ(chat["content"][0]["top_logprobs"][1], json::parse(R"({"token": "j", "logprob": -1.5, "bytes": [106]})"));
}

TEST(ServeText, HistogramBucketsAreCumulative) {
  Histogram h({0.1, 1.0});
  for (const double v : {0.05, 0.1, 0.5, 3.0}) h.observe(v);
  const Histogram::Snapshot s = h.snapshot();
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(s.count, 4u);
  EXPECT_DOUBLE_EQ(s.sum, 3.65);
}

TEST(ServeText, MetricsPage) {
  ServerMetrics server;
  server.count_finished("stop");
  server.count_finished("stop");
  server.count_finished("abort");
  server.time_to_first_token.observe(0.003);
  EngineStats engine;
  engine.running = 2;
  engine.waiting = 1;
  engine.kv_blocks_used = 3;
  engine.kv_blocks_free = 13;
  engine.prompt_tokens = 40;
  StepTimes steps(std::nullopt);
  steps.record(0.02, std::nullopt);
  const std::string page = render_metrics("my \"model\"", engine, server, steps);
  const std::string label = "{model_name=\"my \\\"model\\\"\"";
  for (const std::string& line : std::vector<std::string>{
           "# TYPE switchyard:num_requests_running gauge", "switchyard:num_requests_running" + label + "} 2",
        "switchyard:num_requests_waiting" + label + "} 1",
        "switchyard:request_success_total" + label + ",finished_reason=\"stop\"} 2",
        "switchyard:request_success_total" + label + ",finished_reason=\"abort\"} 1",
        "switchyard:kv_blocks_used" + label + "} 3", "switchyard:kv_blocks_free" + label + "} 13",
        "switchyard:kv_cache_usage_perc" + label + "} 0.1875", "switchyard:prompt_tokens_total" + label + "} 40",
        "# TYPE switchyard:time_to_first_token_seconds histogram",
        "switchyard:time_to_first_token_seconds_bucket" + label + ",le=\"0.001\"} 0",
        "switchyard:time_to_first_token_seconds_bucket" + label + ",le=\"0.005\"} 1",
        "switchyard:time_to_first_token_seconds_bucket" + label + ",le=\"+Inf\"} 1",
        "switchyard:time_to_first_token_seconds_count" + label + "} 1",
        "switchyard:e2e_request_latency_seconds_count" + label + "} 0",
        "switchyard:engine_step_seconds_bucket" + label + ",le=\"0.01\"} 0",
        "switchyard:engine_step_seconds_bucket" + label + ",le=\"0.025\"} 1",
        "switchyard:engine_step_seconds_count" + label + "} 1"}) {
    EXPECT_NE(page.find(line + "\n"), std::string::npos) << "missing: " << line;
  }
  EXPECT_EQ(page.find("simulated"), std::string::npos) << page;  // a real device: none of them
}

// On a simulator device: the device as labels of an info series, the total of the steps' simulated
// seconds (the engine's, published with its other counters) and their histogram.
TEST(ServeText, MetricsPageOfASimulatorDevice) {
  StepTimes steps(model::SimulatedDevice{.device = "trn2-sim", .target = "trn2", .core = "NeuronCore-v3",
                                         .cores_per_chip = 8});
  steps.record(1.5, 0.0005);
  steps.record(2.5, 0.003);
  EngineStats engine;
  engine.simulated_seconds = steps.simulated_total();
  const std::string page = render_metrics("m", engine, ServerMetrics(), steps);
  const std::string label = "{model_name=\"m\"";
  for (const std::string& line : std::vector<std::string>{
           "# TYPE switchyard:simulated_device_info gauge",
           "switchyard:simulated_device_info" + label +
               ",device=\"trn2-sim\",target=\"trn2\",core=\"NeuronCore-v3\",cores_per_chip=\"8\"} 1",
           "# TYPE switchyard:simulated_seconds_total counter",
           "switchyard:simulated_seconds_total" + label + "} 0.0035",
           "# TYPE switchyard:engine_step_simulated_seconds histogram",
           "switchyard:engine_step_simulated_seconds_bucket" + label + ",le=\"0.0005\"} 1",
           "switchyard:engine_step_simulated_seconds_bucket" + label + ",le=\"0.0025\"} 1",
           "switchyard:engine_step_simulated_seconds_bucket" + label + ",le=\"0.005\"} 2",
           "switchyard:engine_step_simulated_seconds_count" + label + "} 2",
           "switchyard:engine_step_seconds_count" + label + "} 2"}) {
    EXPECT_NE(page.find(line + "\n"), std::string::npos) << "missing: " << line << "\n" << page;
  }
}

}  // namespace
}  // namespace switchyard::serve
