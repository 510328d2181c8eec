// Reading what a gpt-oss model writes in the harmony format (harmony.h), from the token after
// "<|start|>assistant": the first message's header (such as "<|channel|>analysis"), <|message|>,
// its content, and <|end|>; further messages each start again with "<|start|>assistant". The
// model stops at <|return|> (its turn is over) or <|call|> (it calls a tool: the last message has
// a recipient); nothing may follow either.
//
// HarmonyStreamParser takes one token at a time and reports the new content text and the channel
// it belongs to, so that a server can stream the final channel as the model writes it. Content is
// reported in whole UTF-8 characters: bytes of a character split across tokens wait for the rest;
// bytes that cannot become valid UTF-8 are reported as U+FFFD (as OpenAI's parser does).
//
// Malformed sequences throw Error naming the problem: text before any header, a header without
// <|message|>, an unknown channel, stray text in a header, a control token inside content, a token
// after the stop token, an id outside the vocabulary.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tokenizer/harmony.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8_stream.h"

namespace switchyard::tokenizer {

// Why generation ended: not yet (or the tokens ran out), <|return|>, or <|call|>.
enum class HarmonyStop { kNone, kReturn, kCall };

// What one token changed.
struct HarmonyDelta {
  // The channel of the message the token belongs to, once its header is complete.
  std::optional<HarmonyChannel> channel;
  // Content text that became complete with this token (often one token's text; may be empty).
  std::string text;
  // The token ended a message; it is messages().back().
  bool message_done = false;
  // The token was <|return|> or <|call|>: generation is over.
  HarmonyStop stop = HarmonyStop::kNone;
};

class HarmonyStreamParser {
 public:
  // Reads the tokens the model writes after "<|start|>assistant". Throws Error if `tokenizer`
  // lacks the harmony tokens. The tokenizer must outlive the parser.
  explicit HarmonyStreamParser(const Tokenizer& tokenizer);
  // The same with the ids already looked up (harmony_token_ids): it then only decodes, which is
  // safe while other threads use the tokenizer.
  HarmonyStreamParser(const Tokenizer& tokenizer, const HarmonyTokenIds& ids);

  HarmonyDelta process(int32_t token);
  // The tokens ended without a stop token (a length limit): a message whose content had begun is
  // closed with the text so far. Throws Error when they ended inside a header.
  void finish();

  bool done() const { return state_ == State::kDone; }
  HarmonyStop stop() const { return stop_; }
  // The messages ended so far.
  const std::vector<HarmonyMessage>& messages() const { return messages_; }
  // The message whose content is being read (header fields and text so far), or nullptr.
  const HarmonyMessage* current() const { return state_ == State::kContent ? &current_ : nullptr; }

 private:
  enum class State { kHeader, kExpectStart, kContent, kDone };

  void read_header(int32_t token);
  HarmonyDelta read_content(int32_t token);
  void parse_header();
  HarmonyDelta end_message(HarmonyStop stop);

  const Tokenizer& tokenizer_;
  HarmonyTokenIds ids_;
  State state_ = State::kHeader;
  HarmonyStop stop_ = HarmonyStop::kNone;
  bool first_message_ = true;  // its role, assistant, was written before the model started
  std::string header_;         // the header so far, special tokens as their strings
  Utf8Stream text_;            // content bytes not yet reported (an unfinished UTF-8 character)
  HarmonyMessage current_;
  std::vector<HarmonyMessage> messages_;
};

struct HarmonyCompletion {
  std::vector<HarmonyMessage> messages;
  HarmonyStop stop = HarmonyStop::kNone;
};

// All of a completion at once (the stop token included or not).
HarmonyCompletion parse_harmony_completion(std::span<const int32_t> tokens, const Tokenizer& tokenizer);

}  // namespace switchyard::tokenizer
