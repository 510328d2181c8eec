// Stop strings over streamed text: the text of a reply arrives in pieces (one token's worth at a
// time), a stop string may begin in one piece and end in a later one, and the client must never
// see any part of it. StopMatcher holds back the end of the text that could still grow into a stop
// string and passes on the rest.
//
// Text is compared as bytes, so pieces should be whole UTF-8 characters (tokenizer::Utf8Stream).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace switchyard::serve {

class StopMatcher {
 public:
  // Empty stop strings are ignored.
  explicit StopMatcher(std::vector<std::string> stops);

  struct Result {
    std::string text;      // safe to show: it cannot be part of a stop string
    bool stopped = false;  // a stop string was found; `text` ends where it began
  };
  // Adds the next piece. After a stop, further pieces are ignored.
  Result push(std::string_view piece);
  // The reply ended without a stop: the text held back is safe after all.
  std::string flush();

  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;  // text not yet passed on
  bool stopped_ = false;
};

}  // namespace switchyard::serve
