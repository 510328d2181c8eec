// An ApiServer in the test's own process, on an ephemeral port of 127.0.0.1, with its engine either
// stepping on its own thread or stepped by the test (so that a test can hold requests in the queue
// or decide when tokens come), and an httplib client for it.
#pragma once

#include <httplib.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "serve/api_server.h"
#include "serve/engine.h"
#include "serve/served_model.h"

namespace switchyard::serve {

struct TestServerOptions {
  ServerOptions server;
  EngineOptions engine;
  bool engine_thread = true;  // false: the test calls engine().step()
};

class TestServer {
 public:
  TestServer(model::Model& model, const tokenizer::Tokenizer& tokenizer, const std::string& name,
             TestServerOptions options = {})
      : served_(name, model.config(), tokenizer), engine_(model, options.engine) {
    options.server.host = "127.0.0.1";
    options.server.port = 0;
    server_ = std::make_unique<ApiServer>(engine_, served_, options.server);
    port_ = server_->bind();
    http_thread_ = std::thread([this] { server_->serve(); });
    if (options.engine_thread) engine_thread_ = std::thread([this] { engine_.run_until_stopped(); });
  }

  ~TestServer() {
    server_->stop();
    engine_.stop();
    if (engine_thread_.joinable()) engine_thread_.join();
    engine_.cancel_all();  // no engine thread runs now: requests still open end as "abort"
    http_thread_.join();
  }

  // The engine publishes its statistics at the end of a step, which may come after a client has
  // its answer: waits (bounded) until they show nothing running or waiting and no block in use,
  // and returns them.
  EngineStats idle_stats() {
    EngineStats stats = engine_.stats();
    for (int i = 0; i < 6000 && (stats.running + stats.waiting > 0 || stats.kv_blocks_used > 0); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      stats = engine_.stats();
    }
    return stats;
  }

  int port() const { return port_; }
  Engine& engine() { return engine_; }
  const ServerMetrics& metrics() const { return server_->metrics(); }

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(300, 0);  // a slow, busy machine under the sanitizers
    return c;
  }

  // POST of a JSON body; the response's status and body.
  httplib::Result post(const std::string& path, const nlohmann::json& body,
                       const httplib::Headers& headers = {}) const {
    return client().Post(path.c_str(), headers, body.dump(), "application/json");
  }
  httplib::Result post_text(const std::string& path, const std::string& body) const {
    return client().Post(path.c_str(), body, "application/json");
  }

 private:
  ServedModel served_;
  Engine engine_;
  std::unique_ptr<ApiServer> server_;
  int port_ = 0;
  std::thread http_thread_, engine_thread_;
};

// The JSON payloads of a server-sent event stream ("data: {...}\n\n" ... "data: [DONE]\n\n");
// `done` says whether it ended with [DONE].
inline std::vector<nlohmann::json> sse_payloads(const std::string& stream, bool* done) {
  std::vector<nlohmann::json> payloads;
  *done = false;
  size_t at = 0;
  while (at < stream.size()) {
    const size_t end = stream.find("\n\n", at);
    if (end == std::string::npos) break;
    const std::string event = stream.substr(at, end - at);
    at = end + 2;
    if (event.starts_with(":")) continue;  // a comment
    EXPECT_TRUE(event.starts_with("data: ")) << event;
    EXPECT_FALSE(*done) << "an event after [DONE]";
    const std::string data = event.substr(6);
    if (data == "[DONE]") {
      *done = true;
    } else {
      payloads.push_back(nlohmann::json::parse(data));
    }
  }
  EXPECT_EQ(at, stream.size()) << "the stream ends inside an event";
  return payloads;
}

}  // namespace switchyard::serve
