#include "tokenizer/special_token_matcher.h"

#include <algorithm>
#include <functional>

namespace switchyard::tokenizer {

SpecialTokenMatcher::SpecialTokenMatcher(const std::vector<SpecialToken>& specials) {
  for (const SpecialToken& special : specials) {
    if (special.text.empty()) continue;
    ids_.emplace(special.text, special.id);
    if (first_bytes_.find(special.text[0]) == std::string::npos) first_bytes_.push_back(special.text[0]);
    if (std::find(lengths_.begin(), lengths_.end(), special.text.size()) == lengths_.end()) {
      lengths_.push_back(special.text.size());
    }
  }
  std::sort(lengths_.begin(), lengths_.end(), std::greater<>());
}

std::optional<SpecialTokenMatcher::Match> SpecialTokenMatcher::find(std::string_view text,
                                                                    size_t from) const {
  if (ids_.empty()) return std::nullopt;
  for (size_t at = text.find_first_of(first_bytes_, from); at != std::string_view::npos;
       at = text.find_first_of(first_bytes_, at + 1)) {
    for (const size_t length : lengths_) {
      if (length > text.size() - at) continue;
      if (const auto it = ids_.find(text.substr(at, length)); it != ids_.end()) {
        return Match{at, length, it->second};
      }
    }
  }
  return std::nullopt;
}

}  // namespace switchyard::tokenizer
