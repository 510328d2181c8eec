// Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON header
// mapping tensor names to {dtype, shape, data_offsets} (plus an optional "__metadata__" map of
// strings), then the raw little-endian tensor bytes.
//
// The reader validates everything before use and throws Error naming the file, the tensor and the
// problem: truncated file, header length beyond the file or over 100 MB, malformed JSON, unknown
// dtype, a shape whose size disagrees with its byte range, ranges outside the data or overlapping.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace switchyard::model {

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  size_t begin = 0;  // byte offset of the tensor's data within the data section
  size_t end = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps the file into memory read-only (tensor data is not copied: pages are read from the file
  // as they are touched) and validates its header. The file must not shrink while it is open.
  static SafetensorsFile open(const std::string& path);
  // Validates bytes already in memory; `source` names them in errors. The fuzz target calls this.
  static SafetensorsFile parse(std::vector<uint8_t> bytes, const std::string& source);

  const std::string& source() const { return source_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // Null when there is no tensor of that name.
  const TensorInfo* find(const std::string& name) const;
  // The tensor converted to fp32 (from F32, F16 or BF16); throws Error if missing or another dtype.
  std::vector<float> read_f32(const std::string& name) const;
  // The tensor's raw bytes; throws Error if missing.
  std::span<const uint8_t> raw(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  // Validates `bytes` (kept alive by `storage`) and builds the file over them.
  static SafetensorsFile parse_bytes(std::shared_ptr<const void> storage,
                                     std::span<const uint8_t> bytes, const std::string& source);

  std::string source_;
  std::shared_ptr<const void> storage_;  // owns bytes_: a read-only mapping or a vector
  std::span<const uint8_t> bytes_;
  size_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
 public:
  // Copies the data. Throws Error on a duplicate name.
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data);
  void add_f32(const std::string& name, std::vector<int64_t> shape, const float* data) {
    add(name, DType::kF32, std::move(shape), data);
  }
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Writes atomically (to a temporary file, then renamed); throws Error naming the path on failure.
  void write(const std::string& path) const;
  // Writes `path` itself, without a temporary or fsync: for a file staged by FileSetCommit, which
  // syncs and installs the whole set.
  void write_in_place(const std::string& path) const;

 private:
  // Writes the file `file`; errors name `path`, the file the caller means.
  void write_file(const std::string& file, const std::string& path, bool sync) const;

  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace switchyard::model
