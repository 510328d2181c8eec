// switchyard eval: mean next-token cross-entropy and perplexity of a model on a shard or text file.
#include <cstdio>
#include <optional>
#include <memory>

#include <nlohmann/json.hpp>

#include "backend/simulated_span.h"
#include "cli/commands.h"
#include "cli/model_source.h"
#include "core/error.h"
#include "data/token_shard.h"
#include "train/evaluate.h"

namespace switchyard::cli {

namespace {

struct EvalFlags {
  ModelSource source;
  std::string data;
  int seq = 0;
  size_t max_windows = 0;
  int batch = 8;
  bool json = false;
};

std::vector<uint32_t> load_eval_tokens(const std::string& path, const tokenizer::Tokenizer& tokenizer) {
  if (path.ends_with(".bin")) return data::read_shard(path);
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) fail("cannot open evaluation data {}", path);
  std::string text;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, n);
  std::fclose(file);
  std::vector<int32_t> ids = tokenizer.encode(text);
  return std::vector<uint32_t>(ids.begin(), ids.end());
}

void run_eval(const EvalFlags& flags) {
  ModelSource source = flags.source;
  source.inference_only = true;
  OpenedModel opened = open_model(source, /*load_tokenizer=*/!flags.data.ends_with(".bin"));
  const model::ModelConfig& config = opened.model->config();
  int T = flags.seq > 0 ? flags.seq : config.max_seq_len;
  require(T <= config.max_seq_len, "--seq {} exceeds the model's context of {} tokens", T, config.max_seq_len);
  std::vector<uint32_t> tokens = load_eval_tokens(flags.data, opened.tokenizer ? *opened.tokenizer : *tokenizer::make_byte_tokenizer());
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] >= static_cast<uint32_t>(config.vocab_size)) {
      fail("{}: token {} at index {} is outside the model's vocabulary of {}", flags.data, tokens[i], i,
           config.vocab_size);
    }
  }
  backend::SimulatedClock sim_clock(*opened.backend);
  train::EvalResult result = train::evaluate(*opened.model, tokens, T, flags.max_windows, flags.batch);
  std::printf("loss %.6f  perplexity %.4f  (%zu windows of %d tokens, %zu tokens predicted)\n", result.loss,
              result.perplexity, result.windows, T, result.tokens);
  nlohmann::json json{{"loss", result.loss},       {"perplexity", result.perplexity}, {"tokens", result.tokens},
                      {"windows", result.windows}, {"seq", T},                        {"device", opened.backend->name()}};
  const double tokens_processed = static_cast<double>(result.windows) * T;
  if (std::optional<backend::SimulatedSpan> sim = sim_clock.lap(tokens_processed)) {
    const backend::SimulationReport report = *backend::simulation_report(*opened.backend);
    std::printf("%s\n", backend::describe_span(*sim, report, "evaluation").c_str());
    json["simulated_ms"] = sim->ms;
    json["simulated_tokens_per_s_per_core"] = sim->tokens_per_s_per_core;
    json["simulated_tokens_per_s_per_chip"] = sim->tokens_per_s_per_chip;
  }
  if (flags.json) std::printf("%s\n", json.dump().c_str());
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto flags = std::make_shared<EvalFlags>();
  CLI::App* cmd = app.add_subcommand("eval", "mean next-token cross-entropy and perplexity");
  add_model_flags(cmd, flags->source);
  cmd->add_option("--data", flags->data, ".bin token shard or UTF-8 text file")->required();
  cmd->add_option("--seq", flags->seq, "window length T (default: the model's context)")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--max-windows", flags->max_windows, "evaluate at most this many windows (0: all)");
  cmd->add_option("--batch", flags->batch, "windows per forward pass")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  cmd->add_flag("--json", flags->json, "print one JSON object as the last line");
  cmd->callback([flags] { run_eval(*flags); });
}

}  // namespace switchyard::cli
