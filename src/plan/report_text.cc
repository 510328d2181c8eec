#include "plan/report_text.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace switchyard::plan {

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string aligned(const std::vector<std::vector<std::string>>& cells) {
  std::vector<size_t> width(cells[0].size(), 0);
  for (const auto& row : cells) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : cells) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i] + std::string(width[i] - row[i].size() + (i + 1 < row.size() ? 2 : 0), ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string Notes::ref(const std::string& text) {
  auto it = std::find(texts_.begin(), texts_.end(), text);
  if (it == texts_.end()) it = texts_.insert(texts_.end(), text);
  return fmt::format("[{}]", it - texts_.begin() + 1);
}

std::string Notes::format() const {
  std::string out;
  for (size_t i = 0; i < texts_.size(); ++i) out += fmt::format("  [{}] {}\n", i + 1, texts_[i]);
  return out;
}

std::vector<LogTick> log_ticks(double lo_exponent, double hi_exponent) {
  std::vector<LogTick> ticks;
  for (double e = lo_exponent; e <= hi_exponent; e += 1) {
    for (double m : {1.0, 2.0, 5.0}) {
      const double v = m * std::pow(10, e);
      if (std::log10(v) > hi_exponent + 1e-9) break;
      ticks.push_back({v, m == 1.0});
    }
  }
  return ticks;
}

}  // namespace switchyard::plan
