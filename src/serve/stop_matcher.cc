#include "serve/stop_matcher.h"

#include <algorithm>

namespace switchyard::serve {

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (std::string& stop : stops) {
    if (!stop.empty()) stops_.push_back(std::move(stop));
  }
}

StopMatcher::Result StopMatcher::push(std::string_view piece) {
  Result result;
  if (stopped_) return result;
  held_.append(piece);
  // The earliest occurrence of any stop string ends the text.
  size_t first = std::string::npos;
  for (const std::string& stop : stops_) first = std::min(first, held_.find(stop));
  if (first != std::string::npos) {
    result.text = held_.substr(0, first);
    result.stopped = stopped_ = true;
    held_.clear();
    return result;
  }
  // Hold back the longest end of the text that is the beginning of some stop string.
  size_t keep = 0;
  for (const std::string& stop : stops_) {
    for (size_t n = std::min(stop.size() - 1, held_.size()); n > keep; --n) {
      if (std::string_view(held_).substr(held_.size() - n) == std::string_view(stop).substr(0, n)) {
        keep = n;
        break;
      }
    }
  }
  result.text = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return result;
}

std::string StopMatcher::flush() {
  if (stopped_) return "";
  std::string text = std::move(held_);
  held_.clear();
  return text;
}

}  // namespace switchyard::serve
