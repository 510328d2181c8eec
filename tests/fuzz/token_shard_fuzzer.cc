// libFuzzer target: parse_shard must accept or reject any bytes with switchyard::Error, never crash
// or read out of bounds; an accepted shard must hold exactly the tokens its size implies (2 bytes
// each in version 1, 4 in version 2).
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "data/token_shard.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto tokens =
        switchyard::data::parse_shard(std::span<const uint8_t>(data, size), "fuzz-input");
    // Accepted, so the 1024-byte header is there; its second int32 is the version.
    const size_t width = data[4] == switchyard::data::kShardVersion16 ? 2 : 4;
    if (1024 + width * tokens.size() != size) __builtin_trap();
  } catch (const switchyard::Error&) {
    // Rejected with a message: the expected outcome for most inputs.
  }
  return 0;
}
