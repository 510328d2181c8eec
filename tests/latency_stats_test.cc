// The serving benchmark's statistics and report, against values worked out by hand: NumPy's
// default percentiles (linear interpolation), population standard deviation, and vLLM's
// definitions of TTFT, TPOT, ITL, E2E and throughput.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "client/bench_report.h"
#include "client/latency_stats.h"

namespace switchyard::client {
namespace {

TEST(LatencyStats, DescribeOddCount) {
  // mean (1+2+3+4+100)/5 = 22; deviations -21 -20 -19 -18 78, squares sum to 7610, / 5 = 1522;
  // p99 at rank 0.99 * 4 = 3.96: 4 + 0.96 * (100 - 4) = 96.16.
  const Distribution d = describe({100, 3, 1, 4, 2});
  EXPECT_EQ(d.count, 5u);
  EXPECT_DOUBLE_EQ(d.mean, 22);
  EXPECT_DOUBLE_EQ(d.median, 3);
  EXPECT_NEAR(d.p99, 96.16, 1e-12);
  EXPECT_NEAR(d.std_dev, std::sqrt(1522.0), 1e-12);
  EXPECT_EQ(d.min, 1);
  EXPECT_EQ(d.max, 100);
}

TEST(LatencyStats, DescribeEvenCount) {
  // median between 2 and 4; p99 at rank 2.97: 4 + 0.97 * (10 - 4) = 9.82; mean 4.25;
  // deviations -3.25 -2.25 -0.25 5.75: squares 10.5625 5.0625 0.0625 33.0625 = 48.75, / 4 = 12.1875.
  const Distribution d = describe({10, 1, 4, 2});
  EXPECT_DOUBLE_EQ(d.median, 3);
  EXPECT_NEAR(d.p99, 9.82, 1e-12);
  EXPECT_DOUBLE_EQ(d.mean, 4.25);
  EXPECT_NEAR(d.std_dev, std::sqrt(12.1875), 1e-12);
}

TEST(LatencyStats, OneValueAndNone) {
  const Distribution one = describe({7.5});
  EXPECT_EQ(one.mean, 7.5);
  EXPECT_EQ(one.median, 7.5);
  EXPECT_EQ(one.p99, 7.5);
  EXPECT_EQ(one.std_dev, 0);
  const Distribution none = describe({});
  EXPECT_EQ(none.count, 0u);
  EXPECT_TRUE(std::isnan(none.mean) && std::isnan(none.median) && std::isnan(none.p99));
}

TEST(LatencyStats, PercentileEndsAndMiddle) {
  const std::vector<double> sorted = {10, 20, 30, 40};
  EXPECT_EQ(percentile(sorted, 0), 10);
  EXPECT_EQ(percentile(sorted, 100), 40);
  EXPECT_NEAR(percentile(sorted, 25), 17.5, 1e-12);  // rank 0.75
  EXPECT_NEAR(percentile(sorted, 90), 37, 1e-12);    // rank 2.7
}

RequestResult success(double ttft, std::vector<double> itl, double e2e, long output, long prompt) {
  RequestResult r;
  r.success = true;
  r.ttft_s = ttft;
  r.itl_s = std::move(itl);
  r.e2e_s = e2e;
  r.output_tokens = output;
  r.output_tokens_from_usage = true;
  r.prompt_tokens = prompt;
  r.prompt_tokens_from_usage = true;
  return r;
}

RequestResult failure(const std::string& error) {
  RequestResult r;
  r.error = error;
  r.e2e_s = 0.01;
  return r;
}

TEST(BenchReport, FiguresOfAHandMadeRun) {
  LoadRun run;
  run.duration_s = 2.0;
  run.results = {success(0.1, {0.05, 0.07}, 0.22, 3, 10), failure("HTTP 500: boom"),
                 success(0.2, {0.1}, 0.3, 2, 20), failure("HTTP 500: boom"), failure("cannot connect")};
  const BenchReport r = summarize(run, {"p0", "p1", "p2", "p3", "p4"});
  EXPECT_EQ(r.completed, 2);
  EXPECT_EQ(r.failed, 3);
  EXPECT_EQ(r.errors.at("HTTP 500: boom"), 2);
  EXPECT_EQ(r.errors.at("cannot connect"), 1);
  EXPECT_EQ(r.output_tokens, 5);
  EXPECT_EQ(r.prompt_tokens, 30);
  EXPECT_FALSE(r.prompt_tokens_estimated);
  EXPECT_FALSE(r.output_tokens_counted);
  EXPECT_DOUBLE_EQ(r.request_throughput, 1.0);      // 2 requests / 2 s
  EXPECT_DOUBLE_EQ(r.output_throughput, 2.5);       // 5 tokens / 2 s
  EXPECT_DOUBLE_EQ(r.total_token_throughput, 17.5); // 35 tokens / 2 s
  EXPECT_NEAR(r.ttft_ms.mean, 150, 1e-9);
  // TPOT: (220 - 100) / 2 = 60 and (300 - 200) / 1 = 100.
  EXPECT_EQ(r.tpot_ms.count, 2u);
  EXPECT_NEAR(r.tpot_ms.mean, 80, 1e-9);
  // ITL: 50, 70, 100 from both requests; p99 at rank 1.98: 70 + 0.98 * 30 = 99.4.
  EXPECT_EQ(r.itl_ms.count, 3u);
  EXPECT_NEAR(r.itl_ms.mean, 220.0 / 3, 1e-9);
  EXPECT_NEAR(r.itl_ms.median, 70, 1e-9);
  EXPECT_NEAR(r.itl_ms.p99, 99.4, 1e-9);
  EXPECT_NEAR(r.e2e_ms.mean, 260, 1e-9);  // failed requests' latencies are left out

  const nlohmann::json json = to_json(r);
  EXPECT_EQ(json["completed"], 2);
  EXPECT_NEAR(json["tpot_ms"]["mean"].get<double>(), 80, 1e-9);
  EXPECT_EQ(json["errors"]["HTTP 500: boom"], 2);
}

TEST(BenchReport, EstimatesWhatTheServerDidNotCount) {
  LoadRun run;
  run.duration_s = 1.0;
  RequestResult r = success(0.1, {}, 0.1, 1, 0);
  r.prompt_tokens_from_usage = false;  // no usage chunk: 12 characters are 3 tokens at 4 each
  r.output_tokens_from_usage = false;
  run.results = {r};
  const BenchReport report = summarize(run, {"abcdefghijkl"});
  EXPECT_EQ(report.prompt_tokens, 3);
  EXPECT_TRUE(report.prompt_tokens_estimated);
  EXPECT_TRUE(report.output_tokens_counted);
  EXPECT_EQ(report.tpot_ms.count, 0u);  // one output token: no time per token after the first
  EXPECT_TRUE(to_json(report)["tpot_ms"]["mean"].is_null());
}

}  // namespace
}  // namespace switchyard::client
