#include "plan/serving_mix.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "core/error.h"

namespace switchyard::plan {

namespace {

// A whole number of tokens > 0 from `text`; `what` names it in errors.
int64_t parse_tokens(const std::string& text, const std::string& what) {
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  require(!text.empty() && end && *end == '\0' && v > 0,
          "--mix: {} must be a whole number of tokens > 0, got '{}'", what, text);
  return v;
}

double parse_share(const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  require(!text.empty() && end && *end == '\0' && std::isfinite(v) && v > 0,
          "--mix: share must be a number > 0, got '{}'", text);
  return v;
}

}  // namespace

RequestMix::RequestMix(std::vector<RequestClass> classes) : classes_(std::move(classes)) {
  require(!classes_.empty(), "a request mix needs at least one class");
  double total = 0;
  for (const RequestClass& c : classes_) {
    require(c.prompt_tokens > 0, "prompt tokens must be > 0, got {}", c.prompt_tokens);
    require(c.output_tokens > 0, "output tokens must be > 0, got {}", c.output_tokens);
    require(std::isfinite(c.share) && c.share > 0, "a class's share must be > 0, got {}", c.share);
    total += c.share;
  }
  for (RequestClass& c : classes_) c.share /= total;
}

RequestMix RequestMix::parse(const std::string& spec) {
  std::vector<RequestClass> classes;
  std::stringstream items(spec);
  for (std::string item; std::getline(items, item, ',');) {
    std::vector<std::string> parts;
    std::stringstream fields(item);
    for (std::string part; std::getline(fields, part, ':');) parts.push_back(part);
    require(parts.size() == 3, "--mix: expected PROMPT:OUTPUT:SHARE, got '{}'", item);
    classes.push_back({parse_tokens(parts[0], "prompt tokens"),
                       parse_tokens(parts[1], "output tokens"), parse_share(parts[2])});
  }
  require(!classes.empty(), "--mix: expected PROMPT:OUTPUT:SHARE[,...], got '{}'", spec);
  return RequestMix(std::move(classes));
}

double RequestMix::mean_output() const {
  double sum = 0;
  for (const RequestClass& c : classes_) sum += c.share * static_cast<double>(c.output_tokens);
  return sum;
}

double RequestMix::decode_context() const {
  double weighted = 0;
  for (const RequestClass& c : classes_) {
    const double o = static_cast<double>(c.output_tokens);
    weighted += c.share * o * (static_cast<double>(c.prompt_tokens) + o / 2.0);
  }
  return weighted / mean_output();
}

int64_t RequestMix::longest() const {
  int64_t longest = 0;
  for (const RequestClass& c : classes_)
    longest = std::max(longest, c.prompt_tokens + c.output_tokens);
  return longest;
}

std::string RequestMix::describe() const {
  if (classes_.size() == 1) {
    return fmt::format("{} in / {} out", classes_[0].prompt_tokens, classes_[0].output_tokens);
  }
  std::string out;
  for (const RequestClass& c : classes_) {
    out += fmt::format("{}{:.0f}% {}/{}", out.empty() ? "" : ", ", 100 * c.share, c.prompt_tokens,
                       c.output_tokens);
  }
  return out;
}

}  // namespace switchyard::plan
