// A streamed reply written to its client as server-sent events. A client that leaves is noticed
// when a write fails: while tokens flow, at once; while none come (the request waits in the
// queue), through an SSE comment line sent every half second, which clients ignore. Its request is
// then cancelled, so its KV blocks go back to the pool.
#pragma once

#include <chrono>

#include "serve/generation.h"
#include "serve/response_builder.h"
#include "serve/server_metrics.h"

namespace httplib {
class DataSink;
}

namespace switchyard::serve {

// Writes every event of `generation` to `sink` (the HTTP library's chunked content provider);
// returns false when the client left (the request is then cancelled).
bool stream_events(Generation& generation, ResponseBuilder& builder, httplib::DataSink& sink, ServerMetrics& metrics,
                   std::chrono::milliseconds poll);

}  // namespace switchyard::serve
