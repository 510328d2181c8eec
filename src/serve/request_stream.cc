#include "serve/request_stream.h"

namespace switchyard::serve {

void RequestStream::on_token(const GeneratedToken& token) {
  StreamEvent event;
  event.token = token;
  event.at = Clock::now();
  push(std::move(event));
}

void RequestStream::on_finish(FinishReason reason, const Usage& usage) {
  StreamEvent event;
  event.finished = true;
  event.reason = reason;
  event.usage = usage;
  event.at = Clock::now();
  push(std::move(event));
}

void RequestStream::push(StreamEvent event) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }
  arrived_.notify_one();
}

std::vector<StreamEvent> RequestStream::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  arrived_.wait_for(lock, timeout, [&] { return !events_.empty(); });
  std::vector<StreamEvent> taken(std::make_move_iterator(events_.begin()), std::make_move_iterator(events_.end()));
  events_.clear();
  return taken;
}

}  // namespace switchyard::serve
