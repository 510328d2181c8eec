// The figures of a serving benchmark, from the results of its requests, defined as vLLM's serving
// benchmark defines them:
//   TTFT  time to first token: from sending a request to its first chunk with content;
//   TPOT  time per output token of a request after its first: (E2E - TTFT) / (output tokens - 1),
//         for requests with more than one output token;
//   ITL   inter-token latency: every gap between consecutive content chunks, of all requests;
//   E2E   end-to-end latency: from sending a request to the end of its response.
// Latencies are over the successful requests only; throughputs are per second of the benchmark's
// whole duration.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/latency_stats.h"
#include "client/load_generator.h"

namespace switchyard::client {

struct BenchReport {
  double duration_s = 0;
  int completed = 0, failed = 0;
  long prompt_tokens = 0;          // of the completed requests
  bool prompt_tokens_estimated = false;  // some came from the 4-characters-per-token estimate
  long output_tokens = 0;          // of the completed requests
  bool output_tokens_counted = false;    // some were counted as content chunks (no usage chunk)
  double request_throughput = 0;   // completed requests per second
  double output_throughput = 0;    // output tokens per second
  double total_token_throughput = 0;  // prompt and output tokens per second
  Distribution ttft_ms, tpot_ms, itl_ms, e2e_ms;
  std::map<std::string, int> errors;  // each distinct failure and how many requests it ended
};

// The latencies the report describes, in milliseconds, each in the order the results come.
struct LatencySamples {
  std::vector<double> ttft_ms, tpot_ms, itl_ms, e2e_ms;
};

LatencySamples latency_samples(const LoadRun& run);

// `prompts` are the prompts sent, in the order of `run.results`: they give the estimated prompt
// tokens of a request whose server sent no usage.
BenchReport summarize(const LoadRun& run, const std::vector<std::string>& prompts);

// The report as JSON: counts, throughputs, and for each latency {mean, median, p99, std, min, max,
// count} in milliseconds (null where there were no values).
nlohmann::json to_json(const BenchReport& report);

}  // namespace switchyard::client
