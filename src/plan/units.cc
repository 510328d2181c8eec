#include "plan/units.h"

#include <cmath>

#include <fmt/format.h>

namespace switchyard::plan {

namespace {

// One decimal below `one_decimal_below`, none from there.
std::string number_in_unit(double value, double one_decimal_below, const char* unit) {
  return value < one_decimal_below ? fmt::format("{:.1f} {}", value, unit)
                                   : fmt::format("{:.0f} {}", value, unit);
}

// True when `value` would print as at least `limit` at the precision number_in_unit gives it.
bool rounds_to_at_least(double value, double one_decimal_below, double limit) {
  const double rounded =
      value < one_decimal_below ? std::round(value * 10) / 10 : std::round(value);
  return rounded >= limit;
}

}  // namespace

std::string format_duration(double hours) {
  if (!std::isfinite(hours)) return "n/a";
  const double seconds = hours * 3600.0;
  if (!rounds_to_at_least(seconds, 10, 60)) return number_in_unit(seconds, 10, "s");
  const double minutes = seconds / 60.0;
  if (!rounds_to_at_least(minutes, 100, 60)) return number_in_unit(minutes, 100, "min");
  if (!rounds_to_at_least(hours, 100, 24)) return number_in_unit(hours, 100, "h");
  return number_in_unit(hours / 24.0, 100, "d");
}

std::string group_digits(double value) {
  std::string digits = fmt::format("{:.0f}", std::abs(value));
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 && digits != "0" ? fmt::format("-{}", out) : out;
}

std::string format_dollars(double dollars) {
  if (!std::isfinite(dollars)) return "n/a";
  if (std::round(dollars * 100) / 100 < 100) return fmt::format("${:.2f}", dollars);
  return fmt::format("${}", group_digits(dollars));
}

std::string human_count(double x) {
  if (x >= 1e9) return fmt::format("{:.2f}G", x / 1e9);
  if (x >= 1e6) return fmt::format("{:.2f}M", x / 1e6);
  if (x >= 1e3) return fmt::format("{:.1f}k", x / 1e3);
  return fmt::format("{:.1f}", x);
}

}  // namespace switchyard::plan
