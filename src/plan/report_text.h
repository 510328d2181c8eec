// Text helpers the planner's reports share: aligned tables, CSV and XML escaping, numbered notes
// and log-scale ticks for the SVG charts.
#pragma once

#include <string>
#include <vector>

namespace switchyard::plan {

// Escapes <, >, & and " for SVG text and attributes.
std::string xml_escape(const std::string& s);
// Quotes a CSV field when it holds a comma, a quote or a newline.
std::string csv_field(const std::string& s);
// Left-aligned columns, two spaces apart, one line per row; trailing spaces trimmed.
std::string aligned(const std::vector<std::vector<std::string>>& cells);

// Numbered notes under a table, one per distinct text, in order of first reference.
class Notes {
 public:
  // "[n]" for `text`, adding it when new.
  std::string ref(const std::string& text);
  // "  [1] text\n  [2] ..."
  std::string format() const;
  bool empty() const { return texts_.empty(); }

 private:
  std::vector<std::string> texts_;
};

// A tick on a log axis: 1, 2 and 5 times each power of ten from 10^lo to 10^hi; major for the
// powers of ten themselves.
struct LogTick {
  double value;
  bool major;
};
std::vector<LogTick> log_ticks(double lo_exponent, double hi_exponent);

}  // namespace switchyard::plan
