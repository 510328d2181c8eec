#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace switchyard::tokenizer {

namespace {

// One token per byte: needs no vocabulary files, handy for tests and tiny models.
class ByteTokenizer final : public Tokenizer {
 public:
  std::string name() const override { return "byte"; }
  int vocab_size() const override { return 256; }
  int end_of_text() const override { return -1; }

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<uint8_t>(text[i]);
    return ids;
  }

  std::string decode(std::span<const int32_t> ids) const override {
    std::string text(ids.size(), '\0');
    for (size_t i = 0; i < ids.size(); ++i) {
      require(ids[i] >= 0 && ids[i] < 256,
              "token id {} (position {}) is outside the byte vocabulary [0, 256)", ids[i], i);
      text[i] = static_cast<char>(ids[i]);
    }
    return text;
  }
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

}  // namespace switchyard::tokenizer
