// GPT-2's byte <-> character alphabet.
//
// GPT-2's vocabulary files spell every token as a string of 256 distinct printable characters, one
// per byte value, so that no token contains whitespace or control characters. Bytes that print as
// themselves in Latin-1 ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) keep their code point; the other
// 68 bytes are given U+0100, U+0101, ... in byte order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace switchyard::tokenizer {

// The code point that spells byte `byte` in vocabulary files.
char32_t byte_to_vocab_char(uint8_t byte);
// The byte that code point `c` spells, or -1 when `c` is not one of the 256 vocabulary characters.
int vocab_char_to_byte(char32_t c);
// Converts a vocabulary-file token (UTF-8 of vocabulary characters) to the raw bytes it stands for.
// Returns false, leaving `bytes` unspecified, if it holds anything else.
bool vocab_token_to_bytes(std::string_view token, std::string& bytes);

}  // namespace switchyard::tokenizer
