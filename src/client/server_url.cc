#include "client/server_url.h"

#include <regex>

#include "core/error.h"

namespace switchyard::client {

std::string ServerUrl::origin() const { return scheme + "://" + host + ":" + std::to_string(port); }

std::string ServerUrl::path(std::string_view api_route) const { return base_path + std::string(api_route); }

ServerUrl parse_server_url(const std::string& url) {
  static const std::regex kUrl(
      R"(^(https?)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::([0-9]{1,5}))?(/[^?#\s]*)?$)");
  std::smatch m;
  require(std::regex_match(url, m, kUrl),
          "bad server URL '{}': expected http://HOST[:PORT][/PATH] or https://..., such as http://127.0.0.1:8000",
          url);
  ServerUrl parsed;
  parsed.scheme = m[1].str();
  parsed.host = m[2].str();
  parsed.port = parsed.scheme == "https" ? 443 : 80;
  if (m[3].matched) {
    parsed.port = std::stoi(m[3].str());
    require(parsed.port >= 1 && parsed.port <= 65535, "bad server URL '{}': port {} is not in 1..65535", url,
            parsed.port);
  }
  std::string path = m[4].matched ? m[4].str() : "";
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (path.size() >= 3 && path.compare(path.size() - 3, 3, "/v1") == 0) path.resize(path.size() - 3);
  parsed.base_path = path;
  return parsed;
}

}  // namespace switchyard::client
