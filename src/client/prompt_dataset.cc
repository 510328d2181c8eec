#include "client/prompt_dataset.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace switchyard::client {

namespace {

std::vector<std::string> prompts_from_json(const std::string& text, const std::string& name, int count) {
  const nlohmann::json list = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  require(list.is_array(), "{} starts with '[' but is not valid JSON: expected a list of prompt strings", name);
  require(!list.empty(), "{} is an empty list: expected at least one prompt string", name);
  for (size_t i = 0; i < list.size(); ++i) {
    require(list[i].is_string(), "{}: item {} is {}, not a string: expected a list of prompt strings", name, i,
            list[i].type_name());
  }
  std::vector<std::string> prompts;
  for (int i = 0; i < count; ++i) prompts.push_back(list[static_cast<size_t>(i) % list.size()].get<std::string>());
  return prompts;
}

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  std::string word;
  while (in >> word) words.push_back(word);
  return words;
}

}  // namespace

std::vector<std::string> prompts_from_text(const std::string& text, const std::string& name, int count,
                                           int prompt_tokens) {
  require(count >= 1, "the number of prompts must be at least 1, not {}", count);
  const auto first =
      std::find_if(text.begin(), text.end(), [](char c) { return !std::isspace(static_cast<unsigned char>(c)); });
  require(first != text.end(), "{} holds no text: expected text or a JSON list of prompt strings", name);
  if (*first == '[') return prompts_from_json(text, name, count);

  require(prompt_tokens >= 1, "the prompt length must be at least 1 token, not {}", prompt_tokens);
  const std::vector<std::string> words = split_words(text);
  const size_t target_chars = static_cast<size_t>(prompt_tokens) * kCharactersPerToken;
  std::vector<std::string> prompts;
  size_t next = 0;  // the word the next prompt starts with
  for (int i = 0; i < count; ++i) {
    std::string prompt;
    // Whole words until the estimate is reached; a word longer than the whole target still makes a
    // prompt of one word, and a text shorter than one prompt is read round again.
    while (prompt.size() < target_chars) {
      if (!prompt.empty()) prompt.push_back(' ');
      prompt += words[next];
      next = (next + 1) % words.size();
    }
    prompts.push_back(std::move(prompt));
  }
  return prompts;
}

std::vector<std::string> load_prompts(const std::string& path, int count, int prompt_tokens) {
  std::ifstream in(path, std::ios::binary);
  require(static_cast<bool>(in), "cannot read the dataset {}: no such file, or not readable", path);
  std::ostringstream text;
  text << in.rdbuf();
  require(!in.bad(), "cannot read the dataset {}", path);
  return prompts_from_text(text.str(), path, count, prompt_tokens);
}

long estimated_tokens(const std::string& prompt) {
  return std::max<long>(1, static_cast<long>((prompt.size() + kCharactersPerToken / 2) / kCharactersPerToken));
}

}  // namespace switchyard::client
