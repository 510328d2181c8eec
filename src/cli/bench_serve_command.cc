#include "cli/bench_serve_command.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "client/bench_report.h"
#include "client/latency_histogram_svg.h"
#include "client/load_generator.h"
#include "client/prompt_dataset.h"
#include "client/server_url.h"
#include "client/simulated_throughput.h"
#include "cli/progress_line.h"
#include "core/error.h"

namespace switchyard::cli {

namespace {

struct BenchServeFlags {
  std::string url = "http://127.0.0.1:8000";
  std::string endpoint = "completions";
  std::string model;
  std::string api_key;
  std::string request_rate = "inf";
  int concurrency = 0;
  int num_prompts = 100;
  std::string dataset;
  int prompt_tokens = 256;
  int output_tokens = 128;
  uint64_t seed = 0;
  double timeout_s = 300;
  bool json = false;
  std::string svg;
};

constexpr double kMaxConnectTimeoutS = 10;
// GET /v1/models needs no model to run: a server that does not answer it this soon is not serving.
constexpr double kMaxPreflightTimeoutS = 30;

// GET /metrics, which a server need not have: one that does not answer this soon has none to give.
constexpr double kMetricsTimeoutS = 10;
// A server publishes its counters at the end of an engine step, which may come just after a client
// has its last token: after the run, it gets this long to show no request in its engine.
constexpr double kSettleTimeoutS = 5;

// "inf" or a positive number of requests per second.
double parse_rate(const std::string& text) {
  if (text == "inf") return std::numeric_limits<double>::infinity();
  size_t used = 0;
  double rate = 0;
  try {
    rate = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || !(rate > 0) || !std::isfinite(rate)) return 0;
  return rate;
}

std::string rate_error(const std::string& text) {
  return parse_rate(text) > 0 ? "" : "expected a positive number of requests per second, or inf";
}

std::string url_error(const std::string& text) {
  try {
    client::parse_server_url(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The model to ask for: the one named, else the first the server lists. Either way the server must
// answer before the benchmark starts, so that an unreachable one fails at once, not once per request.
std::string choose_model(const BenchServeFlags& f, const client::ServerUrl& url,
                         client::ConnectionSettings settings) {
  settings.read_timeout_s = std::min(settings.read_timeout_s, kMaxPreflightTimeoutS);
  client::OpenAiConnection connection(url, settings);
  if (!f.model.empty()) {
    connection.check_reachable();
    return f.model;
  }
  const std::vector<std::string> models = connection.list_models();
  require(!models.empty(), "{}{} lists no models; name one with --model", url.origin(), url.path("/v1/models"));
  return models.front();
}

// The simulated counters of the server's /metrics; nullopt when it has none (a real device,
// another kind of server, no /metrics at all).
std::optional<client::SimulatedCounters> scrape_simulated(const client::ServerUrl& url,
                                                          client::ConnectionSettings settings) {
  settings.read_timeout_s = std::min(settings.read_timeout_s, kMetricsTimeoutS);
  client::OpenAiConnection connection(url, settings);
  const std::optional<std::string> page = connection.metrics_page();
  if (!page) return std::nullopt;
  return client::read_simulated_counters(*page);
}

// The same once the server's engine holds no request (or at the deadline, when other clients keep
// it busy), so that the counters include the run's last step.
std::optional<client::SimulatedCounters> scrape_simulated_when_settled(const client::ServerUrl& url,
                                                                       const client::ConnectionSettings& settings) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(kSettleTimeoutS);
  for (;;) {
    std::optional<client::SimulatedCounters> counters = scrape_simulated(url, settings);
    if (!counters || counters->requests_in_engine == 0 || std::chrono::steady_clock::now() >= deadline) {
      return counters;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Progress on stderr: redrawn in place on a terminal, else a line per tenth of the requests.
class LoadProgressPrinter {
 public:
  explicit LoadProgressPrinter(int total) : terminal_(isatty(STDERR_FILENO) != 0), every_(std::max(1, total / 10)) {}

  void update(const client::LoadProgress& p) {
    const std::string line = fmt::format(
        "requests {:>{}}/{} | {} failed | {} in flight | {:.0f} output tok/s | elapsed {}", p.finished,
        std::to_string(p.total).size(), p.total, p.failed, p.in_flight,
        p.elapsed_s > 0 ? static_cast<double>(p.output_tokens) / p.elapsed_s : 0.0, format_duration(p.elapsed_s));
    if (terminal_) {
      std::fprintf(stderr, "\r\033[K%s", line.c_str());
      if (p.finished == p.total) std::fprintf(stderr, "\n");
    } else if (p.finished == 1 || p.finished % every_ == 0 || p.finished == p.total) {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  }

 private:
  bool terminal_;
  int every_;
};

std::string format_ms(double ms) { return std::isfinite(ms) ? fmt::format("{:.2f}", ms) : "-"; }

void print_report(const client::BenchReport& r) {
  std::printf("%-24s %.2f s\n", "duration", r.duration_s);
  std::printf("%-24s %d\n", "requests completed", r.completed);
  std::printf("%-24s %d\n", "requests failed", r.failed);
  std::printf("%-24s %.2f req/s\n", "request throughput", r.request_throughput);
  std::printf("%-24s %ld (%s)\n", "prompt tokens", r.prompt_tokens,
              r.prompt_tokens_estimated ? "some estimated at 4 characters per token" : "the server's count");
  std::printf("%-24s %ld (%s)\n", "output tokens", r.output_tokens,
              r.output_tokens_counted ? "some counted as content chunks" : "the server's count");
  std::printf("%-24s %.1f tok/s\n", "output throughput", r.output_throughput);
  std::printf("%-24s %.1f tok/s\n", "total token throughput", r.total_token_throughput);
  std::printf("%-6s %12s %12s %12s %8s\n", "(ms)", "mean", "median", "p99", "count");
  const std::pair<const char*, const client::Distribution*> rows[] = {
      {"TTFT", &r.ttft_ms}, {"TPOT", &r.tpot_ms}, {"ITL", &r.itl_ms}, {"E2E", &r.e2e_ms}};
  for (const auto& [name, d] : rows) {
    std::printf("%-6s %12s %12s %12s %8zu\n", name, format_ms(d->mean).c_str(), format_ms(d->median).c_str(),
                format_ms(d->p99).c_str(), d->count);
  }
  for (const auto& [message, count] : r.errors) std::printf("failed %d x: %s\n", count, message.c_str());
}

void print_simulated(const client::SimulatedThroughput& s) {
  if (s.cores_per_chip > 0) {
    std::printf("%-24s %s, %d cores per chip\n", "simulated device", s.device.c_str(), s.cores_per_chip);
  } else {
    std::printf("%-24s %s\n", "simulated device", s.device.c_str());
  }
  std::printf("%-24s %.6g s for %ld output tokens (the server's count)\n", "simulated time", s.seconds,
              s.output_tokens);
  std::printf("%-24s %.1f output tok/s per core", "simulated throughput", s.tokens_per_s_per_core);
  if (s.cores_per_chip > 0) std::printf(", %.1f per chip", s.tokens_per_s_per_chip);
  std::printf("\n");
}

void add_simulated_json(const client::SimulatedThroughput& s, nlohmann::json& json) {
  json["simulated_device"] = s.device;
  json["simulated_seconds"] = s.seconds;
  json["simulated_output_tokens"] = s.output_tokens;
  json["simulated_output_tokens_per_s_per_core"] = s.tokens_per_s_per_core;
  if (s.cores_per_chip > 0) {
    json["cores_per_chip"] = s.cores_per_chip;
    json["simulated_output_tokens_per_s_per_chip"] = s.tokens_per_s_per_chip;
  }
}

void write_svg(const std::string& path, const client::LoadRun& run, const std::string& title) {
  client::LatencySamples s = client::latency_samples(run);
  const std::string svg = client::latency_histograms_svg(
      {{"TTFT", "time to first token", std::move(s.ttft_ms)},
       {"TPOT", "time per output token after the first", std::move(s.tpot_ms)},
       {"ITL", "inter-token latency", std::move(s.itl_ms)},
       {"E2E", "end-to-end latency", std::move(s.e2e_ms)}},
      title);
  std::ofstream out(path, std::ios::trunc);
  require(static_cast<bool>(out), "cannot write {}", path);
  out << svg;
  require(static_cast<bool>(out.flush()), "cannot write {}", path);
}

void run_bench_serve(const BenchServeFlags& f) {
  const client::ServerUrl url = client::parse_server_url(f.url);
  client::LoadSettings settings;
  settings.url = url;
  settings.connection = {.api_key = f.api_key,
                         .connect_timeout_s = std::min(f.timeout_s, kMaxConnectTimeoutS),
                         .read_timeout_s = f.timeout_s};
  settings.endpoint = f.endpoint == "chat" ? client::Endpoint::kChat : client::Endpoint::kCompletions;
  settings.prompts = client::load_prompts(f.dataset, f.num_prompts, f.prompt_tokens);
  settings.max_tokens = f.output_tokens;
  settings.request_rate = parse_rate(f.request_rate);
  settings.concurrency = f.concurrency;
  settings.seed = f.seed;
  settings.model = choose_model(f, url, settings.connection);

  const std::string target = url.origin() + url.path(client::endpoint_route(settings.endpoint));
  const std::string shape = fmt::format(
      "{} requests to {} (model {}), rate {} req/s, concurrency {}, {} output tokens", f.num_prompts, target,
      settings.model, f.request_rate, f.concurrency > 0 ? std::to_string(f.concurrency) : "unlimited",
      f.output_tokens);
  std::fprintf(stderr, "bench serve: %s\n", shape.c_str());
  LoadProgressPrinter progress(f.num_prompts);
  // A server on a simulator device tells its simulated time: read before and after the run.
  const std::optional<client::SimulatedCounters> simulated_before = scrape_simulated(url, settings.connection);
  const client::LoadRun run =
      client::run_load(settings, [&progress](const client::LoadProgress& p) { progress.update(p); });
  const client::BenchReport report = client::summarize(run, settings.prompts);
  std::optional<client::SimulatedThroughput> simulated;
  if (simulated_before) {
    if (const auto after = scrape_simulated_when_settled(url, settings.connection)) {
      simulated = client::simulated_throughput(*simulated_before, *after);
    }
  }

  std::printf("serving benchmark: %s\n", shape.c_str());
  print_report(report);
  if (simulated) print_simulated(*simulated);
  if (!f.svg.empty()) {
    write_svg(f.svg, run, fmt::format("Switchyard serving benchmark: {} ({}), {} requests", settings.model,
                                      client::endpoint_name(settings.endpoint), f.num_prompts));
    std::printf("latency histograms: %s\n", f.svg.c_str());
  }
  if (f.json) {
    nlohmann::json json = client::to_json(report);
    json["mode"] = "serve";
    json["url"] = f.url;
    json["endpoint"] = client::endpoint_name(settings.endpoint);
    json["model"] = settings.model;
    json["num_prompts"] = f.num_prompts;
    json["request_rate"] =
        std::isinf(settings.request_rate) ? nlohmann::json("inf") : nlohmann::json(settings.request_rate);
    json["concurrency"] = f.concurrency;
    json["output_tokens_requested"] = f.output_tokens;
    json["seed"] = f.seed;
    if (simulated) add_simulated_json(*simulated, json);
    std::printf("%s\n", json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
  require(report.completed > 0, "all {} requests failed; the first: {}", report.failed,
          run.results.front().error);
}

}  // namespace

void add_bench_serve_command(CLI::App& bench) {
  auto flags = std::make_shared<BenchServeFlags>();
  CLI::App* serve = bench.add_subcommand(
      "serve", "load an OpenAI-compatible server with streamed requests; report TTFT, TPOT, ITL, E2E, throughput");
  serve->add_option("--url", flags->url, "the server (a trailing /v1 is accepted)")
      ->check(CLI::Validator(url_error, "URL", "URL"))
      ->capture_default_str();
  serve->add_option("--endpoint", flags->endpoint, "completions (/v1/completions) or chat (/v1/chat/completions)")
      ->check(CLI::IsMember({"completions", "chat"}))
      ->capture_default_str();
  serve->add_option("--model", flags->model, "model name sent in requests (default: the first of GET /v1/models)");
  serve->add_option("--api-key", flags->api_key, "sent as 'Authorization: Bearer KEY'")->envname("OPENAI_API_KEY");
  serve->add_option("--request-rate", flags->request_rate,
                    "requests per second, as Poisson arrivals (seeded by --seed); inf: all at once")
      ->check(CLI::Validator(rate_error, "RATE", "RATE"))
      ->capture_default_str();
  serve->add_option("--concurrency", flags->concurrency, "most requests in flight at once (0: no limit)")
      ->check(CLI::Range(0, 1 << 16))
      ->capture_default_str();
  serve->add_option("--num-prompts", flags->num_prompts, "requests to send")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  serve->add_option("--dataset", flags->dataset,
                    "prompts: a JSON list of strings, or a text file cut into prompts of --prompt-tokens")
      ->required();
  serve->add_option("--prompt-tokens", flags->prompt_tokens,
                    "length of prompts cut from a text file, estimated at 4 characters per token, whole words")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  serve->add_option("--output-tokens", flags->output_tokens, "max_tokens of each request")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  serve->add_option("--seed", flags->seed, "seed of the arrival times")->capture_default_str();
  serve->add_option("--timeout", flags->timeout_s,
                    "seconds a response may stay silent before the request fails (connecting: at most 10)")
      ->check(CLI::Range(0.001, 1e6))
      ->capture_default_str();
  serve->add_flag("--json", flags->json, "print one JSON object as the last line");
  serve->add_option("--svg", flags->svg, "write histograms of TTFT, TPOT, ITL and E2E to this SVG file");
  serve->callback([flags] { run_bench_serve(*flags); });
}

}  // namespace switchyard::cli
