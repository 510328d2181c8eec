// One HTTP connection to an OpenAI-compatible server (kept alive between requests), which sends
// streamed completions and times them as they arrive: the first content chunk, the gaps between
// chunks, the whole request, and the tokens the server reports in its closing usage chunk.
// Not thread-safe: a load generator gives each of its threads a connection of its own.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "client/server_url.h"

namespace switchyard::client {

enum class Endpoint { kCompletions, kChat };

// "/v1/completions" or "/v1/chat/completions".
std::string_view endpoint_route(Endpoint endpoint);
// "completions" or "chat", the names the command line uses.
std::string_view endpoint_name(Endpoint endpoint);

struct ConnectionSettings {
  std::string api_key;           // sent as "Authorization: Bearer KEY" when not empty
  double connect_timeout_s = 5;  // to open the connection
  double read_timeout_s = 300;   // the longest silence allowed while a response is awaited
};

struct CompletionRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;
  std::string prompt;  // for chat, the one user message
  int max_tokens = 128;
};

// What one streamed request measured; times are in seconds from the moment it was sent.
struct RequestResult {
  bool success = false;
  std::string error;              // why it failed, when it did
  double sent_at_s = 0;           // when it was sent, from the start of the benchmark (set by its caller)
  std::optional<double> ttft_s;   // the first chunk with content; none when no content came
  std::vector<double> itl_s;      // between consecutive chunks with content
  double e2e_s = 0;               // until the response ended
  long output_tokens = 0;         // the usage chunk's completion_tokens, else the content chunks
  bool output_tokens_from_usage = false;
  long prompt_tokens = 0;         // the usage chunk's prompt_tokens; 0 when the server sent none
  bool prompt_tokens_from_usage = false;
  std::string text;               // the content, in order
  std::string finish_reason;      // as the server gave it ("length", "stop"), when it did
};

class OpenAiConnection {
 public:
  OpenAiConnection(ServerUrl url, ConnectionSettings settings);
  ~OpenAiConnection();
  OpenAiConnection(const OpenAiConnection&) = delete;
  OpenAiConnection& operator=(const OpenAiConnection&) = delete;

  // Sends `request` with "stream": true (asking for a usage chunk at the end, greedy sampling) and
  // reads the server-sent events to "data: [DONE]". Failures of any kind (no connection, an HTTP
  // error, a malformed or truncated stream, an error event) come back in the result, not as
  // exceptions, so that a benchmark counts them and goes on.
  RequestResult stream(const CompletionRequest& request);

  // GET /v1/models: the ids of the models served, in the server's order. Throws Error when the
  // server cannot be reached or does not answer with a list of models.
  std::vector<std::string> list_models();

  // GET /v1/models, accepting any HTTP answer: throws Error only when no answer comes (nothing
  // listening, a timeout), so that a benchmark stops before it starts rather than failing every
  // request.
  void check_reachable();

  // GET /metrics (under the URL's base path, beside /v1): the page, or nullopt when the server
  // answers anything but 200 or nothing at all (it has no metrics, or is another kind of server).
  std::optional<std::string> metrics_page();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace switchyard::client
