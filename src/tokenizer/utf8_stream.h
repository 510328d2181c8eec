// UTF-8 text from bytes that arrive in pieces (one token's bytes at a time): whole characters are
// passed on as soon as they are complete, and the bytes of a character split across pieces wait
// for the rest. Bytes that cannot become valid UTF-8 are passed on as U+FFFD, one for each maximal
// invalid prefix (as Python's and OpenAI's decoders do), so the output is always valid UTF-8.
#pragma once

#include <string>
#include <string_view>

namespace switchyard::tokenizer {

inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

class Utf8Stream {
 public:
  // Appends `bytes` and returns the text that became complete.
  std::string push(std::string_view bytes);
  // The end of the input: an unfinished character left over becomes U+FFFD.
  std::string flush();
  // Bytes held back, waiting for the rest of a character.
  size_t pending() const { return pending_.size(); }

 private:
  std::string take(bool flush);

  std::string pending_;
};

}  // namespace switchyard::tokenizer
