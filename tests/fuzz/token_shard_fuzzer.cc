// libFuzzer target: parse_shard must accept or reject any bytes with switchyard::Error, never crash
// or read out of bounds; an accepted shard must hold exactly the tokens its size implies.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "data/token_shard.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto tokens =
        switchyard::data::parse_shard(std::span<const uint8_t>(data, size), "fuzz-input");
    if (1024 + 2 * tokens.size() != size) __builtin_trap();
  } catch (const switchyard::Error&) {
    // Rejected with a message: the expected outcome for most inputs.
  }
  return 0;
}
