// switchyard serve as a process: it prints where it listens, answers, and on SIGTERM stops
// accepting, lets the request in flight finish (or cancels it when the deadline is 0) and exits 0.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "serve_process.h"

namespace switchyard {
namespace {

using nlohmann::json;

httplib::Client client(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(300, 0);
  return c;
}

// Waits (bounded) until /metrics shows one request running.
bool wait_running(int port) {
  for (int i = 0; i < 6000; ++i) {
    const httplib::Result m = client(port).Get("/metrics");
    if (m && m->body.find("switchyard:num_requests_running{model_name=\"tiny\"} 1\n") != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// Long enough that a signal sent once it runs finds it running (the context is raised to 1024).
const std::string kModel = "--model tiny --n-positions 1024";
const json kLongRequest = {{"model", "tiny"}, {"prompt", "hello"}, {"max_tokens", 1000}, {"temperature", 0}};

TEST(CliServe, SigtermLetsTheRequestInFlightFinishAndExitsZero) {
  ServeProcess server(kModel + " --port 0 --max-seqs 2");
  ASSERT_GT(server.port(), 0) << server.first_line() << server.stderr_text();
  EXPECT_NE(server.first_line().find("serving tiny (completions only)"), std::string::npos) << server.first_line();
  json reply;
  int status = 0;
  std::thread request([&] {
    const httplib::Result res = client(server.port()).Post("/v1/completions", kLongRequest.dump(), "application/json");
    if (!res) return;
    status = res->status;
    reply = json::parse(res->body);
  });
  ASSERT_TRUE(wait_running(server.port()));
  server.signal(SIGTERM);
  request.join();
  EXPECT_EQ(server.wait_exit(), 0) << server.stderr_text();
  EXPECT_EQ(status, 200);
  EXPECT_EQ(reply["choices"][0]["finish_reason"], "length") << reply;
  EXPECT_EQ(reply["usage"]["completion_tokens"], 1000);
  const std::string err = server.stderr_text();
  EXPECT_NE(err.find("SIGTERM: "), std::string::npos) << err;
  EXPECT_NE(err.find("get 30 s to finish"), std::string::npos) << err;
  EXPECT_EQ(err.find("deadline passed"), std::string::npos) << err;
  EXPECT_NE(err.find("stopped"), std::string::npos) << err;
  // Nothing listens any more.
  EXPECT_FALSE(client(server.port()).Get("/health"));
}

TEST(CliServe, PastTheDeadlineRequestsAreCancelled) {
  ServeProcess server(kModel + " --port 0 --shutdown-timeout 0");
  ASSERT_GT(server.port(), 0) << server.first_line() << server.stderr_text();
  json reply;
  std::thread request([&] {
    const httplib::Result res = client(server.port()).Post("/v1/completions", kLongRequest.dump(), "application/json");
    if (res) reply = json::parse(res->body);
  });
  ASSERT_TRUE(wait_running(server.port()));
  server.signal(SIGINT);
  request.join();
  EXPECT_EQ(server.wait_exit(), 0) << server.stderr_text();
  // Cut short, unless the machine finished all 1000 tokens before the signal took effect.
  if (reply["choices"][0]["finish_reason"] != "length") {
    EXPECT_EQ(reply["choices"][0]["finish_reason"], "abort") << reply;
    EXPECT_LT(reply["usage"]["completion_tokens"].get<int>(), 1000);
    EXPECT_NE(server.stderr_text().find("deadline passed: cancelling"), std::string::npos) << server.stderr_text();
  }
}

TEST(CliServe, PortInUseIsAnError) {
  ServeProcess first("--model tiny --port 0");
  ASSERT_GT(first.port(), 0);
  ServeProcess second("--model tiny --port " + std::to_string(first.port()));
  EXPECT_EQ(second.wait_exit(), 1);
  EXPECT_NE(second.stderr_text().find("cannot listen on 127.0.0.1:" + std::to_string(first.port())), std::string::npos)
      << second.stderr_text();
}

}  // namespace
}  // namespace switchyard
