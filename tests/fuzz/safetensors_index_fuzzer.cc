// libFuzzer target: parse_weight_map (model.safetensors.index.json) must accept or reject any bytes
// with switchyard::Error, never crash, hang or throw anything else. What it accepts is held to its
// promises, since SafetensorsSet::open joins each shard name to the checkpoint directory: a
// non-empty map whose shard names are plain file names.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "model/safetensors_set.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto weight_map = switchyard::model::parse_weight_map(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz-input");
    if (weight_map.empty()) __builtin_trap();
    for (const auto& [tensor, shard] : weight_map) {
      if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
          shard.find('\0') != std::string::npos) {
        __builtin_trap();
      }
    }
  } catch (const switchyard::Error&) {
    // Rejected with a message: the expected outcome for most inputs.
  }
  return 0;
}
