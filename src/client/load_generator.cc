#include "client/load_generator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <system_error>
#include <thread>

#include "client/arrival_schedule.h"
#include "core/error.h"

namespace switchyard::client {

namespace {

using Clock = std::chrono::steady_clock;

// What the workers share: the next request to take and the running totals progress reports.
class SharedState {
 public:
  SharedState(int total, std::function<void(const LoadProgress&)> on_progress, Clock::time_point start)
      : on_progress_(std::move(on_progress)), start_(start) {
    progress_.total = total;
  }

  int take_next() { return next_.fetch_add(1); }
  // No request is taken after this (the ones in flight end as usual).
  void stop_taking(int total) { next_.store(total); }

  void started() {
    std::lock_guard lock(mutex_);
    ++progress_.in_flight;
  }

  void finished(const RequestResult& result) {
    std::lock_guard lock(mutex_);
    --progress_.in_flight;
    ++progress_.finished;
    if (!result.success) ++progress_.failed;
    progress_.output_tokens += result.output_tokens;
    progress_.elapsed_s = std::chrono::duration<double>(Clock::now() - start_).count();
    if (on_progress_) on_progress_(progress_);
  }

 private:
  std::atomic<int> next_{0};
  std::mutex mutex_;
  LoadProgress progress_;
  std::function<void(const LoadProgress&)> on_progress_;
  Clock::time_point start_;
};

}  // namespace

LoadRun run_load(const LoadSettings& settings, const std::function<void(const LoadProgress&)>& on_progress) {
  const int total = static_cast<int>(settings.prompts.size());
  require(total >= 1, "a benchmark needs at least one prompt");
  require(settings.concurrency >= 0, "the concurrency limit must not be negative, not {}", settings.concurrency);
  require(settings.max_tokens >= 1, "the output length must be at least 1 token, not {}", settings.max_tokens);
  const std::vector<double> due_s = poisson_arrival_times(total, settings.request_rate, settings.seed);
  const int workers = settings.concurrency > 0 ? std::min(settings.concurrency, total) : total;

  LoadRun run;
  run.results.resize(static_cast<size_t>(total));
  const Clock::time_point start = Clock::now();
  SharedState shared(total, on_progress, start);
  auto work = [&] {
    OpenAiConnection connection(settings.url, settings.connection);
    for (int i = shared.take_next(); i < total; i = shared.take_next()) {
      const size_t index = static_cast<size_t>(i);
      std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                                std::chrono::duration<double>(due_s[index])));
      const double sent_at_s = std::chrono::duration<double>(Clock::now() - start).count();
      shared.started();
      RequestResult result = connection.stream(
          {.endpoint = settings.endpoint, .model = settings.model, .prompt = settings.prompts[index],
           .max_tokens = settings.max_tokens});
      result.sent_at_s = sent_at_s;
      shared.finished(result);
      run.results[index] = std::move(result);
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(workers));
  try {
    for (int w = 0; w < workers; ++w) threads.emplace_back(work);
  } catch (const std::system_error& e) {  // out of threads: stop the ones started, then say so
    shared.stop_taking(total);
    for (std::thread& t : threads) t.join();
    fail("cannot start {} worker threads ({}): set a lower --concurrency", workers, e.what());
  }
  for (std::thread& t : threads) t.join();
  run.duration_s = std::chrono::duration<double>(Clock::now() - start).count();
  return run;
}

}  // namespace switchyard::client
