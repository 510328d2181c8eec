#include "serve/prepared_request.h"

#include <fmt/format.h>

#include "core/error.h"
#include "serve/api_error.h"

namespace switchyard::serve {
namespace {

tokenizer::HarmonyConversation conversation_of(const ApiRequest& request) {
  tokenizer::HarmonyConversation conversation;
  conversation.system = tokenizer::SystemOptions{};
  conversation.system->reasoning_effort = request.reasoning_effort;
  // What the chat API calls the system message is harmony's developer message (the instructions);
  // harmony's own system message holds the model's identity and the reasoning effort.
  std::string instructions;
  for (const ChatMessage& m : request.messages) {
    switch (m.role) {
      case ChatRole::kSystem:
      case ChatRole::kDeveloper:
        instructions += (instructions.empty() ? "" : "\n\n") + m.content;
        break;
      case ChatRole::kUser:
        conversation.messages.push_back({.role = tokenizer::HarmonyRole::kUser, .text = m.content});
        break;
      case ChatRole::kAssistant:
        conversation.messages.push_back({.role = tokenizer::HarmonyRole::kAssistant,
                                         .channel = tokenizer::HarmonyChannel::kFinal,
                                         .text = m.content});
        break;
    }
  }
  if (!instructions.empty()) conversation.developer = tokenizer::DeveloperOptions{.instructions = instructions};
  return conversation;
}

std::vector<int32_t> completion_prompt(const ApiRequest& request, const ServedModel& model) {
  if (!request.prompt_text) return request.prompt_tokens;
  std::vector<int32_t> prompt = model.encode(*request.prompt_text);
  if (prompt.empty()) {
    // An empty prompt starts from the end-of-text token, as GPT-2 was trained to.
    if (model.end_of_text() < 0) {
      throw invalid_request("Invalid 'prompt': it is empty, and this model's tokenizer has no end-of-text token to "
                            "start from.",
                            "prompt", "invalid_value");
    }
    prompt.push_back(model.end_of_text());
  }
  return prompt;
}

}  // namespace

PreparedRequest prepare_request(const ApiRequest& request, const ServedModel& model, uint64_t seed) {
  PreparedRequest prepared;
  GenerationRequest& g = prepared.generation;
  const bool chat = request.endpoint == Endpoint::kChatCompletions;
  if (chat) {
    if (!model.harmony()) throw invalid_request(model.no_chat_format_reason(), "model", "no_chat_format");
    g.prompt = model.render_chat(conversation_of(request));
    g.stop_tokens = {model.harmony()->return_, model.harmony()->call};
    prepared.harmony = true;
  } else {
    g.prompt = completion_prompt(request, model);
    if (model.end_of_text() >= 0) g.stop_tokens = {model.end_of_text()};
  }

  const int context = model.config().max_seq_len;
  const int prompt_size = static_cast<int>(g.prompt.size());
  const char* prompt_param = chat ? "messages" : "prompt";
  if (prompt_size >= context) {
    throw invalid_request(fmt::format("This model's maximum context length is {} tokens. However, your {} resulted "
                                      "in {} tokens, which leaves no room for the completion.",
                                      context, chat ? "messages" : "prompt", prompt_size),
                          prompt_param, "context_length_exceeded");
  }
  if (request.max_tokens && prompt_size + *request.max_tokens > context) {
    throw invalid_request(fmt::format("This model's maximum context length is {} tokens. However, you requested {} "
                                      "tokens ({} in the {}, {} in the completion). Please reduce the length of the "
                                      "{} or the completion.",
                                      context, prompt_size + *request.max_tokens, prompt_size, prompt_param,
                                      *request.max_tokens, prompt_param),
                          prompt_param, "context_length_exceeded");
  }
  // Without max_tokens: 16 for completions (OpenAI's default), capped by the room left; chat takes
  // all of the room.
  const int room = context - prompt_size;
  g.max_tokens = request.max_tokens.value_or(chat ? room : std::min(16, room));
  g.sampling = request.sampling;
  g.seed = request.seed ? static_cast<uint64_t>(*request.seed) : seed;
  g.top_logprobs = request.top_logprobs;
  return prepared;
}

}  // namespace switchyard::serve
