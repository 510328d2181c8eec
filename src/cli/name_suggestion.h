// Finds the name a user most likely meant when they mistyped a command or a flag.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace switchyard::cli {

// Optimal-string-alignment distance: the fewest single-character insertions, deletions,
// substitutions and swaps of neighbouring characters that turn `a` into `b` ("trian" -> "train" is 1).
int edit_distance(std::string_view a, std::string_view b);

// The candidate `typed` is most likely a typo of, or nothing when none is close: within about one
// edit per three characters (leading dashes not counted; single letters are never corrected), or
// the only candidate that `typed` (three characters or more) begins. Ties go to the earlier candidate.
std::optional<std::string> closest_name(std::string_view typed, const std::vector<std::string>& candidates);

}  // namespace switchyard::cli
