// libFuzzer target: SafetensorsFile::parse must accept or reject any bytes with switchyard::Error,
// never crash, leak or read out of bounds. Accepted files are also read back through every accessor,
// since those trust what parse() validated.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto file = switchyard::model::SafetensorsFile::parse(
        std::vector<uint8_t>(data, data + size), "fuzz-input");
    for (const auto& tensor : file.tensors()) {
      const auto raw = file.raw(tensor.name);
      if (raw.size() != tensor.end - tensor.begin) __builtin_trap();
      if (static_cast<uint64_t>(tensor.numel()) * switchyard::dtype_bytes(tensor.dtype) != raw.size()) {
        __builtin_trap();
      }
      if (tensor.dtype == switchyard::DType::kF32 || tensor.dtype == switchyard::DType::kF16 ||
          tensor.dtype == switchyard::DType::kBF16) {
        if (file.read_f32(tensor.name).size() != static_cast<size_t>(tensor.numel())) __builtin_trap();
      }
    }
  } catch (const switchyard::Error&) {
    // Rejected with a message: the expected outcome for most inputs.
  }
  return 0;
}
