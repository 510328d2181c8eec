// The weights of a Hugging Face checkpoint directory as one set of tensors: either a single
// model.safetensors, or the shards (model-00001-of-0000N.safetensors, ...) that
// model.safetensors.index.json maps every tensor name to. Shards are memory-mapped
// (SafetensorsFile::open), so opening a checkpoint of many gigabytes copies nothing.
//
// Errors name the directory, the file and the problem: an index that is not JSON or lacks its
// weight_map, a shard named with a path (only plain file names inside the directory are taken), a
// missing shard, a tensor the index places in a shard that does not hold it, a tensor stored in
// two files.
#pragma once

#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/safetensors.h"

namespace switchyard::model {

// The weight_map of a model.safetensors.index.json whose text is `json_text`: tensor name -> shard
// file name. Throws Error naming `where` (the index's path) when the text is not JSON, names a key
// twice, lacks a non-empty 'weight_map' object, or maps a tensor to anything but a plain file name
// in the directory. SafetensorsSet::open reads indexes with it; it takes the text rather than a
// path so that tests and fuzzers can feed it any bytes.
std::map<std::string, std::string> parse_weight_map(std::string_view json_text, const std::string& where);

class SafetensorsSet {
 public:
  static constexpr const char* kSingleFile = "model.safetensors";
  static constexpr const char* kIndexFile = "model.safetensors.index.json";

  // Opens the index's shards when the index exists, else the single file.
  static SafetensorsSet open(const std::string& directory);

  // The directory, for messages.
  const std::string& source() const { return directory_; }
  // Every tensor of every file, in file order.
  std::vector<const TensorInfo*> tensors() const;
  // Null when no file holds a tensor of that name.
  const TensorInfo* find(const std::string& name) const;
  // The file holding `name`; throws Error naming the tensor when none does.
  const SafetensorsFile& file_of(const std::string& name) const;
  std::vector<float> read_f32(const std::string& name) const { return file_of(name).read_f32(name); }
  std::span<const uint8_t> raw(const std::string& name) const { return file_of(name).raw(name); }

 private:
  std::string directory_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> file_index_;  // tensor name -> position in files_
};

}  // namespace switchyard::model
