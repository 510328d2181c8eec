#include "model/safetensors_set.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/untrusted_json.h"

namespace switchyard::model {
namespace fs = std::filesystem;

namespace {

// An index lists each tensor on a line of about a hundred bytes, a few megabytes for the largest
// checkpoints; a file far bigger is no index and is refused before it is read into memory.
constexpr uintmax_t kMaxIndexBytes = 100'000'000;

// A plain file name in the directory: no separator, no "." or "..", and no NUL, which the system
// would take as the end of the name and so open a different file.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('\0') == std::string::npos &&
         fs::path(name).filename().string() == name;
}

std::map<std::string, std::string> read_weight_map(const fs::path& index_path) {
  const std::string where = index_path.string();
  std::ifstream in(index_path, std::ios::binary);
  require(in.good(), "{}: cannot open for reading", where);
  std::error_code ec;
  const uintmax_t size = fs::file_size(index_path, ec);
  require(!ec, "{}: cannot read its size: {}", where, ec.message());
  require(size <= kMaxIndexBytes, "{}: {} bytes, more than an index can be (the limit is {})", where,
          size, kMaxIndexBytes);
  std::stringstream text;
  text << in.rdbuf();
  require(!in.bad(), "{}: read error", where);
  return parse_weight_map(text.view(), where);
}

}  // namespace

std::map<std::string, std::string> parse_weight_map(std::string_view json_text, const std::string& where) {
  nlohmann::json index;
  try {
    index = parse_untrusted_json(json_text, where);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", where, e.what());
  }
  require(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
          "{}: expected an object with a 'weight_map' object (tensor name -> shard file)", where);
  std::map<std::string, std::string> map;
  for (const auto& [name, file] : index["weight_map"].items()) {
    require(file.is_string(), "{}: weight_map['{}'] is a JSON {} (expected a file name)", where, name,
            file.type_name());
    const std::string& shard = file.get_ref<const std::string&>();
    // Quoted as JSON: a NUL in the name would end the message for whoever reads it with what().
    require(is_plain_file_name(shard),
            "{}: weight_map['{}'] names {}, which is not a plain file name in the directory", where,
            name, file.dump());
    map.emplace(name, shard);  // each name once: parse_untrusted_json refuses a repeated key
  }
  require(!map.empty(), "{}: weight_map is empty", where);
  return map;
}

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
