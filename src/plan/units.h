// How the planner writes quantities for people: durations in the unit that fits them ("45 s",
// "1.2 min", "3.4 h", "2.1 d"; never "0.02 h"), dollars, token counts with grouped digits and
// large counts with a suffix.
#pragma once

#include <string>

namespace switchyard::plan {

// Seconds below a minute, minutes below an hour, hours below a day, then days; one decimal below
// 100 of the unit (seconds: below 10), none above. Chooses the unit after rounding, so 59.97 s
// is "1.0 min", not "60.0 s". "n/a" for a value that is not finite.
std::string format_duration(double hours);
// "$0.42", "$24.75", "$150", "$12,345": cents below $100, whole dollars from there.
std::string format_dollars(double dollars);
// 1048576 -> "1,048,576" (rounded to a whole number).
std::string group_digits(double value);
// 64202892 -> "64.20M", 524288 -> "524.3k".
std::string human_count(double value);

}  // namespace switchyard::plan
