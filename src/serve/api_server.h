// The OpenAI-compatible HTTP server in front of an Engine:
//
//   POST /v1/completions, POST /v1/chat/completions   (streamed as server-sent events on request)
//   GET  /v1/models, GET /health, GET /metrics          (Prometheus text)
//
// Handlers run on the HTTP library's worker threads; each submits its request to the engine (whose
// own thread the caller runs: Engine::run_until_stopped) and waits on that request's queue. Errors
// are OpenAI's JSON error objects with OpenAI's status codes; with an API key, /v1/ wants
// "Authorization: Bearer KEY" (401 otherwise).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "serve/engine.h"
#include "serve/server_metrics.h"
#include "serve/served_model.h"

namespace switchyard::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                     // 0: any free port (bind() says which)
  std::string api_key;                 // empty: no authentication
  size_t max_body_bytes = 4u << 20;    // larger request bodies get 413
  int read_timeout_s = 30;             // a client slower than this to send its request is dropped
  int write_timeout_s = 30;            // a client that reads nothing for this long is dropped
  int threads = 0;                     // worker threads; 0: enough for the engine's requests
};

class ApiServer {
 public:
  // The engine and the model must outlive the server.
  ApiServer(Engine& engine, const ServedModel& model, ServerOptions options);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Opens the listening socket; returns its port. Throws Error when the address cannot be bound.
  int bind();
  // Serves connections until stop(); returns once the requests in flight have ended.
  void serve();
  // Stops accepting connections (from any thread); requests in flight carry on to their end.
  void stop();

  const ServerMetrics& metrics() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace switchyard::serve
