// switchyard generate: prompt in (prefilled in one pass), streamed text out, over a paged KV cache.
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backend/simulated_span.h"
#include "cli/commands.h"
#include "cli/model_source.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/generator.h"
#include "model/sampler.h"

namespace switchyard::cli {

namespace {

struct GenerateFlags {
  ModelSource source;
  std::string prompt;
  std::string prompt_ids;  // "1,2,3": token ids instead of text (no tokenizer needed)
  int max_new_tokens = 100;
  model::SamplingOptions sampling;
  bool json = false;
};

// A preset starts from random weights: say so before its noise is taken for a broken model.
void warn_untrained(const ModelSource& source) {
  std::fprintf(stderr,
               "warning: '%s' is a preset with random, untrained weights, so the text is noise; train one "
               "(switchyard train --model %s --data TEXT --out DIR) and pass --model DIR, or pass any "
               "checkpoint directory\n",
               source.model.c_str(), source.model.c_str());
}

// "1,2,3" as token ids, each inside the vocabulary.
std::vector<int32_t> parse_token_ids(const std::string& text, int vocab_size) {
  std::vector<int32_t> ids;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    require(used == item.size() && !item.empty(),
            "--prompt-ids: '{}' is not a token id (expected comma-separated integers such as 1,2,3)", item);
    require(id >= 0 && id < vocab_size, "--prompt-ids: token id {} is outside the model's vocabulary [0, {})",
            id, vocab_size);
    ids.push_back(static_cast<int32_t>(id));
    at = comma + 1;
  }
  return ids;
}

// The prompt's tokens: --prompt-ids as given, or --prompt encoded (an empty prompt starts from
// the end-of-text token).
std::vector<int32_t> prompt_tokens(const GenerateFlags& flags, const model::Model& m,
                                   const tokenizer::Tokenizer* tok) {
  if (!tok) return parse_token_ids(flags.prompt_ids, m.config().vocab_size);
  std::vector<int32_t> prompt = tok->encode(flags.prompt);
  if (prompt.empty()) {
    require(tok->end_of_text() >= 0, "empty prompt: the {} tokenizer has no end-of-text token to start from",
            tok->name());
    prompt.push_back(tok->end_of_text());
  }
  return prompt;
}

void run_generate(const GenerateFlags& flags) {
  model::validate(flags.sampling);
  const bool by_ids = !flags.prompt_ids.empty();
  require(!by_ids || flags.prompt.empty(), "pass --prompt or --prompt-ids, not both");
  ModelSource source = flags.source;
  source.inference_only = true;
  OpenedModel opened = open_model(source, /*load_tokenizer=*/!by_ids);
  if (!opened.from_checkpoint) warn_untrained(flags.source);
  model::Model& m = *opened.model;
  const tokenizer::Tokenizer* tok = opened.tokenizer.get();

  const std::vector<int32_t> prompt = prompt_tokens(flags, m, tok);
  require(static_cast<int>(prompt.size()) < m.config().max_seq_len,
          "prompt is {} tokens, but the model's context is {} (it needs room for at least one new token)",
          prompt.size(), m.config().max_seq_len);

  std::fwrite(flags.prompt.data(), 1, flags.prompt.size(), stdout);
  std::fflush(stdout);
  Rng rng(flags.source.seed);
  model::Generator generator(m, 1, static_cast<int>(prompt.size()) + flags.max_new_tokens);
  // The model's own end token where its config names one (gpt-oss: <|return|>), else the
  // tokenizer's.
  const int32_t end_of_text = m.config().eos_token_id >= 0 ? m.config().eos_token_id
                              : tok                        ? tok->end_of_text()
                                                           : -1;
  model::GenerateOptions options{.max_new_tokens = flags.max_new_tokens,
                                 .sampling = flags.sampling,
                                 .stop_tokens = {end_of_text}};
  std::optional<backend::SimulatedClock> sim_clock;
  const model::GenerateResult result =
      model::generate(generator, prompt, options, rng, [&](int32_t token) {
        // Simulator devices time the generated tokens, not the prompt: the clock starts at the
        // first sampled token.
        if (!sim_clock) sim_clock.emplace(m.backend());
        if (token == end_of_text) return;
        const std::string text = tok ? tok->decode(std::span<const int32_t>(&token, 1))
                                     : fmt::format("{} ", token);
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      });
  std::printf("\n");
  std::fflush(stdout);  // the text ends before the statistics on stderr begin
  const int generated = static_cast<int>(result.tokens.size());
  const double gen_s = result.generate_seconds;
  if (result.hit_context) {
    std::fprintf(stderr, "stopped at the model's context of %d tokens\n", m.config().max_seq_len);
  }
  std::fprintf(stderr, "prompt: %zu tokens in %.2f s (one pass); generated %d tokens in %.2f s (%.1f tokens/s)\n",
               prompt.size(), result.prompt_seconds, generated, gen_s,
               generated > 0 && gen_s > 0 ? generated / gen_s : 0.0);
  nlohmann::json json{{"prompt_tokens", prompt.size()},
                      {"generated_tokens", generated},
                      {"prompt_ids", prompt},
                      {"generated_ids", result.tokens},
                      {"tokens_per_s", gen_s > 0 ? generated / gen_s : 0.0}};
  // The last sampled token is not run, so generated - 1 decode steps ran after the prompt.
  if (sim_clock) {
    if (std::optional<backend::SimulatedSpan> sim = sim_clock->lap(std::max(generated - 1, 0))) {
      const backend::SimulationReport report = *backend::simulation_report(m.backend());
      std::fprintf(stderr, "%s\n", backend::describe_span(*sim, report, "generation").c_str());
      json["simulated_ms"] = sim->ms;
      json["simulated_tokens_per_s_per_core"] = sim->tokens_per_s_per_core;
    }
  }
  if (flags.json) std::printf("%s\n", json.dump().c_str());
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto flags = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "sample text from a model, streamed as it is produced");
  add_model_flags(cmd, flags->source);
  cmd->add_option("--prompt", flags->prompt, "text to continue");
  cmd->add_option("--prompt-ids", flags->prompt_ids,
                  "token ids to continue, comma-separated (no tokenizer is loaded; the output is ids)");
  cmd->add_option("--max-new-tokens,-n", flags->max_new_tokens, "tokens to generate")->check(CLI::Range(1, 1 << 24))->capture_default_str();
  cmd->add_option("--temperature", flags->sampling.temperature, "softmax temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", flags->sampling.top_k, "sample among the k most likely tokens (0: all)")->capture_default_str();
  cmd->add_option("--top-p", flags->sampling.top_p, "nucleus sampling threshold")->capture_default_str();
  cmd->add_flag("--json", flags->json, "print one JSON object as the last line");
  cmd->callback([flags] { run_generate(*flags); });
}

}  // namespace switchyard::cli
