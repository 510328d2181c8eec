#include "serve/api_routes.h"

#include <fmt/format.h>
#include <httplib.h>

#include <chrono>

#include "serve/event_stream.h"
#include "serve/generation.h"
#include "serve/prepared_request.h"
#include "serve/reply_text.h"
#include "serve/response_builder.h"
#include "serve/response_json.h"

namespace switchyard::serve {
namespace {

using nlohmann::json;

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// How long a handler waits on its request's queue before looking around (a stream probes its
// client then).
constexpr std::chrono::milliseconds kPoll{100};

}  // namespace

void send_error(httplib::Response& res, const ApiError& error) {
  res.status = error.status;
  if (error.status == 429) res.set_header("Retry-After", "1");
  res.set_content(dump_json(error_body(error)), "application/json");
}

bool authorized(const std::string& authorization, const std::string& api_key) {
  constexpr std::string_view kBearer = "Bearer ";
  if (!authorization.starts_with(kBearer)) return false;
  const std::string_view given = std::string_view(authorization).substr(kBearer.size());
  // Every byte compared whatever the first difference, so the time taken tells nothing of the key.
  unsigned char difference = given.size() == api_key.size() ? 0 : 1;
  for (size_t i = 0; i < api_key.size(); ++i) {
    difference |= static_cast<unsigned char>(api_key[i] ^ (i < given.size() ? given[i] : 0));
  }
  return difference == 0;
}

ApiRoutes::ApiRoutes(Engine& engine, const ServedModel& model, ServerMetrics& metrics)
    : engine_(engine), model_(model), metrics_(metrics), created_(unix_seconds()), random_(std::random_device{}()) {}

std::string ApiRoutes::new_id(Endpoint endpoint) {
  std::lock_guard lock(random_mutex_);
  return fmt::format("{}-{:016x}{:08x}", endpoint == Endpoint::kCompletions ? "cmpl" : "chatcmpl", random_(),
                     static_cast<uint32_t>(random_()));
}

uint64_t ApiRoutes::new_seed() {
  std::lock_guard lock(random_mutex_);
  return random_();
}

void ApiRoutes::health(httplib::Response& res) { res.set_content(R"({"status":"ok"})", "application/json"); }

void ApiRoutes::models(httplib::Response& res) {
  const json model = {{"id", model_.name()},
                      {"object", "model"},
                      {"created", created_},
                      {"owned_by", "switchyard"},
                      {"max_model_len", model_.config().max_seq_len}};
  res.set_content(dump_json({{"object", "list"}, {"data", json::array({model})}}), "application/json");
}

void ApiRoutes::metrics_page(httplib::Response& res) {
  res.set_content(render_metrics(model_.name(), engine_.stats(), metrics_, engine_.step_times()), "text/plain; version=0.0.4");
}

void ApiRoutes::generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
  const Clock::time_point arrival = Clock::now();
  try {
    const ApiRequest request = parse_api_request(endpoint, req.body, model_.limits());
    PreparedRequest prepared = prepare_request(request, model_, new_seed());
    std::unique_ptr<ReplyText> reply = prepared.harmony
                                           ? make_harmony_reply(model_.tokenizer(), *model_.harmony(), request.stop)
                                           : make_plain_reply(model_.tokenizer(), request.stop);
    auto generation = std::make_shared<Generation>(engine_, std::move(prepared), std::move(reply), metrics_, arrival);
    auto builder = std::make_shared<ResponseBuilder>(
        request, ResponseHeader{.id = new_id(endpoint), .created = unix_seconds(), .model = model_.name()},
        model_.tokenizer());
    if (request.stream) {
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          "text/event-stream", [this, generation, builder](size_t, httplib::DataSink& sink) {
            return stream_events(*generation, *builder, sink, metrics_, kPoll);
          });
      return;
    }
    while (!generation->done()) builder->add(generation->next(kPoll));
    res.set_content(dump_json(builder->body()), "application/json");
  } catch (const ApiError& e) {
    send_error(res, e);
  }
}

}  // namespace switchyard::serve
