// The model behind the API, as requests see it: its name, context and vocabulary, its tokenizer,
// the token that ends a completion, and whether it has a chat format (gpt-oss's harmony, which
// needs the o200k tokenizer's special tokens).
//
// Handlers on many threads share it. The tokenizers' encode() keeps scratch buffers and caches, so
// encoding goes through encode() and render_chat() here, one at a time; decode() is safe to call
// from any thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "model/model_config.h"
#include "serve/api_request.h"
#include "tokenizer/harmony.h"
#include "tokenizer/tokenizer.h"

namespace switchyard::serve {

class ServedModel {
 public:
  // The tokenizer must outlive this.
  ServedModel(std::string name, const model::ModelConfig& config, const tokenizer::Tokenizer& tokenizer);

  const std::string& name() const { return name_; }
  const model::ModelConfig& config() const { return config_; }
  // For decoding only (see above).
  const tokenizer::Tokenizer& tokenizer() const { return tokenizer_; }
  ServedModelLimits limits() const;

  // Text as tokens (special-token strings as plain text), and a conversation as the harmony tokens
  // that end with "<|start|>assistant" (needs harmony()).
  std::vector<int32_t> encode(std::string_view text) const;
  std::vector<int32_t> render_chat(const tokenizer::HarmonyConversation& conversation) const;

  // The harmony tokens when the model chats in harmony; nullopt when it has no chat format.
  const std::optional<tokenizer::HarmonyTokenIds>& harmony() const { return harmony_; }
  // Why /v1/chat/completions cannot serve this model (empty when it can).
  std::string no_chat_format_reason() const;
  // The model's own end token where its config names one (gpt-oss: <|return|>), else the
  // tokenizer's end of text; -1 when there is none.
  int32_t end_of_text() const;

 private:
  std::string name_;
  model::ModelConfig config_;
  const tokenizer::Tokenizer& tokenizer_;
  std::optional<tokenizer::HarmonyTokenIds> harmony_;
  mutable std::mutex encode_mutex_;
};

}  // namespace switchyard::serve
