#include "train/same_run_check.h"

#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace switchyard::train {

void check_same_run(dist::Communicator& comm, const std::map<std::string, std::string>& settings) {
  const std::vector<std::string> all = comm.all_gather_text(nlohmann::json(settings).dump());
  const auto first = nlohmann::json::parse(all[0]).get<std::map<std::string, std::string>>();
  std::vector<std::string> differences;
  for (size_t r = 1; r < all.size(); ++r) {
    const auto other = nlohmann::json::parse(all[r]).get<std::map<std::string, std::string>>();
    for (const auto& [key, value] : other) {
      auto it = first.find(key);
      const std::string base = it == first.end() ? "(none)" : it->second;
      if (base != value) {
        differences.push_back(fmt::format("rank {} has {} = {} where rank 0 has {}", r, key, value, base));
      }
    }
  }
  require(differences.empty(), "the {} ranks were not started with the same run: {}", all.size(),
          fmt::join(differences, "; "));
}

}  // namespace switchyard::train
