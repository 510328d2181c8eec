#include "client/bench_report.h"

#include <cmath>

#include "client/prompt_dataset.h"

namespace switchyard::client {

namespace {

nlohmann::json number_or_null(double value) { return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(); }

nlohmann::json to_json(const Distribution& d) {
  return {{"count", d.count},          {"mean", number_or_null(d.mean)}, {"median", number_or_null(d.median)},
          {"p99", number_or_null(d.p99)}, {"std", number_or_null(d.std_dev)}, {"min", number_or_null(d.min)},
          {"max", number_or_null(d.max)}};
}

}  // namespace

LatencySamples latency_samples(const LoadRun& run) {
  LatencySamples s;
  for (const RequestResult& r : run.results) {
    if (!r.success) continue;
    s.e2e_ms.push_back(r.e2e_s * 1e3);
    if (r.ttft_s) {
      s.ttft_ms.push_back(*r.ttft_s * 1e3);
      if (r.output_tokens > 1) {
        s.tpot_ms.push_back((r.e2e_s - *r.ttft_s) * 1e3 / static_cast<double>(r.output_tokens - 1));
      }
    }
    for (double gap : r.itl_s) s.itl_ms.push_back(gap * 1e3);
  }
  return s;
}

BenchReport summarize(const LoadRun& run, const std::vector<std::string>& prompts) {
  BenchReport report;
  report.duration_s = run.duration_s;
  for (size_t i = 0; i < run.results.size(); ++i) {
    const RequestResult& r = run.results[i];
    if (!r.success) {
      ++report.failed;
      ++report.errors[r.error];
      continue;
    }
    ++report.completed;
    report.output_tokens += r.output_tokens;
    report.output_tokens_counted |= !r.output_tokens_from_usage;
    if (r.prompt_tokens_from_usage) {
      report.prompt_tokens += r.prompt_tokens;
    } else {
      report.prompt_tokens += i < prompts.size() ? estimated_tokens(prompts[i]) : 0;
      report.prompt_tokens_estimated = true;
    }
  }
  if (run.duration_s > 0) {
    report.request_throughput = report.completed / run.duration_s;
    report.output_throughput = static_cast<double>(report.output_tokens) / run.duration_s;
    report.total_token_throughput = static_cast<double>(report.prompt_tokens + report.output_tokens) / run.duration_s;
  }
  LatencySamples samples = latency_samples(run);
  report.ttft_ms = describe(std::move(samples.ttft_ms));
  report.tpot_ms = describe(std::move(samples.tpot_ms));
  report.itl_ms = describe(std::move(samples.itl_ms));
  report.e2e_ms = describe(std::move(samples.e2e_ms));
  return report;
}

nlohmann::json to_json(const BenchReport& report) {
  nlohmann::json errors = nlohmann::json::object();
  for (const auto& [message, count] : report.errors) errors[message] = count;
  return {{"duration_s", report.duration_s},
          {"completed", report.completed},
          {"failed", report.failed},
          {"prompt_tokens", report.prompt_tokens},
          {"prompt_tokens_estimated", report.prompt_tokens_estimated},
          {"output_tokens", report.output_tokens},
          {"output_tokens_counted_from_chunks", report.output_tokens_counted},
          {"request_throughput", report.request_throughput},
          {"output_throughput", report.output_throughput},
          {"total_token_throughput", report.total_token_throughput},
          {"ttft_ms", to_json(report.ttft_ms)},
          {"tpot_ms", to_json(report.tpot_ms)},
          {"itl_ms", to_json(report.itl_ms)},
          {"e2e_ms", to_json(report.e2e_ms)},
          {"errors", errors}};
}

}  // namespace switchyard::client
