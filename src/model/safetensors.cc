#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <string_view>

#include "core/error.h"

namespace switchyard::model {
namespace {

using nlohmann::json;

// The reference implementation refuses headers above 100 MB; a real GPT-2 header is about 15 kB.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// A valid header nests three deep ({ name: { shape: [ ] } }); anything much deeper is garbage, and
// refusing it early keeps a hostile file from making the JSON parser build millions of levels.
constexpr int kMaxJsonDepth = 64;

uint64_t load_le_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Depth of [ and { nesting outside string literals, stopping early once it exceeds the limit.
bool nests_too_deep(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

// Number of elements of `shape`, or Error if a dimension is negative or the product overflows.
int64_t checked_numel(const std::vector<int64_t>& shape, const std::string& where) {
  for (int64_t d : shape) {
    require(d >= 0, "{}: negative dimension {} in shape {}", where, d, shape_string(shape));
  }
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  int64_t n = 1;
  for (int64_t d : shape) {
    require(n <= std::numeric_limits<int64_t>::max() / d,
            "{}: shape {} has more elements than fit in a 64-bit count", where, shape_string(shape));
    n *= d;
  }
  return n;
}

const json& member(const json& entry, const char* key, const std::string& where) {
  auto it = entry.find(key);
  require(it != entry.end(), "{}: entry has no '{}' (expected dtype, shape and data_offsets)", where,
          key);
  return *it;
}

TensorInfo parse_tensor(const std::string& name, const json& entry, size_t data_size,
                        const std::string& source) {
  const std::string where = fmt::format("safetensors {}: tensor '{}'", source, name);
  require(entry.is_object(), "{}: entry is a JSON {} (expected an object)", where, entry.type_name());

  TensorInfo info;
  info.name = name;

  const json& dtype = member(entry, "dtype", where);
  require(dtype.is_string(), "{}: 'dtype' is a JSON {} (expected a string)", where, dtype.type_name());
  const std::string dtype_text = dtype.get<std::string>();
  try {
    info.dtype = dtype_from_safetensors_name(dtype_text);
  } catch (const Error&) {
    fail("{}: unknown dtype '{}' (expected one of F32, F16, BF16, I32, U16, I64)", where, dtype_text);
  }

  const json& shape = member(entry, "shape", where);
  require(shape.is_array(), "{}: 'shape' is a JSON {} (expected an array of integers)", where,
          shape.type_name());
  for (const json& d : shape) {
    require(d.is_number_integer(), "{}: shape holds a JSON {} (expected integers)", where,
            d.type_name());
    if (d.is_number_unsigned()) {
      const uint64_t v = d.get<uint64_t>();
      require(v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
              "{}: dimension {} is too large", where, v);
      info.shape.push_back(static_cast<int64_t>(v));
    } else {
      info.shape.push_back(d.get<int64_t>());
    }
  }
  const int64_t numel = checked_numel(info.shape, where);

  const json& offsets = member(entry, "data_offsets", where);
  require(offsets.is_array() && offsets.size() == 2,
          "{}: 'data_offsets' is {} (expected an array of two integers [begin, end])", where,
          offsets.dump());
  for (const json& o : offsets) {
    require(o.is_number_unsigned(), "{}: 'data_offsets' is {} (expected two non-negative integers)",
            where, offsets.dump());
  }
  const uint64_t begin = offsets[0].get<uint64_t>();
  const uint64_t end = offsets[1].get<uint64_t>();
  require(begin <= end, "{}: data_offsets begin {} is after end {}", where, begin, end);
  require(end <= data_size, "{}: data_offsets [{}, {}] reach beyond the data section of {} bytes",
          where, begin, end, data_size);
  info.begin = static_cast<size_t>(begin);
  info.end = static_cast<size_t>(end);

  // Compare without forming numel * size, which could overflow for an absurd shape.
  const uint64_t element_bytes = static_cast<uint64_t>(dtype_bytes(info.dtype));
  const uint64_t span = end - begin;
  const bool matches = static_cast<uint64_t>(numel) <= span / element_bytes &&
                       static_cast<uint64_t>(numel) * element_bytes == span;
  if (!matches) {
    if (static_cast<uint64_t>(numel) <= std::numeric_limits<uint64_t>::max() / element_bytes) {
      fail("{}: shape {} of {} needs {} bytes but data_offsets [{}, {}] span {} bytes", where,
           shape_string(info.shape), dtype_text, static_cast<uint64_t>(numel) * element_bytes,
           begin, end, span);
    }
    fail("{}: shape {} of {} needs more than 2^64 bytes but data_offsets [{}, {}] span {} bytes",
         where, shape_string(info.shape), dtype_text, begin, end, span);
  }
  return info;
}

// Every byte of the data section belongs to at most one tensor.
void check_no_overlap(const std::vector<TensorInfo>& tensors, const std::string& source) {
  std::vector<const TensorInfo*> by_begin;
  for (const TensorInfo& t : tensors) {
    if (t.begin != t.end) by_begin.push_back(&t);  // empty ranges cannot overlap anything
  }
  std::sort(by_begin.begin(), by_begin.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  const TensorInfo* reach = nullptr;  // the tensor whose range ends furthest so far
  for (const TensorInfo* t : by_begin) {
    if (reach != nullptr) {
      require(t->begin >= reach->end,
              "safetensors {}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap in the data section",
              source, reach->name, reach->begin, reach->end, t->name, t->begin, t->end);
    }
    if (reach == nullptr || t->end > reach->end) reach = t;
  }
}

}  // namespace

int64_t TensorInfo::numel() const {
  // A zero dimension first: the other dimensions alone may overflow (parse() allows that when the
  // tensor is empty).
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

// A read-only private mapping of a whole file, unmapped when the last owner lets go.
std::shared_ptr<const void> map_file(const std::string& path, size_t& size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  require(fd >= 0, "safetensors {}: cannot open for reading: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("safetensors {}: cannot read its size: {}", path, std::strerror(err));
  }
  size = static_cast<size_t>(st.st_size);
  if (size == 0) {  // mmap refuses empty ranges; the header check reports the empty file
    ::close(fd);
    return std::make_shared<std::vector<uint8_t>>();
  }
  void* address = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file open
  require(address != MAP_FAILED, "safetensors {}: cannot map {} bytes: {}", path, size,
          std::strerror(err));
  return std::shared_ptr<const void>(address, [size](const void* p) {
    ::munmap(const_cast<void*>(p), size);
  });
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  std::error_code ec;
  require(std::filesystem::is_regular_file(path, ec), "safetensors {}: no such file", path);
  size_t size = 0;
  std::shared_ptr<const void> mapping = map_file(path, size);
  const auto* begin = size == 0 ? nullptr : static_cast<const uint8_t*>(mapping.get());
  return parse_bytes(std::move(mapping), std::span<const uint8_t>(begin, size), path);
}

SafetensorsFile SafetensorsFile::parse(std::vector<uint8_t> bytes, const std::string& source) {
  auto owned = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
  const std::span<const uint8_t> view(owned->data(), owned->size());
  return parse_bytes(std::move(owned), view, source);
}

SafetensorsFile SafetensorsFile::parse_bytes(std::shared_ptr<const void> storage,
                                             std::span<const uint8_t> bytes,
                                             const std::string& source) {
  require(bytes.size() >= 8,
          "safetensors {}: file is {} bytes, shorter than the 8-byte header length", source,
          bytes.size());
  const uint64_t header_len = load_le_u64(bytes.data());
  require(header_len <= kMaxHeaderBytes,
          "safetensors {}: header length {} is above the limit of {} bytes", source, header_len,
          kMaxHeaderBytes);
  require(header_len <= bytes.size() - 8,
          "safetensors {}: header length {} is larger than the {} bytes that follow it", source,
          header_len, bytes.size() - 8);

  const std::string_view header_text(reinterpret_cast<const char*>(bytes.data() + 8), header_len);
  require(!nests_too_deep(header_text), "safetensors {}: header JSON nests deeper than {} levels",
          source, kMaxJsonDepth);
  json header;
  try {
    header = json::parse(header_text);
  } catch (const json::exception& e) {
    fail("safetensors {}: header is not valid JSON: {}", source, e.what());
  }
  require(header.is_object(), "safetensors {}: header is a JSON {} (expected an object)", source,
          header.type_name());

  SafetensorsFile file;
  file.source_ = source;
  file.data_start_ = 8 + static_cast<size_t>(header_len);
  const size_t data_size = bytes.size() - file.data_start_;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      require(value.is_object(), "safetensors {}: __metadata__ is a JSON {} (expected an object of strings)",
              source, value.type_name());
      for (const auto& [meta_key, meta_value] : value.items()) {
        require(meta_value.is_string(),
                "safetensors {}: __metadata__ entry '{}' is a JSON {} (expected a string)", source,
                meta_key, meta_value.type_name());
        file.metadata_[meta_key] = meta_value.get<std::string>();
      }
      continue;
    }
    file.tensors_.push_back(parse_tensor(key, value, data_size, source));
  }
  check_no_overlap(file.tensors_, source);
  file.storage_ = std::move(storage);
  file.bytes_ = bytes;
  return file;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  for (const TensorInfo& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::span<const uint8_t> SafetensorsFile::raw(const std::string& name) const {
  const TensorInfo* t = find(name);
  require(t != nullptr, "safetensors {}: no tensor named '{}'", source_, name);
  return std::span<const uint8_t>(bytes_.data() + data_start_ + t->begin, t->end - t->begin);
}

std::vector<float> SafetensorsFile::read_f32(const std::string& name) const {
  const TensorInfo* t = find(name);
  require(t != nullptr, "safetensors {}: no tensor named '{}'", source_, name);
  const uint8_t* p = bytes_.data() + data_start_ + t->begin;
  const size_t n = static_cast<size_t>(t->numel());
  std::vector<float> out(n);
  switch (t->dtype) {
    case DType::kF32:
      for (size_t i = 0; i < n; ++i) {
        const uint32_t bits = static_cast<uint32_t>(p[4 * i]) | static_cast<uint32_t>(p[4 * i + 1]) << 8 |
                              static_cast<uint32_t>(p[4 * i + 2]) << 16 |
                              static_cast<uint32_t>(p[4 * i + 3]) << 24;
        std::memcpy(&out[i], &bits, sizeof(float));
      }
      break;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        out[i] = fp16_to_float(static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8)));
      }
      break;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        out[i] = bf16_to_float(static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8)));
      }
      break;
    default:
      fail("safetensors {}: tensor '{}' has dtype {} (expected F32, F16 or BF16 to read as fp32)",
           source_, name, safetensors_dtype_name(t->dtype));
  }
  return out;
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                            const void* data) {
  require(name != "__metadata__", "safetensors writer: '__metadata__' is reserved, not a tensor name");
  for (const Entry& e : entries_) {
    require(e.name != name, "safetensors writer: tensor '{}' added twice", name);
  }
  const int64_t numel = checked_numel(shape, fmt::format("safetensors writer: tensor '{}'", name));
  const size_t element_bytes = static_cast<size_t>(dtype_bytes(dtype));
  require(static_cast<uint64_t>(numel) <= std::numeric_limits<size_t>::max() / element_bytes,
          "safetensors writer: tensor '{}' with shape {} is too large", name, shape_string(shape));
  const size_t bytes = static_cast<size_t>(numel) * element_bytes;
  require(data != nullptr || bytes == 0, "safetensors writer: tensor '{}' has no data", name);
  Entry entry{name, dtype, std::move(shape), std::vector<uint8_t>(bytes)};
  if (bytes > 0) std::memcpy(entry.data.data(), data, bytes);
  entries_.push_back(std::move(entry));
}

void SafetensorsWriter::write(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  try {
    write_file(tmp, path, /*sync=*/true);
  } catch (const Error&) {
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int rename_errno = errno;
    ::unlink(tmp.c_str());
    fail("safetensors {}: cannot rename {} into place: {}", path, tmp, std::strerror(rename_errno));
  }
}

void SafetensorsWriter::write_in_place(const std::string& path) const { write_file(path, path, /*sync=*/false); }

void SafetensorsWriter::write_file(const std::string& file, const std::string& path, bool sync) const {
  std::vector<const Entry*> sorted;
  for (const Entry& e : entries_) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(),
            [](const Entry* a, const Entry* b) { return a->name < b->name; });

  // Same layout as the reference writer: compact JSON, fields in the order dtype, shape,
  // data_offsets, data packed in header order, header padded with spaces to a multiple of 8 so
  // that the data section starts 8-byte aligned.
  std::string header = "{";
  try {
    if (!metadata_.empty()) header += "\"__metadata__\":" + json(metadata_).dump();
    size_t offset = 0;
    for (const Entry* e : sorted) {
      if (header.size() > 1) header += ',';
      header += fmt::format("{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                            json(e->name).dump(), safetensors_dtype_name(e->dtype), fmt::join(e->shape, ","),
                            offset, offset + e->data.size());
      offset += e->data.size();
    }
  } catch (const json::exception& e) {
    fail("safetensors {}: cannot encode the header: {}", path, e.what());
  }
  header += '}';
  while (header.size() % 8 != 0) header += ' ';

  std::vector<uint8_t> prefix(8);
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));

  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  require(fd >= 0, "safetensors {}: cannot create {}: {}", path, file, std::strerror(errno));
  auto write_all = [&](const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t n = ::write(fd, p, size);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      p += n;
      size -= static_cast<size_t>(n);
    }
    return true;
  };
  bool ok = write_all(prefix.data(), prefix.size()) && write_all(header.data(), header.size());
  for (const Entry* e : sorted) ok = ok && write_all(e->data.data(), e->data.size());
  // write(): fsync before the rename so that a crash cannot leave a complete-looking but empty file.
  ok = ok && (!sync || ::fsync(fd) == 0);
  const int saved_errno = errno;
  ok = (::close(fd) == 0) && ok;
  if (!ok) fail("safetensors {}: write failed: {}", path, std::strerror(saved_errno));
}

}  // namespace switchyard::model
