#include "serve/served_model.h"

#include <fmt/format.h>

#include "core/error.h"

namespace switchyard::serve {

ServedModel::ServedModel(std::string name, const model::ModelConfig& config, const tokenizer::Tokenizer& tokenizer)
    : name_(std::move(name)), config_(config), tokenizer_(tokenizer) {
  if (config.is_gpt_oss()) {
    try {
      harmony_ = tokenizer::harmony_token_ids(tokenizer);
    } catch (const Error&) {
      // A gpt-oss model with a tokenizer that lacks the harmony tokens (the byte tokenizer of
      // small presets): completions only.
    }
  }
}

std::vector<int32_t> ServedModel::encode(std::string_view text) const {
  std::lock_guard lock(encode_mutex_);
  return tokenizer_.encode(text);
}

std::vector<int32_t> ServedModel::render_chat(const tokenizer::HarmonyConversation& conversation) const {
  std::lock_guard lock(encode_mutex_);
  return tokenizer::render_harmony_tokens_for_completion(conversation, tokenizer_);
}

ServedModelLimits ServedModel::limits() const {
  return {.name = name_, .context_length = config_.max_seq_len, .vocab_size = config_.vocab_size};
}

std::string ServedModel::no_chat_format_reason() const {
  if (harmony_) return "";
  if (config_.is_gpt_oss()) {
    return fmt::format("The model `{}` has no chat format: gpt-oss chats in the harmony format, which needs the o200k "
                       "tokenizer, but this server runs it with the {} tokenizer. Use /v1/completions.",
                       name_, tokenizer_.name());
  }
  return fmt::format("The model `{}` has no chat format ({} models have none; chat needs a gpt-oss model). Use "
                     "/v1/completions.",
                     name_, config_.family);
}

int32_t ServedModel::end_of_text() const {
  return config_.eos_token_id >= 0 ? config_.eos_token_id : tokenizer_.end_of_text();
}

}  // namespace switchyard::serve
