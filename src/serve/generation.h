// One request in flight, as its HTTP handler sees it: submitted to the engine, its tokens taken from
// its RequestStream as they come and turned into reply text (ReplyText), ended early when a stop
// string matches or its client leaves, and timed into the server's metrics.
//
// Destroying a Generation that has not finished cancels its engine request, so that a handler that
// stops for any reason frees its KV blocks.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "serve/engine.h"
#include "serve/prepared_request.h"
#include "serve/reply_text.h"
#include "serve/request_stream.h"
#include "serve/server_metrics.h"

namespace switchyard::serve {

class Generation {
 public:
  // Submits the request. Throws ApiError: 429 when the engine's queue is full, 400 when the engine
  // refuses the request.
  Generation(Engine& engine, PreparedRequest prepared, std::unique_ptr<ReplyText> reply, ServerMetrics& metrics,
             Clock::time_point arrival);
  ~Generation();
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  struct Update {
    ReplyDelta delta;                    // text the new tokens added
    std::vector<GeneratedToken> tokens;  // those tokens (with log-probabilities when asked for)
    bool done = false;
    std::string finish_reason;           // when done: "stop", "length" or "abort"
    Usage usage;                         // when done
    std::string format_error;            // when done because the reply broke its format
  };
  // Waits up to `timeout` for news; an Update with no tokens and !done means none came.
  Update next(std::chrono::milliseconds timeout);
  // Ends the request at once (its client left): the engine drops it and it counts as "abort";
  // next() reports nothing more.
  void cancel();
  bool done() const { return done_; }

 private:
  void take_token(const StreamEvent& event, Update& update);
  void take_finish(const StreamEvent& event, Update& update);
  void end_early(std::string finish_reason);

  Engine& engine_;
  std::shared_ptr<RequestStream> stream_;
  std::unique_ptr<ReplyText> reply_;
  ServerMetrics& metrics_;
  Clock::time_point arrival_, last_token_;
  RequestId id_ = 0;
  int prompt_tokens_ = 0;
  int completion_tokens_ = 0;
  bool ending_ = false;        // cancelled by us; waiting for the engine to confirm
  std::string ending_reason_;  // the finish_reason to report then
  std::string format_error_;
  bool done_ = false;
};

}  // namespace switchyard::serve
