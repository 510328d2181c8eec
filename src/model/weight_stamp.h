// Stamps for a model's weights (ops::Linear::weight_stamp): a number that names one state of the
// values, taken anew whenever they change, so that a backend may keep a rearranged copy of a
// weight and know when it is stale. Stamps come from one counter for the whole process, so a stamp
// is never reused, not even by another model at the same address.
#pragma once

#include <atomic>
#include <cstdint>

namespace switchyard::model {

inline uint64_t new_weight_stamp() {
  static std::atomic<uint64_t> last{0};
  return last.fetch_add(1, std::memory_order_relaxed) + 1;
}

}  // namespace switchyard::model
