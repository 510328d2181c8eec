// The load of a serving benchmark: a set of streamed completion requests sent to one server on a
// schedule (Poisson arrivals at a mean rate, or all at once) and with at most a given number in
// flight, each timed by the connection that sends it.
//
// Every request is sent by a worker thread with a connection of its own. With a concurrency limit
// there are that many workers; without one, one per request, so that no request waits for another.
// A worker takes the next request in order and sends it when it is due, or at once if it is late
// because every worker was busy: the limit delays requests, as it would delay real clients.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "client/openai_connection.h"
#include "client/server_url.h"

namespace switchyard::client {

struct LoadSettings {
  ServerUrl url;
  ConnectionSettings connection;
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;
  std::vector<std::string> prompts;  // one request each, sent in this order
  int max_tokens = 128;
  double request_rate = 0;  // requests per second on average (Poisson); infinity: all at once
  int concurrency = 0;      // most requests in flight at once; 0: no limit
  uint64_t seed = 0;        // of the arrival times
};

struct LoadProgress {
  int total = 0, finished = 0, failed = 0, in_flight = 0;
  long output_tokens = 0;  // of the finished requests
  double elapsed_s = 0;
};

struct LoadRun {
  std::vector<RequestResult> results;  // in the order of the prompts
  double duration_s = 0;               // from the start until the last request ended
};

// Sends every request and waits for all of them. `on_progress` (may be empty) is called after each
// request ends, from the worker threads but never two at once. Throws Error for bad settings only;
// failed requests are in the results.
LoadRun run_load(const LoadSettings& settings, const std::function<void(const LoadProgress&)>& on_progress);

}  // namespace switchyard::client
