#include "cli/name_suggestion.h"

#include <algorithm>
#include <cctype>

namespace switchyard::cli {

namespace {

std::string_view without_dashes(std::string_view name) {
  while (!name.empty() && name.front() == '-') name.remove_prefix(1);
  return name;
}

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

}  // namespace

int edit_distance(std::string_view a, std::string_view b) {
  const size_t n = a.size(), m = b.size();
  // d[i][j]: distance between the first i characters of a and the first j of b.
  std::vector<std::vector<int>> d(n + 1, std::vector<int>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= m; ++j) d[0][j] = static_cast<int>(j);
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const int substitution = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + substitution});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1])) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

std::optional<std::string> closest_name(std::string_view typed, const std::vector<std::string>& candidates) {
  const std::string_view core = without_dashes(typed);
  // A single letter ("-x") is one edit from every other single letter: nothing to go on.
  if (core.size() < 2) return std::nullopt;
  // One edit is allowed even in short names ("--lr" for "--rl"); longer names allow one per three
  // characters, so that unrelated short words are not offered as corrections.
  const int allowed = std::max<int>(1, static_cast<int>(core.size()) / 3);
  std::optional<std::string> best;
  int best_distance = allowed + 1;
  for (const std::string& candidate : candidates) {
    const int distance = edit_distance(typed, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  if (best) return best;

  // An abbreviation: "--temp" for "--temperature", when only one name begins that way.
  if (core.size() < 3) return std::nullopt;
  std::optional<std::string> prefix_of;
  for (const std::string& candidate : candidates) {
    if (candidate.size() > typed.size() && candidate.compare(0, typed.size(), typed) == 0) {
      if (prefix_of) return std::nullopt;
      prefix_of = candidate;
    }
  }
  return prefix_of;
}

}  // namespace switchyard::cli
