#include "tokenizer/utf8_stream.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace switchyard::tokenizer {
namespace {

// How many bytes at the start of [p, p + n) form an unfinished but so far valid UTF-8 sequence
// (1..3), given that no complete valid sequence starts there; 0 if p[0] cannot start one.
size_t unfinished_utf8_length(const unsigned char* p, size_t n) {
  const unsigned char lead = p[0];
  size_t length = 0;
  unsigned char low = 0x80, high = 0xBF;  // the range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // no overlong forms
    if (lead == 0xED) high = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // no overlong forms
    if (lead == 0xF4) high = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  size_t k = 1;
  while (k < n && k < length) {
    const unsigned char lo = k == 1 ? low : 0x80, hi = k == 1 ? high : 0xBF;
    if (p[k] < lo || p[k] > hi) break;
    ++k;
  }
  return k;
}

}  // namespace

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  return take(false);
}

std::string Utf8Stream::flush() { return take(true); }

std::string Utf8Stream::take(bool flush) {
  const auto* p = reinterpret_cast<const unsigned char*>(pending_.data());
  const size_t n = pending_.size();
  std::string out;
  size_t i = 0;
  while (i < n) {
    char32_t code_point;
    const size_t length = utf8_sequence_length(p + i, n - i, code_point);
    if (length > 0) {
      out.append(pending_, i, length);
      i += length;
      continue;
    }
    const size_t unfinished = unfinished_utf8_length(p + i, n - i);
    if (unfinished > 0 && i + unfinished == n && !flush) break;  // the rest may come with the next piece
    out += kReplacementCharacter;
    i += std::max<size_t>(unfinished, 1);
  }
  pending_.erase(0, i);
  return out;
}

}  // namespace switchyard::tokenizer
