#include "client/latency_histogram_svg.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "client/latency_stats.h"
#include "core/axis_ticks.h"

namespace switchyard::client {

namespace {

constexpr int kBinsPerTick = 5;  // a fifth of a round tick step is itself round

// Where one panel lies on the page and the data ranges it maps.
struct Frame {
  static constexpr double kWidth = 720, kPanelHeight = 210, kTitleHeight = 44;
  static constexpr double kLeft = 72, kRight = 24, kTop = 30, kBottom = 46;
  double top;  // of the panel on the page
  double x_lo, x_hi, y_hi;

  double x(double ms) const { return kLeft + (kWidth - kLeft - kRight) * (ms - x_lo) / (x_hi - x_lo); }
  double y(double count) const { return plot_bottom() - (plot_bottom() - plot_top()) * count / y_hi; }
  double plot_top() const { return top + kTop; }
  double plot_bottom() const { return top + kPanelHeight - kBottom; }
  double plot_right() const { return kWidth - kRight; }
};

std::string draw_axes(const Frame& f, const std::vector<double>& x_ticks, const std::vector<double>& y_ticks) {
  std::string svg;
  const double x_step = x_ticks[1] - x_ticks[0], y_step = y_ticks[1] - y_ticks[0];
  for (double v : y_ticks) {
    svg += fmt::format(
        "<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#e0e0e0\"/>"
        "<text class=\"tick-y\" x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n",
        Frame::kLeft, f.plot_right(), f.y(v), f.y(v), Frame::kLeft - 6, f.y(v) + 4, format_tick(v, y_step));
  }
  for (double v : x_ticks) {
    svg += fmt::format("<text class=\"tick-x\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", f.x(v),
                       f.plot_bottom() + 16, format_tick(v, x_step));
  }
  svg += fmt::format("<polyline fill=\"none\" stroke=\"black\" points=\"{0},{1:.1f} {0},{2:.1f} {3},{2:.1f}\"/>\n",
                     Frame::kLeft, f.plot_top(), f.plot_bottom(), f.plot_right());
  svg += fmt::format("<text class=\"axis-label\" x=\"{}\" y=\"{:.1f}\" text-anchor=\"middle\">ms</text>\n",
                     (Frame::kLeft + f.plot_right()) / 2, f.plot_bottom() + 34);
  const double y_mid = (f.plot_top() + f.plot_bottom()) / 2;
  svg += fmt::format(
      "<text class=\"axis-label\" x=\"18\" y=\"{0:.1f}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {0:.1f})\">"
      "requests</text>\n",
      y_mid);
  return svg;
}

// A vertical line across the plot at `ms` with its label beside it at the top: on its right in the
// left half of the plot, on its left in the right half, so that it stays on the page.
std::string draw_marker(const Frame& f, double ms, const std::string& label, const char* style, double label_dy) {
  const bool right_half = f.x(ms) > (Frame::kLeft + f.plot_right()) / 2;
  return fmt::format(
      "<line class=\"marker\" x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1:.1f}\" y2=\"{2:.1f}\" {3}/>"
      "<text class=\"marker-label\" x=\"{4:.1f}\" y=\"{5:.1f}\" text-anchor=\"{6}\">{7}</text>\n",
      f.x(ms), f.plot_top(), f.plot_bottom(), style, f.x(ms) + (right_half ? -4 : 4), f.plot_top() + label_dy,
      right_half ? "end" : "start", label);
}

std::string draw_panel(const LatencyPanel& panel, double top) {
  std::string svg = fmt::format(
      "<text class=\"panel-title\" x=\"{}\" y=\"{:.1f}\" font-size=\"13\">{}: {} ({} {})</text>\n", Frame::kLeft, top + 18, panel.name, panel.description, panel.values_ms.size(),
                                panel.values_ms.size() == 1 ? "value" : "values");
  if (panel.values_ms.empty()) {
    return svg + fmt::format("<text class=\"empty\" x=\"{}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#777\">no "
                             "values</text>\n",
                             Frame::kWidth / 2, top + Frame::kPanelHeight / 2);
  }
  const Histogram h = make_histogram(panel.values_ms);
  const int max_count = *std::max_element(h.counts.begin(), h.counts.end());
  const std::vector<double> y_ticks = nice_ticks(0, max_count, 4, /*min_step=*/1);  // counts are whole
  std::vector<double> x_ticks;
  for (size_t i = 0; i < h.edges.size(); i += kBinsPerTick) x_ticks.push_back(h.edges[i]);
  const Frame f{top, h.edges.front(), h.edges.back(), y_ticks.back()};
  svg += draw_axes(f, x_ticks, y_ticks);
  for (size_t i = 0; i < h.counts.size(); ++i) {
    if (h.counts[i] == 0) continue;
    svg += fmt::format(
        "<rect class=\"bar\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"#1f77b4\" "
        "stroke=\"white\" stroke-width=\"0.5\"><title>{:.3g} to {:.3g} ms: {}</title></rect>\n",
        f.x(h.edges[i]), f.y(h.counts[i]), f.x(h.edges[i + 1]) - f.x(h.edges[i]), f.plot_bottom() - f.y(h.counts[i]),
        h.edges[i], h.edges[i + 1], h.counts[i]);
  }
  const Distribution d = describe(panel.values_ms);
  svg += draw_marker(f, d.median, fmt::format("median {:.4g} ms", d.median),
                     "stroke=\"#d62728\" stroke-width=\"1.5\"", 12);
  svg += draw_marker(f, d.p99, fmt::format("p99 {:.4g} ms", d.p99),
                     "stroke=\"#d62728\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"", 26);
  return svg;
}

// Text from a server or a command line, made safe inside SVG markup.
std::string escape_xml(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

}  // namespace

Histogram make_histogram(const std::vector<double>& values) {
  Histogram h;
  if (values.empty()) return h;
  const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  const std::vector<double> ticks = nice_ticks(*lo, *hi, 6);
  const double width = (ticks[1] - ticks[0]) / kBinsPerTick;
  const size_t bins = (ticks.size() - 1) * kBinsPerTick;
  for (size_t i = 0; i <= bins; ++i) h.edges.push_back(ticks.front() + static_cast<double>(i) * width);
  h.counts.assign(bins, 0);
  for (double v : values) {
    // The small allowance puts a value on an edge (up to rounding) in the bin above it.
    const double position = std::floor((v - ticks.front()) / width + 1e-9);
    const auto bin = static_cast<size_t>(std::clamp(position, 0.0, static_cast<double>(bins - 1)));
    ++h.counts[bin];
  }
  return h;
}

std::string latency_histograms_svg(const std::vector<LatencyPanel>& panels, const std::string& title) {
  const double height = Frame::kTitleHeight + Frame::kPanelHeight * static_cast<double>(panels.size());
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text class=\"title\" x=\"{}\" y=\"26\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
      Frame::kWidth, height, Frame::kWidth / 2, escape_xml(title));
  for (size_t i = 0; i < panels.size(); ++i) {
    svg += draw_panel(panels[i], Frame::kTitleHeight + Frame::kPanelHeight * static_cast<double>(i));
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace switchyard::client
