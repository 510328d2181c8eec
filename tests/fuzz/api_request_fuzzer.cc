// libFuzzer target: parse_api_request must accept any bytes as a request body or refuse them with
// ApiError (an HTTP status of 400 or 404), for both endpoints, never crash or throw anything else;
// an accepted request must respect the limits the parser promises.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "serve/api_error.h"
#include "serve/api_request.h"

namespace {

void check(const switchyard::serve::ApiRequest& r, const switchyard::serve::ServedModelLimits& limits) {
  if (r.max_tokens && (*r.max_tokens < 1 || *r.max_tokens >= limits.context_length)) __builtin_trap();
  if (r.stop.size() > static_cast<size_t>(switchyard::serve::kMaxStopStrings)) __builtin_trap();
  for (const auto& s : r.stop) {
    if (s.empty()) __builtin_trap();
  }
  for (const int32_t t : r.prompt_tokens) {
    if (t < 0 || t >= limits.vocab_size) __builtin_trap();
  }
  if (r.top_logprobs < -1 || r.top_logprobs > switchyard::serve::kMaxChatTopLogprobs) __builtin_trap();
  if (!(r.sampling.temperature >= 0 && r.sampling.temperature <= 2)) __builtin_trap();
  if (!(r.sampling.top_p > 0 && r.sampling.top_p <= 1)) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const switchyard::serve::ServedModelLimits limits{.name = "tiny", .context_length = 256, .vocab_size = 1000};
  for (const auto endpoint : {switchyard::serve::Endpoint::kCompletions, switchyard::serve::Endpoint::kChatCompletions}) {
    try {
      check(switchyard::serve::parse_api_request(endpoint, body, limits), limits);
    } catch (const switchyard::serve::ApiError& e) {
      if (e.status != 400 && e.status != 404) __builtin_trap();
    }
  }
  return 0;
}
