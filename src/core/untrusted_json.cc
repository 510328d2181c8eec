#include "core/untrusted_json.h"

#include <unordered_set>
#include <vector>

#include "core/error.h"

namespace switchyard {

nlohmann::json parse_untrusted_json(std::string_view text, const std::string& where, int max_depth) {
  using nlohmann::json;
  // The keys seen so far in each object still open, innermost last. A key always belongs to the
  // innermost open object, whatever arrays lie between it and the next object out.
  std::vector<std::unordered_set<std::string>> open_objects;
  const json::parser_callback_t check = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        // `depth` counts the containers around this one.
        require(depth < max_depth, "{}: JSON nests deeper than {} levels", where, max_depth);
        if (event == json::parse_event_t::object_start) open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open_objects.back().insert(parsed.get_ref<const std::string&>()).second) {
          fail("{}: the key {} appears twice in one JSON object", where, parsed.dump());
        }
        break;
      default:
        break;
    }
    return true;
  };
  return json::parse(text, check);
}

}  // namespace switchyard
