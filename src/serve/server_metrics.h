// What /metrics reports, in Prometheus's text format with vLLM's kind of names (docs/serving.md
// lists them). The engine's counters and gauges come from Engine::stats() and the time of its
// steps from Engine::step_times(); ServerMetrics adds what only the HTTP layer sees: how each
// request ended for its client (a stop string is "stop" here, though the engine saw a
// cancellation), disconnects, and the latencies a client observes.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "serve/engine.h"
#include "serve/histogram.h"
#include "serve/step_times.h"

namespace switchyard::serve {

class ServerMetrics {
 public:
  ServerMetrics();

  // How a request ended, as its finish_reason: "stop", "length" or "abort" (cancelled: the client
  // left, the server shut down, or the reply broke its format).
  void count_finished(std::string_view finish_reason);
  void count_client_disconnect() { ++client_disconnects_; }

  Histogram time_to_first_token;    // seconds from arrival to the first token
  Histogram time_per_output_token;  // seconds between consecutive tokens
  Histogram e2e_request_latency;    // seconds from arrival to the end

  int64_t finished_stop() const { return finished_stop_; }
  int64_t finished_length() const { return finished_length_; }
  int64_t finished_abort() const { return finished_abort_; }
  int64_t client_disconnects() const { return client_disconnects_; }

 private:
  std::atomic<int64_t> finished_stop_{0}, finished_length_{0}, finished_abort_{0};
  std::atomic<int64_t> client_disconnects_{0};
};

// The /metrics page for `model_name` (a label on every series). The simulated series appear only
// when the engine runs on a simulator device (`steps` has a simulated device).
std::string render_metrics(std::string_view model_name, const EngineStats& engine, const ServerMetrics& server,
                           const StepTimes& steps);

}  // namespace switchyard::serve
