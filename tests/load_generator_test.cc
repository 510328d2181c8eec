// The serving benchmark's load generator against a small scripted server in the test (it streams
// one word per token after known delays): request and token counts, the server's usage or counted
// chunks, the concurrency limit and arrival schedule kept, latencies at least the delays the server
// waited, and failures (HTTP errors, a stream cut short, nothing listening) reported per request.
// Latency bounds are one-sided or generous: the machine may be slow and busy.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "client/arrival_schedule.h"
#include "client/bench_report.h"
#include "client/load_generator.h"
#include "core/error.h"
#include "scripted_openai_server.h"

namespace switchyard::client {
namespace {

constexpr double kGenerousUpperBoundS = 60;

LoadSettings settings_for(const std::string& url, int requests, int max_tokens) {
  LoadSettings s;
  s.url = parse_server_url(url);
  s.connection.read_timeout_s = 30;
  s.model = "scripted-model";
  for (int i = 0; i < requests; ++i) s.prompts.push_back("prompt number " + std::to_string(i) + " has six words");
  s.max_tokens = max_tokens;
  s.request_rate = INFINITY;
  return s;
}

std::string expected_text(int tokens) {
  std::string text;
  for (int i = 0; i < tokens; ++i) text += "w" + std::to_string(i) + " ";
  return text;
}

TEST(LoadGenerator, CompletionsStreamedInPiecesWithDelays) {
  StreamScript script;
  script.first_token_delay_ms = 150;
  script.token_gap_ms = 40;
  script.split_events = true;  // events cut in two across writes
  script.crlf = true;
  script.comments = true;
  ScriptedOpenAiServer server(script);
  LoadSettings s = settings_for(server.url(), 8, 5);
  s.concurrency = 3;
  std::vector<LoadProgress> progress;
  const LoadRun run = run_load(s, [&](const LoadProgress& p) { progress.push_back(p); });

  EXPECT_EQ(server.requests(), 8);
  EXPECT_LE(server.max_in_flight(), 3);
  ASSERT_EQ(run.results.size(), 8u);
  for (const RequestResult& r : run.results) {
    ASSERT_TRUE(r.success) << r.error;
    EXPECT_EQ(r.text, expected_text(5));
    EXPECT_EQ(r.finish_reason, "length");
    EXPECT_EQ(r.output_tokens, 5);
    EXPECT_TRUE(r.output_tokens_from_usage);
    EXPECT_EQ(r.prompt_tokens, 6);  // the server counts words
    EXPECT_TRUE(r.prompt_tokens_from_usage);
    ASSERT_TRUE(r.ttft_s.has_value());
    EXPECT_GE(*r.ttft_s, 0.150);
    EXPECT_GE(r.e2e_s, 0.150 + 4 * 0.040);
    EXPECT_LE(*r.ttft_s, r.e2e_s);
    EXPECT_LT(r.e2e_s, kGenerousUpperBoundS);
    EXPECT_EQ(r.itl_s.size(), 4u);
    double last_chunk = *r.ttft_s;
    for (double gap : r.itl_s) last_chunk += gap;
    EXPECT_LE(last_chunk, r.e2e_s + 1e-9);
  }
  ASSERT_EQ(progress.size(), 8u);
  EXPECT_EQ(progress.back().finished, 8);
  EXPECT_EQ(progress.back().failed, 0);
  EXPECT_EQ(progress.back().output_tokens, 40);
  EXPECT_EQ(progress.back().in_flight, 0);

  const BenchReport report = summarize(run, s.prompts);
  EXPECT_EQ(report.completed, 8);
  EXPECT_EQ(report.output_tokens, 40);
  EXPECT_EQ(report.prompt_tokens, 48);
  EXPECT_EQ(report.itl_ms.count, 32u);
  EXPECT_GE(report.ttft_ms.min, 150);
  EXPECT_GE(run.duration_s, report.e2e_ms.max / 1e3);
  // TPOT of each request is (E2E - TTFT) / (5 - 1).
  const LatencySamples samples = latency_samples(run);
  ASSERT_EQ(samples.tpot_ms.size(), 8u);
  for (size_t i = 0; i < 8; ++i) {
    const RequestResult& r = run.results[i];
    EXPECT_NEAR(samples.tpot_ms[i], (r.e2e_s - *r.ttft_s) * 1e3 / 4, 1e-9);
  }
}

TEST(LoadGenerator, ChatWithoutUsageCountsContentChunks) {
  StreamScript script;
  script.send_usage = false;
  script.api_key = "secret";
  ScriptedOpenAiServer server(script);
  LoadSettings s = settings_for(server.url(), 3, 4);
  s.endpoint = Endpoint::kChat;
  s.connection.api_key = "secret";
  const LoadRun run = run_load(s, nullptr);
  for (const RequestResult& r : run.results) {
    ASSERT_TRUE(r.success) << r.error;
    EXPECT_EQ(r.text, expected_text(4));  // the empty first delta (the role) is not content
    EXPECT_EQ(r.output_tokens, 4);
    EXPECT_FALSE(r.output_tokens_from_usage);
    EXPECT_FALSE(r.prompt_tokens_from_usage);
    EXPECT_EQ(r.itl_s.size(), 3u);
  }
  EXPECT_EQ(server.prompts().size(), 3u);
  const BenchReport report = summarize(run, s.prompts);
  EXPECT_TRUE(report.prompt_tokens_estimated);
  EXPECT_TRUE(report.output_tokens_counted);
}

TEST(LoadGenerator, RequestsAreNotSentBeforeTheirPoissonTimes) {
  ScriptedOpenAiServer server(StreamScript{});
  LoadSettings s = settings_for(server.url(), 6, 2);
  s.request_rate = 20;
  s.seed = 3;
  const LoadRun run = run_load(s, nullptr);
  const std::vector<double> due = poisson_arrival_times(6, 20, 3);
  for (size_t i = 0; i < run.results.size(); ++i) {
    ASSERT_TRUE(run.results[i].success) << run.results[i].error;
    EXPECT_GE(run.results[i].sent_at_s, due[i]) << "request " << i;
  }
  EXPECT_GE(run.duration_s, due.back());
}

TEST(LoadGenerator, HttpErrorsAreReportedWithTheServersMessage) {
  StreamScript script;
  script.api_key = "secret";
  ScriptedOpenAiServer server(script);
  LoadSettings s = settings_for(server.url(), 2, 3);
  const LoadRun no_key = run_load(s, nullptr);
  for (const RequestResult& r : no_key.results) {
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.error, "HTTP 401: missing or wrong API key");
  }
  s.connection.api_key = "secret";
  s.model = "another-model";
  const BenchReport report = summarize(run_load(s, nullptr), s.prompts);
  EXPECT_EQ(report.failed, 2);
  EXPECT_EQ(report.errors.at("HTTP 404: no model named another-model"), 2);
}

TEST(LoadGenerator, StreamCutShortIsAFailure) {
  StreamScript script;
  script.abort_after_tokens = 2;
  ScriptedOpenAiServer server(script);
  const LoadRun run = run_load(settings_for(server.url(), 2, 5), nullptr);
  for (const RequestResult& r : run.results) {
    EXPECT_FALSE(r.success);
    EXPECT_NE(r.error.find("partway through the answer"), std::string::npos) << r.error;
    EXPECT_EQ(r.text, expected_text(2));
  }
}

TEST(LoadGenerator, ErrorEventIsAFailure) {
  StreamScript script;
  script.error_after_tokens = 1;
  ScriptedOpenAiServer server(script);
  const LoadRun run = run_load(settings_for(server.url(), 2, 4), nullptr);
  for (const RequestResult& r : run.results) {
    EXPECT_FALSE(r.success);
    EXPECT_NE(r.error.find("the server sent an error event"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("the engine stopped"), std::string::npos) << r.error;
  }
}

// A port on this machine with nothing listening (bound, then closed).
int closed_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t size = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(LoadGenerator, NothingListeningFailsEveryRequestWithAClearError) {
  const std::string url = "http://127.0.0.1:" + std::to_string(closed_port());
  const LoadRun run = run_load(settings_for(url, 3, 2), nullptr);
  for (const RequestResult& r : run.results) {
    EXPECT_FALSE(r.success);
    EXPECT_NE(r.error.find("cannot connect to " + url), std::string::npos) << r.error;
  }
  OpenAiConnection connection(parse_server_url(url), {});
  EXPECT_THROW(connection.list_models(), Error);
  EXPECT_THROW(connection.check_reachable(), Error);
}

TEST(LoadGenerator, ListsTheServersModels) {
  ScriptedOpenAiServer server(StreamScript{});
  OpenAiConnection connection(parse_server_url(server.url() + "/v1"), {});
  EXPECT_EQ(connection.list_models(), std::vector<std::string>{"scripted-model"});
}

}  // namespace
}  // namespace switchyard::client
