// A small OpenAI-compatible server for the tests of clients (the serving benchmark, its CLI): it
// streams a scripted completion, one word per token ("w0 ", "w1 ", ...) as many as max_tokens asks,
// after set delays; checks what clients send (model, stream, stream_options, max_tokens, prompt or
// messages, the API key) and answers mistakes with an OpenAI error; and counts what it saw. It
// serves GET /v1/models, POST /v1/completions and POST /v1/chat/completions, streaming only.
#pragma once

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace switchyard {

struct StreamScript {
  std::string model = "scripted-model";
  std::string api_key;              // required as "Authorization: Bearer KEY" when not empty
  int first_token_delay_ms = 0;     // from the request to the first chunk
  int token_gap_ms = 0;             // between chunks
  bool send_usage = true;           // the usage chunk, when the request asks for it
  bool split_events = false;        // each event written in two pieces with a pause between
  bool crlf = false;                // CR LF line ends instead of LF
  bool comments = false;            // a ": keep-alive" comment before each event
  int abort_after_tokens = -1;      // close the connection after this many chunks (no [DONE])
  int error_after_tokens = -1;      // send vLLM's error event after this many chunks, then [DONE]
};

class ScriptedOpenAiServer {
 public:
  explicit ScriptedOpenAiServer(StreamScript script) : script_(std::move(script)) {
    server_.new_task_queue = [] { return new httplib::ThreadPool(64); };  // one thread per connection
    server_.set_tcp_nodelay(true);  // each event leaves when written, as a streaming server's should
    server_.set_keep_alive_max_count(1000);  // clients keep their connections (the default closes after 5)
    server_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      const nlohmann::json list = {{"object", "list"},
                                   {"data", {{{"id", script_.model}, {"object", "model"}, {"owned_by", "test"}}}}};
      res.set_content(list.dump(), "application/json");
    });
    server_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      complete(req, res, /*chat=*/false);
    });
    server_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      complete(req, res, /*chat=*/true);
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  ~ScriptedOpenAiServer() {
    server_.stop();
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_.load(); }
  int max_in_flight() const { return max_in_flight_.load(); }
  std::vector<std::string> prompts() {
    std::lock_guard lock(mutex_);
    return prompts_;
  }

  // Words in `text`: the prompt tokens this server reports.
  static long count_words(const std::string& text) {
    std::istringstream in(text);
    std::string word;
    long n = 0;
    while (in >> word) ++n;
    return n;
  }

 private:
  static void reject(httplib::Response& res, int status, const std::string& message) {
    res.status = status;
    const nlohmann::json error = {{"error", {{"message", message}, {"type", "invalid_request_error"}}}};
    res.set_content(error.dump(), "application/json");
  }

  struct Problem {
    int status = 0;  // 0: none
    std::string message;
  };

  // What is wrong with a request, if anything; fills the prompt and what the request asks for.
  Problem check(const httplib::Request& req, bool chat, std::string* prompt, int* max_tokens, bool* wants_usage) {
    if (!script_.api_key.empty() && req.get_header_value("Authorization") != "Bearer " + script_.api_key) {
      return {401, "missing or wrong API key"};
    }
    const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
    if (!body.is_object()) return {400, "the body is not a JSON object"};
    if (body.value("model", "") != script_.model) return {404, "no model named " + body.value("model", "")};
    if (body.value("stream", false) != true) return {400, "this server only streams"};
    if (!body.contains("max_tokens") || !body["max_tokens"].is_number_integer() || body["max_tokens"].get<int>() < 1) {
      return {400, "max_tokens must be a positive integer"};
    }
    *max_tokens = body["max_tokens"].get<int>();
    *wants_usage = body.contains("stream_options") && body["stream_options"].value("include_usage", false);
    if (chat) {
      const nlohmann::json messages = body.value("messages", nlohmann::json());
      if (!messages.is_array() || messages.size() != 1 || messages[0].value("role", "") != "user") {
        return {400, "expected one user message"};
      }
      *prompt = messages[0].value("content", "");
    } else {
      *prompt = body.value("prompt", "");
    }
    if (prompt->empty()) return {400, "the prompt is empty"};
    return {};
  }

  std::string event(const nlohmann::json& data) const {
    const std::string end = script_.crlf ? "\r\n" : "\n";
    return (script_.comments ? ": keep-alive" + end : "") + "data: " + data.dump() + end + end;
  }

  void complete(const httplib::Request& req, httplib::Response& res, bool chat) {
    ++requests_;
    std::string prompt;
    int max_tokens = 0;
    bool wants_usage = false;
    if (const Problem problem = check(req, chat, &prompt, &max_tokens, &wants_usage); problem.status != 0) {
      reject(res, problem.status, problem.message);
      return;
    }
    {
      std::lock_guard lock(mutex_);
      prompts_.push_back(prompt);
    }
    const int now = ++in_flight_;
    for (int seen = max_in_flight_.load(); now > seen && !max_in_flight_.compare_exchange_weak(seen, now);) {
    }
    const long prompt_tokens = count_words(prompt);
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, chat, max_tokens, wants_usage, prompt_tokens](size_t, httplib::DataSink& sink) {
          auto write = [&](const std::string& text) {
            if (!script_.split_events) return sink.write(text.data(), text.size());
            const size_t half = text.size() / 2;
            const bool first = sink.write(text.data(), half);
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
            return first && sink.write(text.data() + half, text.size() - half);
          };
          const std::string object = chat ? "chat.completion.chunk" : "text_completion";
          if (chat) {  // the role comes first, with empty content, as OpenAI's chat streams begin
            const nlohmann::json role = {{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}};
            if (!write(event({{"object", object}, {"choices", {role}}}))) return false;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(script_.first_token_delay_ms));
          for (int i = 0; i < max_tokens; ++i) {
            if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(script_.token_gap_ms));
            if (i == script_.abort_after_tokens) return false;
            if (i == script_.error_after_tokens) {
              const nlohmann::json error = {{"object", "error"}, {"message", "the engine stopped"}, {"code", 500}};
              const std::string end = script_.crlf ? "\r\n" : "\n";
              if (!write(event(error)) || !write("data: [DONE]" + end + end)) return false;
              sink.done();
              return true;
            }
            const std::string word = "w" + std::to_string(i) + " ";
            const nlohmann::json finish = i + 1 == max_tokens ? nlohmann::json("length") : nlohmann::json();
            nlohmann::json choice = {{"index", 0}, {"finish_reason", finish}};
            if (chat) {
              choice["delta"] = {{"content", word}};
            } else {
              choice["text"] = word;
            }
            if (!write(event({{"object", object}, {"choices", {choice}}}))) return false;
          }
          if (wants_usage && script_.send_usage) {
            const nlohmann::json usage = {{"prompt_tokens", prompt_tokens},
                                          {"completion_tokens", max_tokens},
                                          {"total_tokens", prompt_tokens + max_tokens}};
            if (!write(event({{"object", object}, {"choices", nlohmann::json::array()}, {"usage", usage}}))) return false;
          }
          const std::string end = script_.crlf ? "\r\n" : "\n";
          if (!write("data: [DONE]" + end + end)) return false;
          sink.done();
          return true;
        },
        [this](bool) { --in_flight_; });
  }

  StreamScript script_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> requests_{0}, in_flight_{0}, max_in_flight_{0};
  std::mutex mutex_;
  std::vector<std::string> prompts_;
};

}  // namespace switchyard
