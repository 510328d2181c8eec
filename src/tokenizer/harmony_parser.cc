#include "tokenizer/harmony_parser.h"

#include <algorithm>
#include <string_view>

#include "core/error.h"
#include "tokenizer/utf8_stream.h"

namespace switchyard::tokenizer {
namespace {

std::vector<std::string> split_whitespace(std::string_view text) {
  std::vector<std::string> parts;
  size_t i = 0;
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  while (i < text.size()) {
    while (i < text.size() && space(text[i])) ++i;
    const size_t begin = i;
    while (i < text.size() && !space(text[i])) ++i;
    if (i > begin) parts.emplace_back(text.substr(begin, i - begin));
  }
  return parts;
}

std::optional<HarmonyRole> role_from_name(std::string_view name) {
  for (const HarmonyRole r : {HarmonyRole::kSystem, HarmonyRole::kDeveloper, HarmonyRole::kUser,
                              HarmonyRole::kAssistant, HarmonyRole::kTool}) {
    if (role_name(r) == name) return r;
  }
  return std::nullopt;
}

std::string without_to(const std::string& part) { return part.starts_with("to=") ? part.substr(3) : part; }

}  // namespace

HarmonyStreamParser::HarmonyStreamParser(const Tokenizer& tokenizer)
    : HarmonyStreamParser(tokenizer, harmony_token_ids(tokenizer)) {}

HarmonyStreamParser::HarmonyStreamParser(const Tokenizer& tokenizer, const HarmonyTokenIds& ids)
    : tokenizer_(tokenizer), ids_(ids) {
  current_.role = HarmonyRole::kAssistant;
}

HarmonyDelta HarmonyStreamParser::process(int32_t token) {
  require(token >= 0 && token < tokenizer_.vocab_size(), "harmony: token id {} is outside the vocabulary (0..{})",
          token, tokenizer_.vocab_size() - 1);
  switch (state_) {
    case State::kHeader:
      read_header(token);
      return {};
    case State::kExpectStart:
      require(token == ids_.start,
              "harmony: expected <|start|> to begin the next message after <|end|>, got {} (token {}): "
              "content before any header",
              tokenizer_.decode(std::span(&token, 1)), token);
      state_ = State::kHeader;
      current_ = HarmonyMessage{};
      header_.clear();
      return {};
    case State::kContent:
      return read_content(token);
    case State::kDone:
      fail("harmony: token {} after the stop token {}: generation should have stopped", token,
           stop_ == HarmonyStop::kCall ? kHarmonyCall : kHarmonyReturn);
  }
  return {};
}

void HarmonyStreamParser::read_header(int32_t token) {
  if (token == ids_.message) {
    parse_header();
    state_ = State::kContent;
    return;
  }
  if (token == ids_.channel || token == ids_.constrain) {
    header_ += token == ids_.channel ? kHarmonyChannel : kHarmonyConstrain;
    return;
  }
  if (token == ids_.start || token == ids_.end || token == ids_.return_ || token == ids_.call) {
    fail("harmony: message header '{}' ended by {} before <|message|>: <|message|> missing", header_,
         tokenizer_.decode(std::span(&token, 1)));
  }
  header_ += tokenizer_.decode(std::span(&token, 1));
}

// A header is "[role] [to=recipient]<|channel|>channel [to=recipient] [content type]": the
// recipient may stand in the role part or after the channel (the spec allows both), and the
// content type, if any, comes last. The role of the first message, assistant, was written before
// the model started, so there it is absent.
void HarmonyStreamParser::parse_header() {
  std::string header = header_;
  const size_t marker = header.find(kHarmonyChannel);
  if (marker != std::string::npos) {
    const size_t begin = marker + kHarmonyChannel.size();
    const size_t end = std::min(header.find_first_of(" \t\n\r<", begin), header.size());
    const std::string name = header.substr(begin, end - begin);
    require(!name.empty(), "harmony: header '{}' has <|channel|> without a channel name", header_);
    const std::optional<HarmonyChannel> channel = channel_from_name(name);
    require(channel.has_value(), "harmony: unknown channel '{}' in header '{}' (expected analysis, commentary or final)",
            name, header_);
    current_.channel = channel;
    header.erase(marker, end - marker);
    require(header.find(kHarmonyChannel) == std::string::npos, "harmony: header '{}' names two channels", header_);
  }
  // "to=x<|constrain|>json" is two parts.
  std::string spaced;
  for (size_t from = 0; from < header.size();) {
    const size_t at = header.find(kHarmonyConstrain, from);
    spaced.append(header, from, at == std::string::npos ? std::string::npos : at - from);
    if (at == std::string::npos) break;
    spaced.push_back(' ');
    spaced.append(kHarmonyConstrain);
    from = at + kHarmonyConstrain.size();
  }
  std::vector<std::string> parts = split_whitespace(spaced);

  if (first_message_) {
    if (!parts.empty() && parts.front() == "assistant") parts.erase(parts.begin());
  } else {
    require(!parts.empty(), "harmony: message header '{}' has no role", header_);
    const std::optional<HarmonyRole> role = role_from_name(parts.front());
    if (role) {
      current_.role = *role;
    } else {
      // Only a tool's answer is headed by the tool's name, and it is addressed to someone.
      require(parts.size() > 1, "harmony: unknown role '{}' in header '{}'", parts.front(), header_);
      current_.role = HarmonyRole::kTool;
      current_.tool_name = parts.front();
    }
    parts.erase(parts.begin());
  }

  if (!parts.empty()) {
    const size_t count = parts.size();
    const std::string last = parts.back();
    parts.pop_back();
    if (last.starts_with("to=")) {
      current_.recipient = last.substr(3);
    } else if (count == 1 && !last.starts_with(kHarmonyConstrain)) {
      current_.recipient = last;  // a lone word is the recipient, as in OpenAI's parser
    } else {
      current_.content_type = last;
      if (!parts.empty()) {
        current_.recipient = without_to(parts.back());
        parts.pop_back();
      }
    }
  }
  require(parts.empty(), "harmony: unexpected text '{}' in message header '{}'", parts.empty() ? "" : parts.front(),
          header_);
  first_message_ = false;
}

HarmonyDelta HarmonyStreamParser::read_content(int32_t token) {
  if (token == ids_.end) return end_message(HarmonyStop::kNone);
  if (token == ids_.return_) return end_message(HarmonyStop::kReturn);
  if (token == ids_.call) return end_message(HarmonyStop::kCall);
  if (token == ids_.start || token == ids_.message || token == ids_.channel || token == ids_.constrain) {
    fail("harmony: {} inside the content of a message (expected <|end|>, <|return|> or <|call|> first)",
         tokenizer_.decode(std::span(&token, 1)));
  }
  HarmonyDelta delta;
  delta.channel = current_.channel;
  delta.text = text_.push(tokenizer_.decode(std::span(&token, 1)));
  current_.text += delta.text;
  return delta;
}

HarmonyDelta HarmonyStreamParser::end_message(HarmonyStop stop) {
  HarmonyDelta delta;
  delta.channel = current_.channel;
  delta.text = text_.flush();
  current_.text += delta.text;
  delta.message_done = true;
  delta.stop = stop;
  messages_.push_back(current_);
  stop_ = stop;
  state_ = stop == HarmonyStop::kNone ? State::kExpectStart : State::kDone;
  return delta;
}

void HarmonyStreamParser::finish() {
  require(state_ != State::kHeader, "harmony: the tokens ended inside a message header ('{}') before <|message|>",
          header_);
  if (state_ == State::kContent) end_message(HarmonyStop::kNone);
}

HarmonyCompletion parse_harmony_completion(std::span<const int32_t> tokens, const Tokenizer& tokenizer) {
  HarmonyStreamParser parser(tokenizer);
  for (const int32_t token : tokens) parser.process(token);
  parser.finish();
  return {parser.messages(), parser.stop()};
}

}  // namespace switchyard::tokenizer
