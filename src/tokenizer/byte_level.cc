#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace switchyard::tokenizer {

namespace {

bool prints_as_itself(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct Alphabet {
  std::array<char32_t, 256> char_of_byte{};
  // Every vocabulary character is below U+0100 + 68.
  std::array<int16_t, 0x100 + 68> byte_of_char{};

  Alphabet() {
    byte_of_char.fill(-1);
    char32_t next_extra = 0x100;
    for (int b = 0; b < 256; ++b) {
      char_of_byte[b] = prints_as_itself(b) ? static_cast<char32_t>(b) : next_extra++;
      byte_of_char[char_of_byte[b]] = static_cast<int16_t>(b);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet table;
  return table;
}

}  // namespace

char32_t byte_to_vocab_char(uint8_t byte) { return alphabet().char_of_byte[byte]; }

int vocab_char_to_byte(char32_t c) {
  const auto& table = alphabet().byte_of_char;
  return c < table.size() ? table[c] : -1;
}

bool vocab_token_to_bytes(std::string_view token, std::string& bytes) {
  bytes.clear();
  const auto* p = reinterpret_cast<const unsigned char*>(token.data());
  size_t i = 0;
  while (i < token.size()) {
    char32_t c;
    const size_t length = utf8_sequence_length(p + i, token.size() - i, c);
    if (length == 0) return false;
    const int byte = vocab_char_to_byte(c);
    if (byte < 0) return false;
    bytes.push_back(static_cast<char>(byte));
    i += length;
  }
  return true;
}

}  // namespace switchyard::tokenizer
