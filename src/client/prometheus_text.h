// Reads the samples of a Prometheus text exposition (what GET /metrics answers): one sample a
// line, `name{label="value",...} value [timestamp]`, with "# HELP" and "# TYPE" comments between.
// A scraper takes what it can read: a line it cannot parse is skipped, not an error.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace switchyard::client {

struct MetricSample {
  std::string name;                           // "switchyard:generation_tokens_total"
  std::map<std::string, std::string> labels;  // unescaped values
  double value = 0;                           // NaN and +-Inf as Prometheus writes them
};

std::vector<MetricSample> parse_prometheus_text(std::string_view text);

}  // namespace switchyard::client
