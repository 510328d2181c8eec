#include "serve/futex_hash.h"

#include <sys/prctl.h>

#include <algorithm>
#include <bit>

namespace switchyard::serve {
namespace {

// <linux/prctl.h> names these from Linux 6.17's headers on; older headers lack them.
#ifndef PR_FUTEX_HASH
constexpr int PR_FUTEX_HASH = 78;
constexpr int PR_FUTEX_HASH_SET_SLOTS = 1;
constexpr int PR_FUTEX_HASH_GET_SLOTS = 2;
#endif

}  // namespace

int widen_futex_hash(int threads) {
  const unsigned wanted = std::bit_ceil(std::max(1024u, 16u * static_cast<unsigned>(std::max(threads, 1))));
  const int now = prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_GET_SLOTS, 0, 0, 0);
  if (now < 0) return 0;  // a kernel without private hashes (before Linux 6.17)
  if (now > 0 && static_cast<unsigned>(now) >= wanted) return now;
  // A failure (memory, a hash made immutable) leaves the hash as it was: slower wakes, not errors.
  prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_SET_SLOTS, static_cast<unsigned long>(wanted), 0, 0);
  return prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_GET_SLOTS, 0, 0, 0);
}

}  // namespace switchyard::serve
