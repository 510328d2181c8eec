#include "client/prometheus_text.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <optional>

namespace switchyard::client {
namespace {

bool name_char(char c, bool first) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
         (!first && std::isdigit(static_cast<unsigned char>(c)));
}

void skip_spaces(std::string_view line, size_t& at) {
  while (at < line.size() && (line[at] == ' ' || line[at] == '\t')) ++at;
}

// A label value after its opening quote, to the closing one; `at` ends past it.
std::optional<std::string> quoted(std::string_view line, size_t& at) {
  std::string value;
  while (at < line.size()) {
    const char c = line[at++];
    if (c == '"') return value;
    if (c != '\\') {
      value.push_back(c);
      continue;
    }
    if (at == line.size()) return std::nullopt;
    const char escaped = line[at++];
    value.push_back(escaped == 'n' ? '\n' : escaped);
  }
  return std::nullopt;
}

// `{a="x",b="y"}` (a trailing comma allowed); `at` starts at the brace and ends past the closing one.
std::optional<std::map<std::string, std::string>> labels(std::string_view line, size_t& at) {
  std::map<std::string, std::string> out;
  ++at;
  for (;;) {
    skip_spaces(line, at);
    if (at < line.size() && line[at] == '}') {
      ++at;
      return out;
    }
    const size_t start = at;
    while (at < line.size() && name_char(line[at], at == start) && line[at] != ':') ++at;
    if (at == start) return std::nullopt;
    const std::string key(line.substr(start, at - start));
    skip_spaces(line, at);
    if (at + 1 >= line.size() || line[at] != '=' || line[at + 1] != '"') return std::nullopt;
    at += 2;
    std::optional<std::string> value = quoted(line, at);
    if (!value) return std::nullopt;
    out[key] = std::move(*value);
    skip_spaces(line, at);
    if (at < line.size() && line[at] == ',') ++at;
  }
}

std::optional<double> number(std::string_view token) {
  if (token == "+Inf" || token == "Inf") return INFINITY;
  if (token == "-Inf") return -INFINITY;
  if (token == "NaN") return NAN;
  const std::string text(token);
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size()) return std::nullopt;
  return value;
}

std::optional<MetricSample> sample(std::string_view line) {
  MetricSample s;
  size_t at = 0;
  while (at < line.size() && name_char(line[at], at == 0)) ++at;
  if (at == 0) return std::nullopt;
  s.name = std::string(line.substr(0, at));
  if (at < line.size() && line[at] == '{') {
    std::optional<std::map<std::string, std::string>> parsed = labels(line, at);
    if (!parsed) return std::nullopt;
    s.labels = std::move(*parsed);
  }
  skip_spaces(line, at);
  size_t end = at;
  while (end < line.size() && line[end] != ' ' && line[end] != '\t') ++end;
  const std::optional<double> value = number(line.substr(at, end - at));
  if (!value) return std::nullopt;
  s.value = *value;
  return s;
}

}  // namespace

std::vector<MetricSample> parse_prometheus_text(std::string_view text) {
  std::vector<MetricSample> samples;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t first = 0;
    skip_spaces(line, first);
    line.remove_prefix(first);
    if (line.empty() || line[0] == '#') continue;
    if (std::optional<MetricSample> s = sample(line)) samples.push_back(std::move(*s));
  }
  return samples;
}

}  // namespace switchyard::client
