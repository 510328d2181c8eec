// The text a client sees of a reply, built one generated token at a time: bytes decoded into whole
// UTF-8 characters (never half a character), stop strings held back and cut (StopMatcher), and for
// gpt-oss chat the harmony channels read apart (the final channel is the message's content, the
// others its reasoning).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/harmony.h"
#include "tokenizer/tokenizer.h"

namespace switchyard::serve {

// What one token adds to the reply.
struct ReplyDelta {
  std::string content;    // completions: the text; chat: the message's content
  std::string reasoning;  // gpt-oss chat: the analysis (and commentary) channels
  bool stopped = false;   // a stop string matched: the reply ends with this delta
};

class ReplyText {
 public:
  virtual ~ReplyText() = default;
  // The next generated token. Throws Error when the tokens break the reply's format (harmony).
  virtual ReplyDelta add(int32_t token) = 0;
  // The tokens ended without a stop string: whatever was held back. Throws Error as add() does.
  virtual ReplyDelta finish() = 0;
};

// Plain text (completions, and chat formats without channels). The tokenizer must outlive it.
std::unique_ptr<ReplyText> make_plain_reply(const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stops);
// A gpt-oss reply in the harmony format, read from the token after "<|start|>assistant"; stop
// strings apply to the content. `ids` are the tokenizer's harmony tokens; the tokenizer must
// outlive the reply. Both kinds only decode, so they may share a tokenizer across threads.
std::unique_ptr<ReplyText> make_harmony_reply(const tokenizer::Tokenizer& tokenizer,
                                              const tokenizer::HarmonyTokenIds& ids, std::vector<std::string> stops);

}  // namespace switchyard::serve
