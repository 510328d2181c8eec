// switchyard generate: prompt in, streamed text out, with a KV cache.
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

#include "backend/simulated_span.h"
#include "cli/commands.h"
#include "cli/model_source.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/sampler.h"

namespace switchyard::cli {

namespace {

struct GenerateFlags {
  ModelSource source;
  std::string prompt;
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

void run_generate(const GenerateFlags& flags) {
  model::validate(flags.sampling);
  OpenedModel opened = open_model(flags.source, /*load_tokenizer=*/true);
  if (!opened.from_checkpoint) warn_untrained(flags.source);
  model::Gpt& gpt = *opened.model;
  const tokenizer::Tokenizer& tok = *opened.tokenizer;
  const int context = gpt.config().max_seq_len;

  std::vector<int32_t> prompt = tok.encode(flags.prompt);
  if (prompt.empty()) {
    require(tok.end_of_text() >= 0, "empty prompt: the {} tokenizer has no end-of-text token to start from",
            tok.name());
    prompt.push_back(tok.end_of_text());
  }
  require(static_cast<int>(prompt.size()) < context,
          "prompt is {} tokens, but the model's context is {} (it needs room for at least one new token)",
          prompt.size(), context);

  std::fwrite(flags.prompt.data(), 1, flags.prompt.size(), stdout);
  std::fflush(stdout);
  Rng rng(flags.source.seed);
  gpt.start_decoding(1);
  auto t0 = std::chrono::steady_clock::now();
  std::vector<float> logits;
  for (size_t i = 0; i < prompt.size(); ++i) logits = gpt.decode(&prompt[i], static_cast<int>(i));
  auto t_prompt = std::chrono::steady_clock::now();
  backend::SimulatedClock sim_clock(gpt.backend());  // simulator devices: time the generated tokens

  int pos = static_cast<int>(prompt.size());
  int generated = 0;
  bool hit_context = false;
  while (generated < flags.max_new_tokens) {
    int32_t next = model::sample_token(logits, flags.sampling, rng);
    ++generated;
    if (next == tok.end_of_text()) break;
    std::string text = tok.decode(std::span<const int32_t>(&next, 1));
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    if (generated == flags.max_new_tokens) break;
    if (pos >= context) {
      hit_context = true;
      break;
    }
    logits = gpt.decode(&next, pos++);
  }
  auto t_end = std::chrono::steady_clock::now();
  std::printf("\n");
  std::fflush(stdout);  // the text ends before the statistics on stderr begin
  double prompt_s = std::chrono::duration<double>(t_prompt - t0).count();
  double gen_s = std::chrono::duration<double>(t_end - t_prompt).count();
  if (hit_context) std::fprintf(stderr, "stopped at the model's context of %d tokens\n", context);
  std::fprintf(stderr, "prompt: %zu tokens in %.2f s; generated %d tokens in %.2f s (%.1f tokens/s)\n",
               prompt.size(), prompt_s, generated, gen_s, generated > 0 ? generated / gen_s : 0.0);
  nlohmann::json json{{"prompt_tokens", prompt.size()},
                      {"generated_tokens", generated},
                      {"tokens_per_s", gen_s > 0 ? generated / gen_s : 0.0}};
  // The last sampled token is not decoded, so generated - 1 decode steps ran after the prompt.
  if (std::optional<backend::SimulatedSpan> sim = sim_clock.lap(std::max(generated - 1, 0))) {
    const backend::SimulationReport report = *backend::simulation_report(gpt.backend());
    std::fprintf(stderr, "%s\n", backend::describe_span(*sim, report, "generation").c_str());
    json["simulated_ms"] = sim->ms;
    json["simulated_tokens_per_s_per_core"] = sim->tokens_per_s_per_core;
  }
  if (flags.json) std::printf("%s\n", json.dump().c_str());
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto flags = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "sample text from a model, streamed as it is produced");
  add_model_flags(cmd, flags->source);
  cmd->add_option("--prompt", flags->prompt, "text to continue");
  cmd->add_option("--max-new-tokens,-n", flags->max_new_tokens, "tokens to generate")->check(CLI::Range(1, 1 << 24))->capture_default_str();
  cmd->add_option("--temperature", flags->sampling.temperature, "softmax temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", flags->sampling.top_k, "sample among the k most likely tokens (0: all)")->capture_default_str();
  cmd->add_option("--top-p", flags->sampling.top_p, "nucleus sampling threshold")->capture_default_str();
  cmd->add_flag("--json", flags->json, "print one JSON object as the last line");
  cmd->callback([flags] { run_generate(*flags); });
}

}  // namespace switchyard::cli
