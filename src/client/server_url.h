// The address of an OpenAI-compatible server, as given on the command line
// ("http://127.0.0.1:8000", "https://host/prefix", "http://[::1]:8000/v1"), checked and split.
#pragma once

#include <string>
#include <string_view>

namespace switchyard::client {

struct ServerUrl {
  std::string scheme;     // "http" or "https"
  std::string host;       // a name, an IPv4 address, or an IPv6 address in brackets
  int port = 0;           // 80 or 443 when the URL names none
  std::string base_path;  // before "/v1/...": "" or "/prefix", without a trailing '/' or "/v1"

  // "scheme://host:port", what an HTTP client connects to.
  std::string origin() const;
  // The request path of an API route: path("/v1/models") is base_path + "/v1/models".
  std::string path(std::string_view api_route) const;
};

// Throws Error naming the URL and what was expected when it is not an http(s) URL of a server.
ServerUrl parse_server_url(const std::string& url);

}  // namespace switchyard::client
