#include "model/safetensors_set.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace switchyard::model {
namespace fs = std::filesystem;

namespace {

// The index's weight_map: tensor name -> shard file name, checked for shape and for names that
// would leave the directory.
std::map<std::string, std::string> read_weight_map(const fs::path& index_path) {
  std::ifstream in(index_path);
  require(in.good(), "{}: cannot open for reading", index_path.string());
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", index_path.string(), e.what());
  }
  require(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
          "{}: expected an object with a 'weight_map' object (tensor name -> shard file)",
          index_path.string());
  std::map<std::string, std::string> map;
  for (const auto& [name, file] : index["weight_map"].items()) {
    require(file.is_string(), "{}: weight_map['{}'] is a JSON {} (expected a file name)",
            index_path.string(), name, file.type_name());
    const std::string shard = file.get<std::string>();
    require(!shard.empty() && fs::path(shard).filename().string() == shard && shard != "." &&
                shard != "..",
            "{}: weight_map['{}'] names '{}', which is not a plain file name in the directory",
            index_path.string(), name, shard);
    map[name] = shard;
  }
  require(!map.empty(), "{}: weight_map is empty", index_path.string());
  return map;
}

}  // namespace

SafetensorsSet SafetensorsSet::open(const std::string& directory) {
  SafetensorsSet set;
  set.directory_ = directory;
  const fs::path dir(directory);
  std::error_code ec;
  std::map<std::string, std::string> weight_map;
  if (!fs::exists(dir / kIndexFile, ec)) {
    set.files_.push_back(SafetensorsFile::open((dir / kSingleFile).string()));
  } else {
    weight_map = read_weight_map(dir / kIndexFile);
    std::map<std::string, size_t> shard_index;
    for (const auto& [name, shard] : weight_map) {
      if (shard_index.count(shard)) continue;
      shard_index[shard] = set.files_.size();
      set.files_.push_back(SafetensorsFile::open((dir / shard).string()));
    }
    for (const auto& [name, shard] : weight_map) {
      require(set.files_[shard_index[shard]].find(name) != nullptr,
              "{}: the index places tensor '{}' in {}, which does not hold it",
              (dir / kIndexFile).string(), name, shard);
    }
  }
  for (size_t i = 0; i < set.files_.size(); ++i) {
    for (const TensorInfo& t : set.files_[i].tensors()) {
      // A tensor the index does not list would be loaded or ignored by chance: refuse it.
      require(weight_map.empty() || weight_map.count(t.name) != 0,
              "{}: {} holds tensor '{}', which the index does not list",
              (dir / kIndexFile).string(), set.files_[i].source(), t.name);
      const auto [it, added] = set.file_index_.emplace(t.name, i);
      require(added, "{}: tensor '{}' is stored in both {} and {}", directory, t.name,
              set.files_[it->second].source(), set.files_[i].source());
    }
  }
  return set;
}

std::vector<const TensorInfo*> SafetensorsSet::tensors() const {
  std::vector<const TensorInfo*> all;
  for (const SafetensorsFile& f : files_) {
    for (const TensorInfo& t : f.tensors()) all.push_back(&t);
  }
  return all;
}

const TensorInfo* SafetensorsSet::find(const std::string& name) const {
  const auto it = file_index_.find(name);
  return it == file_index_.end() ? nullptr : files_[it->second].find(name);
}

const SafetensorsFile& SafetensorsSet::file_of(const std::string& name) const {
  const auto it = file_index_.find(name);
  require(it != file_index_.end(), "{}: no tensor named '{}'", directory_, name);
  return files_[it->second];
}

}  // namespace switchyard::model
