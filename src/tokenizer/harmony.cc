#include "tokenizer/harmony.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "core/error.h"
#include "tokenizer/harmony_schema.h"

namespace switchyard::tokenizer {

std::string_view role_name(HarmonyRole role) {
  switch (role) {
    case HarmonyRole::kSystem: return "system";
    case HarmonyRole::kDeveloper: return "developer";
    case HarmonyRole::kUser: return "user";
    case HarmonyRole::kAssistant: return "assistant";
    case HarmonyRole::kTool: return "tool";
  }
  return "?";
}

std::string_view channel_name(HarmonyChannel channel) {
  switch (channel) {
    case HarmonyChannel::kAnalysis: return "analysis";
    case HarmonyChannel::kCommentary: return "commentary";
    case HarmonyChannel::kFinal: return "final";
  }
  return "?";
}

std::optional<HarmonyChannel> channel_from_name(std::string_view name) {
  for (const HarmonyChannel c : {HarmonyChannel::kAnalysis, HarmonyChannel::kCommentary, HarmonyChannel::kFinal}) {
    if (channel_name(c) == name) return c;
  }
  return std::nullopt;
}

std::string_view effort_name(ReasoningEffort effort) {
  switch (effort) {
    case ReasoningEffort::kLow: return "low";
    case ReasoningEffort::kMedium: return "medium";
    case ReasoningEffort::kHigh: return "high";
  }
  return "?";
}

namespace {

// Rendered output as pieces, so that text and token ids come from one rendering: a special token,
// or ordinary text that is never read as special tokens.
struct Piece {
  bool special;
  std::string text;
};
using Pieces = std::vector<Piece>;

void add_special(Pieces& out, std::string_view token) { out.push_back({true, std::string(token)}); }
void add_text(Pieces& out, std::string_view text) {
  if (!text.empty()) out.push_back({false, std::string(text)});
}

// The lines of `text` as Rust's str::lines gives them (the renderer's): split at '\n', a trailing
// '\r' dropped, no empty last line after a final '\n'.
std::vector<std::string> lines_of(std::string_view text) {
  std::vector<std::string> lines;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    if (line.ends_with('\r')) line.remove_suffix(1);
    lines.emplace_back(line);
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return lines;
}

std::string function_declaration(const HarmonyFunction& tool) {
  if (!tool.parameters) return "type " + tool.name + " = () => any;\n";
  require(tool.parameters->is_object(), "harmony: the parameters of function '{}' must be a JSON schema object, not {}",
          tool.name, tool.parameters->dump());
  return "type " + tool.name + " = (_: " + schema_to_typescript(*tool.parameters, "") + ") => any;\n";
}

std::string namespace_section(const HarmonyToolNamespace& ns) {
  std::vector<std::string> lines = {"## " + ns.name + "\n"};
  if (ns.description) {
    // Above declarations the description is a comment; a namespace without any is plain text.
    for (const std::string& line : lines_of(*ns.description)) lines.push_back(ns.tools.empty() ? line : "// " + line);
  }
  if (!ns.tools.empty()) {
    lines.push_back("namespace " + ns.name + " {\n");
    for (const HarmonyFunction& tool : ns.tools) {
      for (const std::string& line : lines_of(tool.description)) lines.push_back("// " + line);
      lines.push_back(function_declaration(tool));
    }
    lines.push_back("} // namespace " + ns.name);
  }
  return fmt::to_string(fmt::join(lines, "\n"));
}

// "# Tools" and a section per namespace, in name order as OpenAI's renderer (a sorted map) has it.
std::string tools_section(const std::vector<HarmonyToolNamespace>& namespaces) {
  std::map<std::string, const HarmonyToolNamespace*> by_name;
  for (const HarmonyToolNamespace& ns : namespaces) {
    require(by_name.emplace(ns.name, &ns).second, "harmony: tool namespace '{}' is declared twice", ns.name);
  }
  std::vector<std::string> sections = {"# Tools"};
  for (const auto& [name, ns] : by_name) sections.push_back(namespace_section(*ns));
  return fmt::to_string(fmt::join(sections, "\n\n"));
}

bool has_functions(const HarmonyConversation& conversation) {
  if (!conversation.developer) return false;
  return std::any_of(conversation.developer->tools.begin(), conversation.developer->tools.end(),
                     [](const HarmonyToolNamespace& ns) { return ns.name == "functions" && !ns.tools.empty(); });
}

void add_header_and_content(Pieces& out, std::string_view author, std::string_view content) {
  add_special(out, kHarmonyStart);
  add_text(out, author);
  add_special(out, kHarmonyMessage);
  add_text(out, content);
  add_special(out, kHarmonyEnd);
}

void add_message(Pieces& out, const HarmonyMessage& m) {
  add_special(out, kHarmonyStart);
  if (m.role == HarmonyRole::kTool) {
    require(!m.tool_name.empty(), "harmony: a tool message needs the tool's name (such as functions.get_weather)");
    add_text(out, m.tool_name);
  } else {
    add_text(out, role_name(m.role));
  }
  // "all" is the default audience, which the renderer leaves unsaid.
  if (m.recipient && *m.recipient != "all") add_text(out, " to=" + *m.recipient);
  if (m.channel) {
    add_special(out, kHarmonyChannel);
    add_text(out, channel_name(*m.channel));
  }
  if (m.content_type) {
    add_text(out, " ");
    if (m.content_type->starts_with(kHarmonyConstrain)) {
      add_special(out, kHarmonyConstrain);
      add_text(out, std::string_view(*m.content_type).substr(kHarmonyConstrain.size()));
    } else {
      add_text(out, *m.content_type);
    }
  }
  add_special(out, kHarmonyMessage);
  add_text(out, m.text);
  // An assistant message to a recipient is a tool call, which the model ends with <|call|>.
  add_special(out, m.role == HarmonyRole::kAssistant && m.recipient ? kHarmonyCall : kHarmonyEnd);
}

bool is_assistant_on(const HarmonyMessage& m, HarmonyChannel channel) {
  return m.role == HarmonyRole::kAssistant && m.channel == channel;
}

Pieces render_pieces(const HarmonyConversation& conversation, const HarmonyRenderOptions& options,
                     bool for_completion) {
  Pieces out;
  if (conversation.system) {
    add_header_and_content(out, "system", render_system_content(*conversation.system, has_functions(conversation)));
  }
  if (conversation.developer) {
    add_header_and_content(out, "developer", render_developer_content(*conversation.developer));
  }
  const std::vector<HarmonyMessage>& messages = conversation.messages;
  // Index of the last assistant final message: analysis before it belongs to a finished turn.
  size_t last_final = 0;
  bool any_final = false;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (is_assistant_on(messages[i], HarmonyChannel::kFinal)) {
      last_final = i;
      any_final = true;
    }
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const bool finished_analysis =
        any_final && i < last_final && is_assistant_on(messages[i], HarmonyChannel::kAnalysis);
    if (options.drop_finished_analysis && finished_analysis) continue;
    add_message(out, messages[i]);
  }
  if (for_completion) {
    add_special(out, kHarmonyStart);
    add_text(out, "assistant");
  }
  return out;
}

std::string pieces_text(const Pieces& pieces) {
  std::string text;
  for (const Piece& piece : pieces) text += piece.text;
  return text;
}

int32_t special_id(const Tokenizer& tokenizer, const std::string& token) {
  const std::vector<int32_t> ids = tokenizer.encode_with_special_tokens(token);
  require(ids.size() == 1, "harmony: tokenizer '{}' has no special token {} (the harmony format needs o200k)",
          tokenizer.name(), token);
  return ids[0];
}

}  // namespace

HarmonyTokenIds harmony_token_ids(const Tokenizer& tokenizer) {
  const auto id = [&](std::string_view token) { return special_id(tokenizer, std::string(token)); };
  return {id(kHarmonyStart),     id(kHarmonyEnd),    id(kHarmonyMessage), id(kHarmonyChannel),
          id(kHarmonyConstrain), id(kHarmonyReturn), id(kHarmonyCall)};
}

std::string render_system_content(const SystemOptions& system, bool conversation_has_functions) {
  std::vector<std::string> sections;
  std::vector<std::string> top;
  if (system.model_identity) top.push_back(*system.model_identity);
  if (system.knowledge_cutoff) top.push_back("Knowledge cutoff: " + *system.knowledge_cutoff);
  if (system.current_date) top.push_back("Current date: " + *system.current_date);
  if (!top.empty()) sections.push_back(fmt::to_string(fmt::join(top, "\n")));
  if (system.reasoning_effort) sections.push_back("Reasoning: " + std::string(effort_name(*system.reasoning_effort)));
  if (!system.tools.empty()) sections.push_back(tools_section(system.tools));
  if (!system.valid_channels.empty()) {
    std::vector<std::string> names;
    for (const HarmonyChannel c : system.valid_channels) names.emplace_back(channel_name(c));
    std::string channels = "# Valid channels: " + fmt::to_string(fmt::join(names, ", ")) + ".";
    if (system.channel_required) channels += " Channel must be included for every message.";
    if (conversation_has_functions) channels += "\nCalls to these tools must go to the commentary channel: 'functions'.";
    sections.push_back(channels);
  }
  return fmt::to_string(fmt::join(sections, "\n\n"));
}

std::string render_developer_content(const DeveloperOptions& developer) {
  std::vector<std::string> sections;
  if (developer.instructions) {
    sections.push_back("# Instructions");
    sections.push_back(*developer.instructions);
  }
  if (!developer.tools.empty()) sections.push_back(tools_section(developer.tools));
  return fmt::to_string(fmt::join(sections, "\n\n"));
}

std::string render_harmony(const HarmonyConversation& conversation, const HarmonyRenderOptions& options) {
  return pieces_text(render_pieces(conversation, options, false));
}

std::string render_harmony_for_completion(const HarmonyConversation& conversation,
                                          const HarmonyRenderOptions& options) {
  return pieces_text(render_pieces(conversation, options, true));
}

std::vector<int32_t> render_harmony_tokens_for_completion(const HarmonyConversation& conversation,
                                                          const Tokenizer& tokenizer,
                                                          const HarmonyRenderOptions& options) {
  const Pieces pieces = render_pieces(conversation, options, true);
  std::map<std::string, int32_t> special_ids;
  std::vector<int32_t> ids;
  // Ordinary text between two special tokens is encoded as one run, as the rendered text would be.
  std::string run;
  const auto flush = [&] {
    const std::vector<int32_t> run_ids = tokenizer.encode(run);
    ids.insert(ids.end(), run_ids.begin(), run_ids.end());
    run.clear();
  };
  for (const Piece& piece : pieces) {
    if (!piece.special) {
      run += piece.text;
      continue;
    }
    flush();
    auto it = special_ids.find(piece.text);
    if (it == special_ids.end()) it = special_ids.emplace(piece.text, special_id(tokenizer, piece.text)).first;
    ids.push_back(it->second);
  }
  flush();
  return ids;
}

}  // namespace switchyard::tokenizer
