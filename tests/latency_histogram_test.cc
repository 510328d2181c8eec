// The serving benchmark's latency histograms: bins on round edges that count every value once, and
// an SVG with one panel per measure whose bars, median and p99 marks are read back.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <regex>
#include <string>
#include <vector>

#include "client/latency_histogram_svg.h"

namespace switchyard::client {
namespace {

TEST(LatencyHistogram, RoundBinsCountEveryValueOnce) {
  // Ticks 0, 2, ..., 10 (a step of 2), five bins per tick: 25 bins of 0.4 ms.
  std::vector<double> values;
  for (int v = 0; v <= 10; ++v) values.push_back(v);
  const Histogram h = make_histogram(values);
  ASSERT_EQ(h.counts.size(), 25u);
  ASSERT_EQ(h.edges.size(), 26u);
  EXPECT_EQ(h.edges.front(), 0);
  EXPECT_NEAR(h.edges.back(), 10, 1e-9);
  for (size_t i = 1; i < h.edges.size(); ++i) EXPECT_NEAR(h.edges[i] - h.edges[i - 1], 0.4, 1e-9);
  EXPECT_EQ(std::accumulate(h.counts.begin(), h.counts.end(), 0), 11);
  // 2 lies on the edge between bins 4 and 5 and counts in bin 5; 1 in bin 2 ([0.8, 1.2)); 10, the
  // largest, in the last bin.
  EXPECT_EQ(h.counts[5], 1);
  EXPECT_EQ(h.counts[4], 0);
  EXPECT_EQ(h.counts[2], 1);
  EXPECT_EQ(h.counts[24], 1);
}

TEST(LatencyHistogram, SameValuesFillOneBin) {
  const Histogram h = make_histogram({5, 5, 5});
  EXPECT_EQ(std::accumulate(h.counts.begin(), h.counts.end(), 0), 3);
  EXPECT_EQ(*std::max_element(h.counts.begin(), h.counts.end()), 3);
}

int count_matches(const std::string& text, const std::regex& pattern) {
  return static_cast<int>(std::distance(std::sregex_iterator(text.begin(), text.end(), pattern), std::sregex_iterator()));
}

TEST(LatencyHistogram, SvgHasAPanelPerMeasureWithBarsAndMarks) {
  const std::string svg = latency_histograms_svg(
      {{"TTFT", "time to first token", {10, 20, 30}}, {"TPOT", "time per output token", {}}},
      "bench <one> & two");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("bench &lt;one&gt; &amp; two"), std::string::npos);
  EXPECT_NE(svg.find("TTFT: time to first token (3 values)"), std::string::npos);
  EXPECT_NE(svg.find("TPOT: time per output token (0 values)"), std::string::npos);
  EXPECT_NE(svg.find("no values"), std::string::npos);
  EXPECT_EQ(count_matches(svg, std::regex("class=\"bar\"")), 3);  // three values in three bins
  // The bars' counts, from their tooltips, add up to the values.
  int total = 0;
  const std::regex tooltip(" ms: (\\d+)</title>");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), tooltip); it != std::sregex_iterator(); ++it) {
    total += std::stoi((*it)[1]);
  }
  EXPECT_EQ(total, 3);
  // median 20, p99 at rank 1.98: 20 + 0.98 * 10 = 29.8.
  EXPECT_NE(svg.find("median 20 ms"), std::string::npos);
  EXPECT_NE(svg.find("p99 29.8 ms"), std::string::npos);
}

}  // namespace
}  // namespace switchyard::client
