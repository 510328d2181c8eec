// The server's futex hash (serve/futex_hash.h): widened for many waiting threads where the kernel
// gives processes a private hash, and never narrowed again.
#include "serve/futex_hash.h"

#include <gtest/gtest.h>

namespace switchyard::serve {
namespace {

TEST(FutexHash, IsWidenedForManyWaitingThreadsAndNeverNarrowed) {
  const int buckets = widen_futex_hash(300);
  if (buckets == 0) GTEST_SKIP() << "this kernel keeps no private futex hash (before Linux 6.17)";
  EXPECT_GE(buckets, 8192);  // 16 per thread, rounded up to a power of two
  EXPECT_EQ(buckets & (buckets - 1), 0);
  EXPECT_EQ(widen_futex_hash(10), buckets);
  EXPECT_EQ(widen_futex_hash(1), buckets);
}

}  // namespace
}  // namespace switchyard::serve
