// Poisson arrival times of the serving benchmark: reproducible from a seed, at the mean rate asked
// for, with exponentially distributed gaps.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "client/arrival_schedule.h"
#include "expect_error.h"

namespace switchyard::client {
namespace {

TEST(ArrivalSchedule, SameSeedSameTimesOtherSeedOtherTimes) {
  const std::vector<double> a = poisson_arrival_times(100, 4.0, 42);
  EXPECT_EQ(a, poisson_arrival_times(100, 4.0, 42));
  EXPECT_NE(a, poisson_arrival_times(100, 4.0, 43));
  EXPECT_EQ(a.front(), 0.0);
  for (size_t i = 1; i < a.size(); ++i) EXPECT_GT(a[i], a[i - 1]);
}

TEST(ArrivalSchedule, MeanRateAndExponentialGaps) {
  const int n = 20001;
  const double rate = 5.0;
  const std::vector<double> t = poisson_arrival_times(n, rate, 7);
  // 20,000 gaps of mean 0.2 s: the mean's standard error is 0.2 / sqrt(20000) = 0.0014 s (0.7%).
  const double mean_gap = t.back() / (n - 1);
  EXPECT_NEAR(mean_gap, 1 / rate, 0.03 / rate);
  // Exponential gaps: P(gap > mean) = e^-1 = 0.368 and P(gap > 3 mean) = e^-3 = 0.0498; the
  // standard errors of these fractions over 20,000 gaps are 0.0034 and 0.0015.
  int above_mean = 0, above_three = 0;
  for (size_t i = 1; i < t.size(); ++i) {
    const double gap = t[i] - t[i - 1];
    above_mean += gap > 1 / rate;
    above_three += gap > 3 / rate;
  }
  EXPECT_NEAR(above_mean / double(n - 1), std::exp(-1.0), 0.015);
  EXPECT_NEAR(above_three / double(n - 1), std::exp(-3.0), 0.008);
  // Another rate from the same seed scales the same gaps.
  const std::vector<double> faster = poisson_arrival_times(n, 2 * rate, 7);
  EXPECT_NEAR(faster.back(), t.back() / 2, 1e-9 * t.back());
}

TEST(ArrivalSchedule, InfiniteRateSendsEverythingAtOnce) {
  EXPECT_EQ(poisson_arrival_times(5, INFINITY, 1), std::vector<double>(5, 0.0));
}

TEST(ArrivalSchedule, RateMustBePositive) {
  expect_error([] { poisson_arrival_times(5, 0, 1); }, {"request rate", "positive"});
  expect_error([] { poisson_arrival_times(5, -2, 1); }, {"request rate"});
}

}  // namespace
}  // namespace switchyard::client
