#include "serve/generation.h"

#include <fmt/format.h>

#include "core/error.h"
#include "serve/api_error.h"

namespace switchyard::serve {

Generation::Generation(Engine& engine, PreparedRequest prepared, std::unique_ptr<ReplyText> reply,
                       ServerMetrics& metrics, Clock::time_point arrival)
    : engine_(engine),
      stream_(std::make_shared<RequestStream>()),
      reply_(std::move(reply)),
      metrics_(metrics),
      arrival_(arrival),
      prompt_tokens_(static_cast<int>(prepared.generation.prompt.size())) {
  try {
    id_ = engine_.submit(std::move(prepared.generation), stream_);
  } catch (const QueueFull& e) {
    // 429 rather than 503: the server is up and will take the request shortly, which is what a
    // client's retry-with-backoff on 429 (OpenAI's SDKs do it) expects; 503 reads as "down" to load
    // balancers and health checks.
    throw ApiError(429,
                   fmt::format("The server is busy: {} requests are already waiting. Retry after a moment.",
                               engine_.options().max_queue),
                   "rate_limit_error", "", "queue_full");
  } catch (const Error& e) {
    throw invalid_request(e.what());
  }
}

Generation::~Generation() { cancel(); }

void Generation::cancel() {
  if (done_) return;
  engine_.cancel(id_);
  done_ = true;
  metrics_.count_finished("abort");
  metrics_.e2e_request_latency.observe(std::chrono::duration<double>(Clock::now() - arrival_).count());
}

void Generation::end_early(std::string finish_reason) {
  if (done_ || ending_) return;
  engine_.cancel(id_);
  ending_ = true;
  ending_reason_ = std::move(finish_reason);
}

Generation::Update Generation::next(std::chrono::milliseconds timeout) {
  Update update;
  if (done_) return update;
  for (const StreamEvent& event : stream_->wait(timeout)) {
    if (event.finished) {
      take_finish(event, update);
      break;
    }
    if (!ending_) take_token(event, update);  // tokens after a stop string are not the client's
  }
  return update;
}

void Generation::take_token(const StreamEvent& event, Update& update) {
  const double since = std::chrono::duration<double>(event.at - (completion_tokens_ == 0 ? arrival_ : last_token_)).count();
  (completion_tokens_ == 0 ? metrics_.time_to_first_token : metrics_.time_per_output_token).observe(since);
  last_token_ = event.at;
  ++completion_tokens_;
  update.tokens.push_back(event.token);
  try {
    const ReplyDelta delta = reply_->add(event.token.token);
    update.delta.content += delta.content;
    update.delta.reasoning += delta.reasoning;
    if (delta.stopped) {
      update.delta.stopped = true;
      end_early("stop");
    }
  } catch (const Error& e) {
    format_error_ = e.what();
    end_early("abort");
  }
}

void Generation::take_finish(const StreamEvent& event, Update& update) {
  if (ending_) {
    update.finish_reason = ending_reason_;
  } else {
    update.finish_reason = event.reason == FinishReason::kStop     ? "stop"
                           : event.reason == FinishReason::kLength ? "length"
                                                                   : "abort";
    if (event.reason != FinishReason::kCancelled) {
      try {
        const ReplyDelta delta = reply_->finish();
        update.delta.content += delta.content;
        update.delta.reasoning += delta.reasoning;
      } catch (const Error& e) {
        format_error_ = e.what();
        update.finish_reason = "abort";
      }
    }
  }
  update.done = done_ = true;
  update.format_error = format_error_;
  // The engine's count includes a sampled stop token (as OpenAI's and vLLM's do); after a stop
  // string, the tokens the client was given.
  update.usage = {.prompt_tokens = prompt_tokens_,
                  .completion_tokens = ending_ ? completion_tokens_ : event.usage.completion_tokens,
                  .cached_prompt_tokens = event.usage.cached_prompt_tokens};
  metrics_.count_finished(update.finish_reason);
  metrics_.e2e_request_latency.observe(std::chrono::duration<double>(event.at - arrival_).count());
}

}  // namespace switchyard::serve
