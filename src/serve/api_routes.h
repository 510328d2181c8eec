// What each endpoint does, apart from the HTTP server's set-up (api_server.cc): health, the model
// list, the metrics page, and the two generation endpoints, whole or streamed.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>

#include "serve/api_error.h"
#include "serve/api_request.h"
#include "serve/engine.h"
#include "serve/server_metrics.h"
#include "serve/served_model.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace switchyard::serve {

// The response for `error`: its status and OpenAI's error body.
void send_error(httplib::Response& res, const ApiError& error);
// Whether an Authorization header carries `api_key` as a Bearer token (compared in constant time).
bool authorized(const std::string& authorization, const std::string& api_key);

class ApiRoutes {
 public:
  // All three must outlive the routes.
  ApiRoutes(Engine& engine, const ServedModel& model, ServerMetrics& metrics);

  void health(httplib::Response& res);
  void models(httplib::Response& res);
  void metrics_page(httplib::Response& res);
  // POST /v1/completions and /v1/chat/completions.
  void generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);

 private:
  // "cmpl-..." / "chatcmpl-..." with 24 random hex digits; a random seed for requests without one.
  std::string new_id(Endpoint endpoint);
  uint64_t new_seed();

  Engine& engine_;
  const ServedModel& model_;
  ServerMetrics& metrics_;
  int64_t created_;  // when the server started, for /v1/models
  std::mutex random_mutex_;
  std::mt19937_64 random_;
};

}  // namespace switchyard::serve
