#include "serve/api_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>

#include "core/error.h"
#include "serve/api_error.h"
#include "serve/api_routes.h"
#include "serve/futex_hash.h"
#include "serve/response_json.h"

namespace switchyard::serve {
namespace {

// The error for a status the HTTP library set by itself (no route, a body too large, a request
// it could not read).
ApiError library_error(int status, const httplib::Request& req, size_t max_body_bytes) {
  switch (status) {
    case 404:
      return ApiError(404, "Unknown request URL: " + req.method + " " + req.path + ".", "invalid_request_error", "",
                      "unknown_url");
    case 413:
      return ApiError(413, "The request body is larger than this server's limit of " + std::to_string(max_body_bytes) +
                               " bytes.",
                      "invalid_request_error", "", "request_too_large");
    default:
      return ApiError(status, "The request could not be read (HTTP " + std::to_string(status) + ").",
                      "invalid_request_error");
  }
}

}  // namespace

struct ApiServer::Impl {
  Impl(Engine& engine, const ServedModel& model, ServerOptions options)
      : options(std::move(options)), routes(engine, model, metrics) {}

  ServerOptions options;
  ServerMetrics metrics;
  ApiRoutes routes;
  httplib::Server http;
  int port = -1;
  socket_t listening = -1;  // the socket set_socket_options saw, for widening its backlog
};

ApiServer::ApiServer(Engine& engine, const ServedModel& model, ServerOptions options)
    : impl_(std::make_unique<Impl>(engine, model, std::move(options))) {
  httplib::Server& http = impl_->http;
  Impl& impl = *impl_;
  const ServerOptions& o = impl.options;
  // Every request of the engine's batch and queue may hold a worker thread while it waits; a few
  // more keep /health and /metrics answering when they are all taken.
  const int threads = o.threads > 0 ? o.threads
                                    : std::min(engine.options().max_sequences + engine.options().max_queue, 512) + 4;
  widen_futex_hash(threads);  // the pool's threads all wait on one futex (futex_hash.h)
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // SO_REUSEADDR (a restarted server need not wait out TIME_WAIT) but not the library's default
  // SO_REUSEPORT, with which a second server would silently share a port already taken.
  http.set_socket_options([&impl](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const void*>(&yes), sizeof(yes));
    impl.listening = sock;
  });
  // A streamed token is a small write: without TCP_NODELAY it waits for the client's delayed
  // acknowledgement (tens of milliseconds) before it leaves.
  http.set_tcp_nodelay(true);
  // The library closes a kept-alive connection after 5 requests by default; a client (a
  // benchmark's worker) reuses its connection for many more.
  http.set_keep_alive_max_count(1 << 20);
  http.set_payload_max_length(o.max_body_bytes);
  http.set_read_timeout(o.read_timeout_s, 0);
  http.set_write_timeout(o.write_timeout_s, 0);

  http.set_pre_routing_handler([&impl](const httplib::Request& req, httplib::Response& res) {
    if (impl.options.api_key.empty() || !req.path.starts_with("/v1/")) return httplib::Server::HandlerResponse::Unhandled;
    if (authorized(req.get_header_value("Authorization"), impl.options.api_key)) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    send_error(res, ApiError(401,
                             "Incorrect or missing API key. Send it in an Authorization header using Bearer auth "
                             "(Authorization: Bearer YOUR_KEY).",
                             "invalid_request_error", "", "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_error_handler(httplib::Server::HandlerWithResponse(
      [&impl](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        send_error(res, library_error(res.status, req, impl.options.max_body_bytes));
        return httplib::Server::HandlerResponse::Handled;
      }));
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr error) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, "The server failed to handle the request: " + what, "server_error"));
  });

  http.Get("/health", [&impl](const httplib::Request&, httplib::Response& res) { impl.routes.health(res); });
  http.Get("/metrics", [&impl](const httplib::Request&, httplib::Response& res) { impl.routes.metrics_page(res); });
  http.Get("/v1/models", [&impl](const httplib::Request&, httplib::Response& res) { impl.routes.models(res); });
  http.Post("/v1/completions", [&impl](const httplib::Request& req, httplib::Response& res) {
    impl.routes.generate(Endpoint::kCompletions, req, res);
  });
  http.Post("/v1/chat/completions", [&impl](const httplib::Request& req, httplib::Response& res) {
    impl.routes.generate(Endpoint::kChatCompletions, req, res);
  });
}

ApiServer::~ApiServer() = default;

int ApiServer::bind() {
  const ServerOptions& o = impl_->options;
  if (o.port == 0) {
    impl_->port = impl_->http.bind_to_any_port(o.host);
  } else if (impl_->http.bind_to_port(o.host, o.port)) {
    impl_->port = o.port;
  }
  require(impl_->port > 0, "cannot listen on {}:{} (is the port taken, or the address not this machine's?)", o.host,
          o.port);
  // The library listens with a backlog of 5 connections: a burst of clients connecting at once
  // (a benchmark's 128 requests) overflows it, and the kernel drops connections it cannot queue.
  // Calling listen again on the bound socket widens the queue to the system's limit.
  if (impl_->listening >= 0) ::listen(impl_->listening, SOMAXCONN);
  return impl_->port;
}

void ApiServer::serve() { impl_->http.listen_after_bind(); }

void ApiServer::stop() { impl_->http.stop(); }

const ServerMetrics& ApiServer::metrics() const { return impl_->metrics; }

}  // namespace switchyard::serve
