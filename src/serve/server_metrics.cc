#include "serve/server_metrics.h"

#include <fmt/format.h>

#include <vector>

namespace switchyard::serve {
namespace {

// vLLM's buckets for the same histograms.
std::vector<double> ttft_buckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
}
std::vector<double> tpot_buckets() {
  return {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
}
std::vector<double> e2e_buckets() {
  return {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0};
}

// A label value with Prometheus's escapes.
std::string escaped(std::string_view value) {
  std::string out;
  for (const char c : value) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

class Page {
 public:
  explicit Page(std::string_view model_name) : label_(fmt::format("model_name=\"{}\"", escaped(model_name))) {}

  void series(std::string_view name, std::string_view type, std::string_view help, double value) {
    head(name, type, help);
    text_ += fmt::format("switchyard:{}{{{}}} {}\n", name, label_, value);
  }
  void head(std::string_view name, std::string_view type, std::string_view help) {
    text_ += fmt::format("# HELP switchyard:{} {}\n# TYPE switchyard:{} {}\n", name, help, name, type);
  }
  void labelled(std::string_view name, std::string_view labels, double value) {
    text_ += fmt::format("switchyard:{}{{{},{}}} {}\n", name, label_, labels, value);
  }
  void histogram(std::string_view name, std::string_view help, const Histogram& h) {
    const Histogram::Snapshot s = h.snapshot();
    head(name, "histogram", help);
    for (size_t i = 0; i < s.upper_bounds.size(); ++i) {
      text_ += fmt::format("switchyard:{}_bucket{{{},le=\"{}\"}} {}\n", name, label_, s.upper_bounds[i], s.cumulative[i]);
    }
    text_ += fmt::format("switchyard:{}_bucket{{{},le=\"+Inf\"}} {}\n", name, label_, s.count);
    text_ += fmt::format("switchyard:{}_sum{{{}}} {}\n", name, label_, s.sum);
    text_ += fmt::format("switchyard:{}_count{{{}}} {}\n", name, label_, s.count);
  }
  std::string take() { return std::move(text_); }

 private:
  std::string label_;
  std::string text_;
};

}  // namespace

ServerMetrics::ServerMetrics()
    : time_to_first_token(ttft_buckets()), time_per_output_token(tpot_buckets()), e2e_request_latency(e2e_buckets()) {}

void ServerMetrics::count_finished(std::string_view finish_reason) {
  if (finish_reason == "stop") {
    ++finished_stop_;
  } else if (finish_reason == "length") {
    ++finished_length_;
  } else {
    ++finished_abort_;
  }
}

std::string render_metrics(std::string_view model_name, const EngineStats& e, const ServerMetrics& s,
                           const StepTimes& steps) {
  Page page(model_name);
  page.series("num_requests_running", "gauge", "Requests in the running batch.", e.running);
  page.series("num_requests_waiting", "gauge", "Requests waiting to join the batch.", e.waiting);
  page.head("request_success_total", "counter", "Requests finished, by the finish_reason their client saw.");
  page.labelled("request_success_total", "finished_reason=\"stop\"", s.finished_stop());
  page.labelled("request_success_total", "finished_reason=\"length\"", s.finished_length());
  page.labelled("request_success_total", "finished_reason=\"abort\"", s.finished_abort());
  page.series("client_disconnects_total", "counter", "Streams whose client left before the end.",
              s.client_disconnects());
  page.series("num_preemptions_total", "counter", "Sequences preempted to free KV blocks.", e.preemptions);
  page.series("kv_blocks_used", "gauge", "KV cache blocks in use (all groups).", e.kv_blocks_used);
  page.series("kv_blocks_free", "gauge", "KV cache blocks free (all groups).", e.kv_blocks_free);
  const int blocks = e.kv_blocks_used + e.kv_blocks_free;
  page.series("kv_cache_usage_perc", "gauge", "Fraction of KV cache blocks in use (1 = full).",
              blocks > 0 ? static_cast<double>(e.kv_blocks_used) / blocks : 0.0);
  page.series("prefix_cache_hit_tokens_total", "counter", "Prompt tokens found in the prefix cache.",
              e.prefix_cache_hit_tokens);
  page.series("prompt_tokens_total", "counter", "Prompt tokens prefilled.", e.prompt_tokens);
  page.series("generation_tokens_total", "counter", "Tokens generated.", e.generated_tokens);
  page.series("engine_steps_total", "counter", "Engine steps (forward passes) run.", e.steps);
  page.histogram("time_to_first_token_seconds", "Seconds from a request's arrival to its first token.",
                 s.time_to_first_token);
  page.histogram("time_per_output_token_seconds", "Seconds between consecutive tokens of a request.",
                 s.time_per_output_token);
  page.histogram("e2e_request_latency_seconds", "Seconds from a request's arrival to its end.", s.e2e_request_latency);
  page.histogram("engine_step_seconds", "Wall seconds of each engine step's forward pass.", steps.wall_seconds());
  if (const std::optional<model::SimulatedDevice>& device = steps.simulated_device()) {
    page.head("simulated_device_info", "gauge", "The simulator device the engine runs on (labels); always 1.");
    page.labelled("simulated_device_info",
                  fmt::format("device=\"{}\",target=\"{}\",core=\"{}\",cores_per_chip=\"{}\"", escaped(device->device),
                              escaped(device->target), escaped(device->core), device->cores_per_chip),
                  1);
    page.series("simulated_seconds_total", "counter",
                "Simulated seconds of the device for all engine steps (one NeuronCore's time).",
                e.simulated_seconds.value_or(0.0));
    page.histogram("engine_step_simulated_seconds", "Simulated seconds of each engine step's forward pass.",
                   *steps.simulated_seconds());
  }
  return page.take();
}

}  // namespace switchyard::serve
