#include "serve/event_stream.h"

#include <httplib.h>

namespace switchyard::serve {
namespace {

// An SSE comment: ignored by clients, it only tells whether the connection is still there.
constexpr std::string_view kProbe = ": keep-alive\n\n";
constexpr std::chrono::milliseconds kProbeEvery{500};

}  // namespace

bool stream_events(Generation& generation, ResponseBuilder& builder, httplib::DataSink& sink, ServerMetrics& metrics,
                   std::chrono::milliseconds poll) {
  Clock::time_point last_write = Clock::now();
  // A zero-length write would end the stream, so empty text is never written.
  const auto write = [&](const std::string& text) {
    if (text.empty()) return true;
    last_write = Clock::now();
    if (sink.write(text.data(), text.size())) return true;
    generation.cancel();
    metrics.count_client_disconnect();
    return false;
  };
  if (!write(builder.stream_start())) return false;
  while (true) {
    const Generation::Update update = generation.next(poll);
    std::string events = builder.stream_events(update);
    if (events.empty() && Clock::now() - last_write >= kProbeEvery) events = kProbe;
    if (!write(events)) return false;
    if (update.done) {
      sink.done();
      return true;
    }
  }
}

}  // namespace switchyard::serve
