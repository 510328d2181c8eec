#include "serve/reply_text.h"

#include <span>

#include "serve/stop_matcher.h"
#include "tokenizer/harmony_parser.h"
#include "tokenizer/utf8_stream.h"

namespace switchyard::serve {
namespace {

class PlainReply : public ReplyText {
 public:
  PlainReply(const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stops)
      : tokenizer_(tokenizer), stops_(std::move(stops)) {}

  ReplyDelta add(int32_t token) override {
    const StopMatcher::Result r = stops_.push(utf8_.push(tokenizer_.decode(std::span(&token, 1))));
    return {.content = r.text, .reasoning = "", .stopped = r.stopped};
  }

  ReplyDelta finish() override {
    const StopMatcher::Result r = stops_.push(utf8_.flush());
    return {.content = r.stopped ? r.text : r.text + stops_.flush(), .reasoning = "", .stopped = r.stopped};
  }

 private:
  const tokenizer::Tokenizer& tokenizer_;
  tokenizer::Utf8Stream utf8_;
  StopMatcher stops_;
};

class HarmonyReply : public ReplyText {
 public:
  HarmonyReply(const tokenizer::Tokenizer& tokenizer, const tokenizer::HarmonyTokenIds& ids,
               std::vector<std::string> stops)
      : parser_(tokenizer, ids), stops_(std::move(stops)) {}

  ReplyDelta add(int32_t token) override { return route(parser_.process(token)); }

  ReplyDelta finish() override {
    ReplyDelta delta;
    if (!parser_.done()) parser_.finish();  // a length limit cut the reply short
    delta.content = stops_.flush();
    return delta;
  }

 private:
  // The parser reports whole UTF-8 characters already.
  ReplyDelta route(const tokenizer::HarmonyDelta& harmony) {
    ReplyDelta delta;
    if (!harmony.channel || harmony.text.empty()) return delta;
    if (*harmony.channel == tokenizer::HarmonyChannel::kFinal) {
      const StopMatcher::Result r = stops_.push(harmony.text);
      delta.content = r.text;
      delta.stopped = r.stopped;
    } else {
      delta.reasoning = harmony.text;
    }
    return delta;
  }

  tokenizer::HarmonyStreamParser parser_;
  StopMatcher stops_;
};

}  // namespace

std::unique_ptr<ReplyText> make_plain_reply(const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stops) {
  return std::make_unique<PlainReply>(tokenizer, std::move(stops));
}

std::unique_ptr<ReplyText> make_harmony_reply(const tokenizer::Tokenizer& tokenizer,
                                              const tokenizer::HarmonyTokenIds& ids, std::vector<std::string> stops) {
  return std::make_unique<HarmonyReply>(tokenizer, ids, std::move(stops));
}

}  // namespace switchyard::serve
