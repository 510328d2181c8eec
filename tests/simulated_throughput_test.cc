// The client's side of simulated throughput: Prometheus text read back into samples (labels with
// escapes, special values, lines it cannot read skipped), the simulated counters read from the
// page Switchyard's server renders, and throughput between two scrapes.
#include "client/simulated_throughput.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "client/prometheus_text.h"
#include "serve/server_metrics.h"

namespace switchyard::client {
namespace {

TEST(PrometheusText, ReadsSamplesLabelsAndSpecialValues) {
  const std::vector<MetricSample> samples = parse_prometheus_text(
      "# HELP a:b Something.\n"
      "# TYPE a:b counter\n"
      "a:b{model_name=\"m \\\"q\\\" \\\\ x\\ny\",le=\"+Inf\"} 12.5\r\n"
      "plain 3 1700000000000\n"
      "  spaced{a=\"1\",} -Inf\n"
      "nan_value NaN\n"
      "broken{a=\"1\" 2\n"
      "no_value\n"
      "9starts_with_digit 1\n"
      "last 4e-05");
  ASSERT_EQ(samples.size(), 5u);
  EXPECT_EQ(samples[0].name, "a:b");
  EXPECT_EQ(samples[0].labels.at("model_name"), "m \"q\" \\ x\ny");
  EXPECT_EQ(samples[0].labels.at("le"), "+Inf");
  EXPECT_EQ(samples[0].value, 12.5);
  EXPECT_EQ(samples[1].name, "plain");
  EXPECT_EQ(samples[1].value, 3);
  EXPECT_EQ(samples[2].name, "spaced");
  EXPECT_EQ(samples[2].labels.at("a"), "1");
  EXPECT_EQ(samples[2].value, -INFINITY);
  EXPECT_TRUE(std::isnan(samples[3].value));
  EXPECT_EQ(samples[4].name, "last");
  EXPECT_EQ(samples[4].value, 4e-05);
}

// The page the server renders on a simulator device, after `steps` steps of `seconds` each that
// generated `tokens` tokens.
std::string simulated_page(int steps, double seconds, int64_t tokens, int running) {
  serve::StepTimes times(model::SimulatedDevice{.device = "trn2-sim", .target = "trn2", .core = "NeuronCore-v3",
                                                .cores_per_chip = 8});
  for (int i = 0; i < steps; ++i) times.record(0.5, seconds);
  serve::EngineStats engine;
  engine.steps = steps;
  engine.generated_tokens = tokens;
  engine.running = running;
  engine.simulated_seconds = times.simulated_total();
  return serve::render_metrics("tiny \"sim\"", engine, serve::ServerMetrics(), times);
}

TEST(SimulatedThroughput, ReadsTheServersPage) {
  const std::optional<SimulatedCounters> c = read_simulated_counters(simulated_page(4, 0.25, 96, 2));
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->device, "trn2-sim");
  EXPECT_EQ(c->cores_per_chip, 8);
  EXPECT_EQ(c->seconds, 1.0);
  EXPECT_EQ(c->generation_tokens, 96);
  EXPECT_EQ(c->requests_in_engine, 2);
}

TEST(SimulatedThroughput, BetweenTwoScrapes) {
  const SimulatedCounters before = *read_simulated_counters(simulated_page(4, 0.25, 96, 0));
  const SimulatedCounters after = *read_simulated_counters(simulated_page(12, 0.25, 496, 0));
  const std::optional<SimulatedThroughput> t = simulated_throughput(before, after);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->device, "trn2-sim");
  EXPECT_EQ(t->seconds, 2.0);
  EXPECT_EQ(t->output_tokens, 400);
  EXPECT_EQ(t->tokens_per_s_per_core, 200);
  EXPECT_EQ(t->tokens_per_s_per_chip, 1600);
  // No simulated time between the scrapes: nothing to divide by.
  EXPECT_FALSE(simulated_throughput(after, after).has_value());
}

TEST(SimulatedThroughput, WithoutTheInfoSeriesThereIsNoPerChipFigure) {
  const std::optional<SimulatedCounters> before =
      read_simulated_counters("switchyard:simulated_seconds_total{model_name=\"m\"} 1\n"
                              "switchyard:generation_tokens_total{model_name=\"m\"} 10\n");
  const std::optional<SimulatedCounters> after =
      read_simulated_counters("switchyard:simulated_seconds_total{model_name=\"m\"} 1.5\n"
                              "switchyard:generation_tokens_total{model_name=\"m\"} 60\n");
  ASSERT_TRUE(before && after);
  EXPECT_EQ(after->cores_per_chip, 0);
  const SimulatedThroughput t = *simulated_throughput(*before, *after);
  EXPECT_EQ(t.tokens_per_s_per_core, 100);
  EXPECT_EQ(t.tokens_per_s_per_chip, 0);
}

TEST(SimulatedThroughput, NothingFromARealDeviceOrAnotherServer) {
  serve::EngineStats engine;
  engine.generated_tokens = 7;
  const std::string cpu_page = serve::render_metrics("m", engine, serve::ServerMetrics(), serve::StepTimes(std::nullopt));
  EXPECT_FALSE(read_simulated_counters(cpu_page).has_value());
  EXPECT_FALSE(read_simulated_counters("vllm:generation_tokens_total{model_name=\"m\"} 5\n").has_value());
  EXPECT_FALSE(read_simulated_counters("<html>404 Not Found</html>").has_value());
  EXPECT_FALSE(read_simulated_counters("").has_value());
}

}  // namespace
}  // namespace switchyard::client
