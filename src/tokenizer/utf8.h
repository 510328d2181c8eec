// UTF-8 decoding with exactly the rules of Python's strict "utf-8" codec.
//
// A sequence is valid only if it is the shortest encoding of a code point in U+0000..U+10FFFF that
// is not a surrogate (U+D800..U+DFFF): no overlong forms (C0, C1, E0 80..9F, F0 80..8F), no encoded
// surrogates (ED A0..BF), nothing above U+10FFFF (F4 90.., F5..FF), no stray continuation bytes and
// no truncated sequences. Python's decoder, on an invalid sequence, reports only the maximal valid
// prefix as bad and resumes right after it; because every byte of such a prefix after its lead is a
// continuation byte, which can never start a sequence, that is the same as rejecting one byte at a
// time. So with errors='surrogateescape' every byte that is not inside a valid sequence becomes its
// own escape, and a caller can simply skip one byte whenever utf8_sequence_length returns 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace switchyard::tokenizer {

// Length (1..4) of the valid UTF-8 sequence at the start of [p, p + available), storing its code
// point in `code_point`; 0 if no valid sequence starts there.
size_t utf8_sequence_length(const unsigned char* p, size_t available, char32_t& code_point);
// Appends the UTF-8 encoding of `code_point` (which must be a valid scalar value) to `out`.
void append_utf8(char32_t code_point, std::string& out);

}  // namespace switchyard::tokenizer
