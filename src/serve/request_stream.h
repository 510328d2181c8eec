// The queue between the engine thread and the HTTP handler waiting on one request: the engine's
// RequestSink calls (which must not block) append events, each stamped with the time it came, and
// the handler takes them as they arrive.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <vector>

#include "serve/engine.h"

namespace switchyard::serve {

using Clock = std::chrono::steady_clock;

struct StreamEvent {
  bool finished = false;  // false: a token
  GeneratedToken token;   // when !finished
  FinishReason reason = FinishReason::kStop;
  Usage usage;            // when finished
  Clock::time_point at;
};

class RequestStream : public RequestSink {
 public:
  void on_token(const GeneratedToken& token) override;
  void on_finish(FinishReason reason, const Usage& usage) override;

  // Waits until events are there or `timeout` passes; returns those that came, oldest first.
  std::vector<StreamEvent> wait(std::chrono::milliseconds timeout);

 private:
  void push(StreamEvent event);

  std::mutex mutex_;
  std::condition_variable arrived_;
  std::deque<StreamEvent> events_;
};

}  // namespace switchyard::serve
