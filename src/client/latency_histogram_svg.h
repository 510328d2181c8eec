// Draws the latencies of a serving benchmark as an SVG: one histogram per measure (TTFT, TPOT, ITL,
// E2E) stacked on one page, each on a millisecond axis with round tick values, with its median
// (solid line) and 99th percentile (dashed line) marked and labelled.
#pragma once

#include <string>
#include <vector>

namespace switchyard::client {

struct LatencyPanel {
  std::string name;             // "TTFT"
  std::string description;      // "time to first token"
  std::vector<double> values_ms;
};

// The SVG text. A panel with no values says so instead of drawing bars.
std::string latency_histograms_svg(const std::vector<LatencyPanel>& panels, const std::string& title);

// Bars of a histogram: `edges` (one more than `counts`) are round multiples of one width spanning
// every value; a value on an inner edge counts in the bin above it, the largest in the last bin.
struct Histogram {
  std::vector<double> edges;
  std::vector<int> counts;
};
Histogram make_histogram(const std::vector<double>& values);

}  // namespace switchyard::client
