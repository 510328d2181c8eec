// switchyard serve: an OpenAI-compatible HTTP server (serve/api_server.h) in front of the serving
// engine (serve/engine.h), which batches the requests of all clients over one paged KV cache.
//
// The engine steps on the main thread, the HTTP library's workers run the handlers, and a third
// thread waits for SIGINT or SIGTERM. Then the server stops accepting connections, the requests in flight
// get --shutdown-timeout seconds to finish, those still running are cancelled (their clients get
// finish_reason "abort"), and the process exits 0.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "cli/heap_settings.h"
#include "cli/model_source.h"
#include "cli/stop_signals.h"
#include "core/error.h"
#include "serve/api_server.h"
#include "serve/engine.h"
#include "serve/served_model.h"

namespace switchyard::cli {

namespace {

struct ServeFlags {
  ModelSource source;
  serve::ServerOptions server;
  serve::EngineOptions engine;
  std::string served_model_name;
  double max_body_mb = 4;
  int shutdown_timeout_s = 30;
};

constexpr const char* kStopMessage =
    "\nstopping: no new connections; requests in flight finish or are cancelled at the deadline (a second "
    "Ctrl-C quits at once)\n";

// Runs `work` on its own thread and joins it however the scope is left.
class ScopedThread {
 public:
  template <typename Fn>
  explicit ScopedThread(Fn work) : thread_(std::move(work)) {}
  ~ScopedThread() {
    if (thread_.joinable()) thread_.join();
  }
  void join() { thread_.join(); }

 private:
  std::thread thread_;
};

void run_serve(ServeFlags flags) {
  keep_freed_memory_for_reuse();
  ModelSource source = flags.source;
  source.inference_only = true;
  OpenedModel opened = open_model(source, /*load_tokenizer=*/true);
  if (!opened.from_checkpoint) {
    std::fprintf(stderr, "warning: '%s' is a preset with random, untrained weights: its replies are noise\n",
                 source.model.c_str());
  }
  const std::string name = flags.served_model_name.empty() ? source.model : flags.served_model_name;
  const serve::ServedModel served(name, opened.model->config(), *opened.tokenizer);
  serve::Engine engine(*opened.model, flags.engine);
  flags.server.max_body_bytes = static_cast<size_t>(flags.max_body_mb * (1 << 20));
  serve::ApiServer server(engine, served, flags.server);
  const int port = server.bind();

  // A client that leaves mid-write must not end the process (the library also asks send() not to
  // raise it).
  signal(SIGPIPE, SIG_IGN);
  StopSignals signals(kStopMessage);
  std::promise<void> served_all;
  std::future<void> serving_done = served_all.get_future();
  ScopedThread http_thread([&server, &served_all] {
    server.serve();
    served_all.set_value();
  });
  std::printf("serving %s (%s) on http://%s:%d: POST /v1/completions, /v1/chat/completions; GET /v1/models, "
              "/health, /metrics\n",
              name.c_str(), served.harmony() ? "completions and chat" : "completions only",
              flags.server.host.c_str(), port);
  std::fflush(stdout);

  std::atomic<bool> engine_ended = false;
  bool finished = true;  // whether every request in flight finished before the deadline
  ScopedThread shutdown_thread([&] {
    while (!StopSignals::requested() && !engine_ended) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    server.stop();
    if (engine_ended) return;
    const serve::EngineStats in_flight = engine.stats();
    std::fprintf(stderr, "%s: %d requests running and %d waiting get %d s to finish\n",
                 StopSignals::name(StopSignals::received()), in_flight.running, in_flight.waiting,
                 flags.shutdown_timeout_s);
    finished = serving_done.wait_for(std::chrono::seconds(flags.shutdown_timeout_s)) ==
               std::future_status::ready;
    engine.stop();
  });
  // The engine steps on this thread, the one that built the model: OpenMP keeps a team of threads
  // per thread that starts parallel loops, and with a second team on a machine whose cores the
  // first already fills, libgomp stops spinning at its barriers and puts the threads to sleep
  // between loops (over 100 context switches a decoded token, a pass 10-20% slower).
  try {
    engine.run_until_stopped();
  } catch (...) {
    engine.cancel_all();  // handlers waiting on the engine answer with what they have
    engine_ended = true;
    throw;  // the threads' scopes join them: the shutdown thread stops the HTTP server first
  }
  shutdown_thread.join();
  if (!finished) {
    // The engine has ended, so its requests may be cancelled from here; their handlers then send
    // what they have with finish_reason "abort".
    const serve::EngineStats left = engine.stats();
    std::fprintf(stderr, "deadline passed: cancelling %d running and %d waiting requests\n", left.running,
                 left.waiting);
    engine.cancel_all();
  }
  http_thread.join();
  std::fprintf(stderr, "stopped\n");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand("serve", "serve a model over an OpenAI-compatible HTTP API");
  add_model_flags(cmd, flags->source);
  cmd->add_option("--host", flags->server.host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", flags->server.port, "port to listen on (0: any free port, printed at start)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--api-key", flags->server.api_key,
                  "require 'Authorization: Bearer KEY' on /v1/ (default: no authentication)");
  cmd->add_option("--served-model-name", flags->served_model_name,
                  "the model's name in the API (default: the --model argument)");
  cmd->add_option("--max-seqs", flags->engine.max_sequences, "sequences in the running batch at most")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--kv-blocks", flags->engine.kv_blocks,
                  "KV cache blocks of 16 tokens per pool (0: room for --max-seqs full contexts)")
      ->check(CLI::Range(0, 1 << 24))
      ->capture_default_str();
  cmd->add_option("--max-queue", flags->engine.max_queue,
                  "requests waiting at most; more get 429 with Retry-After")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--prefill-chunk", flags->engine.prefill_chunk, "prompt tokens prefilled per step at most")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  cmd->add_option("--max-body-mb", flags->max_body_mb, "largest request body in MiB (larger: 413)")
      ->check(CLI::Range(0.001, 1024.0))
      ->capture_default_str();
  cmd->add_option("--read-timeout", flags->server.read_timeout_s,
                  "seconds a client may take to send its request before it is dropped")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd->add_option("--shutdown-timeout", flags->shutdown_timeout_s,
                  "seconds requests in flight get to finish after SIGTERM or SIGINT")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  cmd->callback([flags] { run_serve(*flags); });
}

}  // namespace switchyard::cli
