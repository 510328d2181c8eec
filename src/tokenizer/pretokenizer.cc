#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace switchyard::tokenizer {

namespace {

// Stand-ins, one per class of the pattern, that every PCRE2 version classes as the reference does.
// None is ASCII, so none can complete a contraction ('s) or act as the optional leading space.
constexpr char32_t kLetterStandIn = 0x4E00;  // CJK ideograph one (Lo)
constexpr char32_t kNumberStandIn = 0x0660;  // Arabic-Indic digit zero (Nd)
constexpr char32_t kOtherStandIn = 0xE000;   // first private-use code point (Co), like a lone surrogate

// Code points on which PCRE2 10.42 (Unicode 14) and the regex module 2.5 (Unicode 15.0) disagree,
// with the reference's class. The o200k pattern splits letters by case; its classes hold the Lo
// stand-in wherever they hold an Lo or Lm letter, which all of these letters are but U+1DF25..
// U+1DF2A (Ll), whose chunks can differ from the reference's next to an upper-case letter. U+180E (PCRE2's \s still includes it) and the letters and numbers
// that Unicode 15.0 added. tests/tokenizer_test.cc compares every code point with the reference.
struct ClassOverride {
  char32_t first;
  char32_t last;
  char32_t stand_in;
};
constexpr ClassOverride kOverrides[] = {
    {0x180E, 0x180E, kOtherStandIn},   {0x1123F, 0x11240, kLetterStandIn},
    {0x11F02, 0x11F02, kLetterStandIn}, {0x11F04, 0x11F10, kLetterStandIn},
    {0x11F12, 0x11F33, kLetterStandIn}, {0x11F50, 0x11F59, kNumberStandIn},
    {0x1342F, 0x1342F, kLetterStandIn}, {0x13441, 0x13446, kLetterStandIn},
    {0x1B132, 0x1B132, kLetterStandIn}, {0x1B155, 0x1B155, kLetterStandIn},
    {0x1D2C0, 0x1D2D3, kNumberStandIn}, {0x1DF25, 0x1DF2A, kLetterStandIn},
    {0x1E030, 0x1E06D, kLetterStandIn}, {0x1E4D0, 0x1E4EB, kLetterStandIn},
    {0x1E4F0, 0x1E4F9, kNumberStandIn}, {0x2B739, 0x2B739, kLetterStandIn},
    {0x31350, 0x323AF, kLetterStandIn},
};

// The stand-in for `cp`, or 0 when PCRE2 already classes it as the reference does.
char32_t stand_in_for(char32_t cp) {
  if (cp < kOverrides[0].first) return 0;
  const auto* it = std::upper_bound(std::begin(kOverrides), std::end(kOverrides), cp,
                                    [](char32_t c, const ClassOverride& o) { return c < o.first; });
  --it;  // the last override starting at or before cp
  return cp <= it->last ? it->stand_in : 0;
}

// Length of the prefix of `text` that PCRE2 can match as it is: valid UTF-8 without overrides.
size_t plain_prefix_length(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // ASCII runs are the common case: skip eight bytes at a time.
    while (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, p + i, 8);
      if (word & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i == n) break;
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    char32_t cp;
    const size_t length = utf8_sequence_length(p + i, n - i, cp);
    if (length == 0 || stand_in_for(cp) != 0) break;
    i += length;
  }
  return i;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof buffer) < 0) return "error " + std::to_string(code);
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

struct Pretokenizer::Impl {
  pcre2_code* code = nullptr;
  pcre2_match_data* match_data = nullptr;
  pcre2_match_context* match_context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  bool jit = false;
  // Reused between calls: the transcoded text, and for each of its bytes the original offset.
  std::string transcoded;
  std::vector<size_t> origin;

  ~Impl() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(match_context);
    pcre2_match_data_free(match_data);
    pcre2_code_free(code);
  }

  // Fills `transcoded` and `origin` for a text whose first `plain` bytes need no change.
  void transcode(std::string_view text, size_t plain) {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    transcoded.assign(text.data(), plain);
    origin.resize(plain);
    for (size_t k = 0; k < plain; ++k) origin[k] = k;
    size_t i = plain;
    while (i < n) {
      char32_t cp;
      size_t length = utf8_sequence_length(p + i, n - i, cp);
      const size_t out_begin = transcoded.size();
      if (length == 0) {
        length = 1;  // each invalid byte is its own "other" character
        append_utf8(kOtherStandIn, transcoded);
      } else if (const char32_t stand_in = stand_in_for(cp); stand_in != 0) {
        append_utf8(stand_in, transcoded);
      } else {
        transcoded.append(text.data() + i, length);
      }
      // Chunks start and end only at character starts; every byte of a character maps to its start.
      origin.insert(origin.end(), transcoded.size() - out_begin, i);
      i += length;
    }
    origin.push_back(n);
  }
};

Pretokenizer::Pretokenizer(std::string_view pattern, bool use_jit) : impl_(std::make_unique<Impl>()) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              // \C matches one byte of a character: a chunk could then end inside
                              // one, where the next match must not start.
                              PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C, &error_code,
                              &error_offset, nullptr);
  if (impl_->code == nullptr) {
    fail("pre-tokenizer: PCRE2 cannot compile the pattern at offset {}: {}", error_offset,
         pcre2_message(error_code));
  }
  impl_->match_data = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  impl_->match_context = pcre2_match_context_create(nullptr);
  require(impl_->match_data != nullptr && impl_->match_context != nullptr,
          "pre-tokenizer: out of memory creating PCRE2 match data");
  // JIT is optional (PCRE2 may be built without it); the interpreter gives the same matches.
  if (use_jit && pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0) {
    impl_->jit_stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, nullptr);
    if (impl_->jit_stack != nullptr) {
      pcre2_jit_stack_assign(impl_->match_context, nullptr, impl_->jit_stack);
      impl_->jit = true;
    }
  }
}

Pretokenizer::~Pretokenizer() = default;

void Pretokenizer::split(std::string_view text, std::vector<Chunk>& chunks) const {
  chunks.clear();
  Impl& impl = *impl_;
  const size_t plain = plain_prefix_length(text);
  const bool transcoded = plain < text.size();
  if (transcoded) impl.transcode(text, plain);
  const std::string_view subject = transcoded ? std::string_view(impl.transcoded) : text;
  const auto* data = reinterpret_cast<PCRE2_SPTR>(subject.data());

  size_t offset = 0;
  while (offset < subject.size()) {
    // The subject is valid UTF-8 by construction, so PCRE2 need not check it again.
    const int rc = impl.jit ? pcre2_jit_match(impl.code, data, subject.size(), offset, 0,
                                              impl.match_data, impl.match_context)
                            : pcre2_match(impl.code, data, subject.size(), offset, PCRE2_NO_UTF_CHECK,
                                          impl.match_data, impl.match_context);
    // A pattern that skips text would drop it from the encoding (patterns can come from files).
    require(rc != PCRE2_ERROR_NOMATCH, "pre-tokenizer: the pattern matches nothing from byte {} of {}",
            offset, subject.size());
    if (rc < 0) {
      fail("pre-tokenizer: PCRE2 failed matching at byte {} of {}: {}", offset, subject.size(),
           pcre2_message(rc));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(impl.match_data);
    const size_t begin = ovector[0], end = ovector[1];
    require(begin == offset, "pre-tokenizer: the pattern skips bytes {} to {}", offset, begin);
    require(end > begin, "pre-tokenizer: empty match at byte {}", begin);
    if (transcoded) {
      chunks.push_back({impl.origin[begin], impl.origin[end]});
    } else {
      chunks.push_back({begin, end});
    }
    offset = end;
  }
}

}  // namespace switchyard::tokenizer
