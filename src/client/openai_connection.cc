#include "client/openai_connection.h"

#include <httplib.h>

#include <chrono>
#include <cmath>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "client/sse_parser.h"
#include "core/error.h"

namespace switchyard::client {

namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

constexpr size_t kMaxErrorBody = 64 * 1024;  // of a failed response, kept for its message

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Strings from a client and a server may be any bytes; invalid UTF-8 is replaced, not thrown on.
std::string dump(const Json& json) { return json.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string request_body(const CompletionRequest& request) {
  Json body = {{"model", request.model},
               {"max_tokens", request.max_tokens},
               {"temperature", 0},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  if (request.endpoint == Endpoint::kChat) {
    body["messages"] = Json::array({{{"role", "user"}, {"content", request.prompt}}});
  } else {
    body["prompt"] = request.prompt;
  }
  return dump(body);
}

// The message of an HTTP error response: OpenAI's {"error": {"message": ...}} when it is that,
// else the start of the body.
std::string error_message(int status, const std::string& body) {
  const Json json = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_object() && json.contains("error")) {
    const Json& error = json["error"];
    if (error.is_object() && error.contains("message") && error["message"].is_string()) {
      return fmt::format("HTTP {}: {}", status, error["message"].get<std::string>());
    }
    if (error.is_string()) return fmt::format("HTTP {}: {}", status, error.get<std::string>());
  }
  std::string start = body.substr(0, 200);
  for (char& c : start) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return start.empty() ? fmt::format("HTTP {}", status) : fmt::format("HTTP {}: {}", status, start);
}

// The text a streamed chunk carries: a completion's choices[0].text, or a chat delta's content (or
// its reasoning, which reasoning models stream first and which costs the same decoding steps).
std::string chunk_text(const Json& chunk, std::string* finish_reason) {
  if (!chunk.contains("choices") || !chunk["choices"].is_array() || chunk["choices"].empty()) return "";
  const Json& choice = chunk["choices"][0];
  if (!choice.is_object()) return "";
  if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) {
    *finish_reason = choice["finish_reason"].get<std::string>();
  }
  if (choice.contains("text") && choice["text"].is_string()) return choice["text"].get<std::string>();
  if (choice.contains("delta") && choice["delta"].is_object()) {
    const Json& delta = choice["delta"];
    for (const char* field : {"content", "reasoning_content", "reasoning"}) {
      if (delta.contains(field) && delta[field].is_string() && !delta[field].get_ref<const std::string&>().empty()) {
        return delta[field].get<std::string>();
      }
    }
  }
  return "";
}

// Reads the events of one streamed response into its result.
class StreamReader {
 public:
  StreamReader(RequestResult& result, Clock::time_point sent)
      : result_(result), sent_(sent), parser_([this](const SseEvent& e) { take(e); }) {}

  // Bytes of the body, all received at `now`. Returns false to stop reading (a failed stream).
  bool feed(const char* data, size_t size, Clock::time_point now) {
    now_ = now;
    parser_.feed(std::string_view(data, size));
    return error_.empty();
  }

  // The body ended (or reading it failed, with `transport_error`); completes the result.
  void finish(const std::string& transport_error) {
    const bool unclosed = parser_.finish();
    if (error_.empty() && !done_) {
      error_ = !transport_error.empty() ? transport_error
               : unclosed ? "the stream ended in the middle of an event, before 'data: [DONE]'"
                          : "the stream ended before 'data: [DONE]'";
      // Not the count of chunks: failures are tallied by message, and one cause should read as one.
      if (content_chunks_ > 0) error_ += ", partway through the answer";
    }
    result_.success = error_.empty();
    result_.error = error_;
    if (!result_.output_tokens_from_usage) result_.output_tokens = content_chunks_;
  }

 private:
  void take(const SseEvent& event) {
    if (done_ || !error_.empty()) return;
    if (event.data == "[DONE]") {
      done_ = true;
      return;
    }
    const Json chunk = Json::parse(event.data, nullptr, /*allow_exceptions=*/false);
    if (chunk.is_discarded() || !chunk.is_object()) {
      error_ = "the server sent an event that is not a JSON object: " + event.data.substr(0, 200);
      return;
    }
    // OpenAI's {"error": {...}}, or vLLM's {"object": "error", "message": ...}.
    const bool has_error = chunk.contains("error") && !chunk["error"].is_null();
    if (event.type == "error" || has_error || (chunk.contains("object") && chunk["object"] == "error")) {
      error_ = "the server sent an error event: " + dump(has_error ? chunk["error"] : chunk).substr(0, 300);
      return;
    }
    if (chunk.contains("usage") && chunk["usage"].is_object()) take_usage(chunk["usage"]);
    const std::string text = chunk_text(chunk, &result_.finish_reason);
    if (text.empty()) return;
    const double t = seconds_between(sent_, now_);
    if (result_.ttft_s) {
      result_.itl_s.push_back(t - last_content_s_);
    } else {
      result_.ttft_s = t;
    }
    last_content_s_ = t;
    ++content_chunks_;
    result_.text += text;
  }

  void take_usage(const Json& usage) {
    if (usage.contains("completion_tokens") && usage["completion_tokens"].is_number_integer()) {
      result_.output_tokens = usage["completion_tokens"].get<long>();
      result_.output_tokens_from_usage = true;
    }
    if (usage.contains("prompt_tokens") && usage["prompt_tokens"].is_number_integer()) {
      result_.prompt_tokens = usage["prompt_tokens"].get<long>();
      result_.prompt_tokens_from_usage = true;
    }
  }

  RequestResult& result_;
  Clock::time_point sent_, now_;
  SseParser parser_;
  std::string error_;
  bool done_ = false;
  long content_chunks_ = 0;
  double last_content_s_ = 0;
};

template <typename Client>
void set_timeout(Client& client, void (Client::*setter)(time_t, time_t), double seconds) {
  const double whole = std::floor(seconds);
  (client.*setter)(static_cast<time_t>(whole), static_cast<time_t>((seconds - whole) * 1e6));
}

}  // namespace

std::string_view endpoint_route(Endpoint endpoint) {
  return endpoint == Endpoint::kChat ? "/v1/chat/completions" : "/v1/completions";
}

std::string_view endpoint_name(Endpoint endpoint) { return endpoint == Endpoint::kChat ? "chat" : "completions"; }

struct OpenAiConnection::Impl {
  ServerUrl url;
  ConnectionSettings settings;
  httplib::Client client;

  Impl(ServerUrl u, ConnectionSettings s) : url(std::move(u)), settings(std::move(s)), client(url.origin()) {
    set_timeout(client, &httplib::Client::set_connection_timeout, settings.connect_timeout_s);
    set_timeout(client, &httplib::Client::set_read_timeout, settings.read_timeout_s);
    set_timeout(client, &httplib::Client::set_write_timeout, settings.read_timeout_s);
    client.set_keep_alive(true);
    // Without it a request written in two pieces (headers, then body) waits for the server's
    // delayed acknowledgement of the first, tens of milliseconds that would count as TTFT.
    client.set_tcp_nodelay(true);
    if (!settings.api_key.empty()) client.set_bearer_token_auth(settings.api_key);
  }

  // What went wrong below HTTP, in words that say where to look.
  std::string transport_error(httplib::Error error) const {
    switch (error) {
      case httplib::Error::Connection:
      case httplib::Error::ConnectionTimeout:
        return fmt::format("cannot connect to {} (no such host, nothing listening there, or no answer within {} s)",
                           url.origin(), settings.connect_timeout_s);
      case httplib::Error::Read:
        return fmt::format("reading the response from {} failed (the connection closed, or nothing came for {} s)",
                           url.origin(), settings.read_timeout_s);
      case httplib::Error::Write:
        return fmt::format("sending the request to {} failed (the connection closed, or it stalled for {} s)",
                           url.origin(), settings.read_timeout_s);
      default:
        return fmt::format("the request to {} failed: {}", url.origin(), httplib::to_string(error));
    }
  }

  // GET an API route; throws Error when no HTTP answer comes.
  httplib::Result get(std::string_view route) {
    httplib::Result result = client.Get(url.path(route));
    if (!result) fail("{}", transport_error(result.error()));
    return result;
  }
};

OpenAiConnection::OpenAiConnection(ServerUrl url, ConnectionSettings settings)
    : impl_(std::make_unique<Impl>(std::move(url), std::move(settings))) {}

OpenAiConnection::~OpenAiConnection() = default;

RequestResult OpenAiConnection::stream(const CompletionRequest& request) {
  RequestResult result;
  httplib::Request http;
  http.method = "POST";
  http.path = impl_->url.path(endpoint_route(request.endpoint));
  http.body = request_body(request);
  http.set_header("Content-Type", "application/json");
  http.set_header("Accept", "text/event-stream");
  http.set_header("Accept-Encoding", "identity");  // a compressed stream would arrive in bursts
  int status = 0;
  std::string error_body;
  const Clock::time_point sent = Clock::now();
  StreamReader reader(result, sent);
  http.response_handler = [&](const httplib::Response& response) {
    status = response.status;
    return true;
  };
  http.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    const Clock::time_point now = Clock::now();
    if (status != 200) {
      error_body.append(data, std::min(size, kMaxErrorBody - std::min(kMaxErrorBody, error_body.size())));
      return true;
    }
    return reader.feed(data, size, now);
  };
  const httplib::Result response = impl_->client.send(http);
  result.e2e_s = seconds_between(sent, Clock::now());
  std::string transport_error;
  // Canceled: the stream itself was found wrong, and the reader holds why.
  if (!response && response.error() != httplib::Error::Canceled) {
    transport_error = impl_->transport_error(response.error());
  }
  if (status != 0 && status != 200) {
    result.success = false;
    result.error = error_message(status, error_body);
    return result;
  }
  reader.finish(transport_error);
  return result;
}

std::vector<std::string> OpenAiConnection::list_models() {
  const httplib::Result response = impl_->get("/v1/models");
  const std::string where = impl_->url.origin() + impl_->url.path("/v1/models");
  require(response->status == 200, "GET {} answered {}", where, error_message(response->status, response->body));
  const Json json = Json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  require(json.is_object() && json.contains("data") && json["data"].is_array(),
          "GET {} did not answer with a list of models ({{\"data\": [...]}}): {}", where, response->body.substr(0, 200));
  std::vector<std::string> ids;
  for (const Json& model : json["data"]) {
    if (model.is_object() && model.contains("id") && model["id"].is_string()) {
      ids.push_back(model["id"].get<std::string>());
    }
  }
  return ids;
}

void OpenAiConnection::check_reachable() { impl_->get("/v1/models"); }

std::optional<std::string> OpenAiConnection::metrics_page() {
  const httplib::Result response = impl_->client.Get(impl_->url.path("/metrics"));
  if (!response || response->status != 200) return std::nullopt;
  return response->body;
}

}  // namespace switchyard::client
