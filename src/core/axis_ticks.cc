#include "core/axis_ticks.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <fmt/format.h>

namespace switchyard {

std::vector<double> nice_ticks(double lo, double hi, int target, double min_step) {
  if (!(hi > lo)) {  // one value (or none): a unit-wide range around it
    lo -= 0.5;
    hi = lo + 1;
  }
  const double rough = (hi - lo) / std::max(target, 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(rough)));
  double step = 10 * magnitude;
  for (double mantissa : {1.0, 2.0, 2.5, 5.0}) {
    if (mantissa * magnitude >= rough * (1 - 1e-9)) {
      step = mantissa * magnitude;
      break;
    }
  }
  step = std::max(step, min_step);
  // Integer multiples of the step, so that 0.1 + 0.2 never shows up as 0.30000000000000004.
  const auto first = static_cast<int64_t>(std::floor(lo / step + 1e-9));
  const auto last = std::max(first + 1, static_cast<int64_t>(std::ceil(hi / step - 1e-9)));
  std::vector<double> ticks;
  for (int64_t i = first; i <= last; ++i) ticks.push_back(static_cast<double>(i) * step);
  return ticks;
}

std::string format_tick(double value, double step) {
  const int exponent = static_cast<int>(std::floor(std::log10(step) + 1e-9));
  const double mantissa = step / std::pow(10.0, exponent);
  const int decimals = std::max(0, -exponent + (std::abs(mantissa - 2.5) < 1e-6 ? 1 : 0));
  if (std::abs(value) < 0.5 * std::pow(10.0, -decimals)) value = 0;  // "0.0", never "-0.0"
  return fmt::format("{:.{}f}", value, decimals);
}

}  // namespace switchyard
