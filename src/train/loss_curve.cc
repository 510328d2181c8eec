#include "train/loss_curve.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/axis_ticks.h"
#include "core/error.h"

namespace switchyard::train {

namespace {

struct Point {
  double step, loss;
};

struct Series {
  std::vector<Point> train, val;
};

Series read_log(const std::string& log_path) {
  Series series;
  std::ifstream in(log_path);
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object() || !record.contains("step") || !record["step"].is_number()) continue;
    if (record.contains("loss") && record["loss"].is_number()) {
      series.train.push_back({record["step"].get<double>(), record["loss"].get<double>()});
    } else if (record.contains("val_loss") && record["val_loss"].is_number()) {
      series.val.push_back({record["step"].get<double>(), record["val_loss"].get<double>()});
    }
  }
  return series;
}

// The plot area inside the SVG and the data ranges it maps (the first and last ticks).
struct Frame {
  static constexpr double kWidth = 720, kHeight = 420;
  static constexpr double kLeft = 72, kRight = 24, kTop = 40, kBottom = 56;
  double x_lo, x_hi, y_lo, y_hi;

  double x(double step) const { return kLeft + (kWidth - kLeft - kRight) * (step - x_lo) / (x_hi - x_lo); }
  double y(double loss) const { return kTop + (kHeight - kTop - kBottom) * (y_hi - loss) / (y_hi - y_lo); }
  double plot_right() const { return kWidth - kRight; }
  double plot_bottom() const { return kHeight - kBottom; }
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
    svg += fmt::format(
        "<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{}\" y2=\"{}\" stroke=\"#e0e0e0\"/>"
        "<text class=\"tick-x\" x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
        f.x(v), f.x(v), Frame::kTop, f.plot_bottom(), f.x(v), f.plot_bottom() + 16, format_tick(v, x_step));
  }
  svg += fmt::format("<polyline fill=\"none\" stroke=\"black\" points=\"{0},{1} {0},{2} {3},{2}\"/>\n",
                     Frame::kLeft, Frame::kTop, f.plot_bottom(), f.plot_right());
  const double x_mid = (Frame::kLeft + f.plot_right()) / 2, y_mid = (Frame::kTop + f.plot_bottom()) / 2;
  svg += fmt::format("<text class=\"axis-label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n", x_mid,
                     Frame::kHeight - 14);
  svg += fmt::format(
      "<text class=\"axis-label\" x=\"18\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {0})\">"
      "loss (nats/token)</text>\n",
      y_mid);
  return svg;
}

constexpr const char* kTrainStyle = "fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\"";
constexpr const char* kValStyle = "fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"";
constexpr const char* kValMarker = "fill=\"white\" stroke=\"#d62728\" stroke-width=\"1.5\"";

std::string draw_series(const Frame& f, const Series& s) {
  std::string svg = fmt::format("<polyline class=\"train\" {} points=\"", kTrainStyle);
  for (const Point& p : s.train) svg += fmt::format("{:.1f},{:.1f} ", f.x(p.step), f.y(p.loss));
  svg += "\"/>\n";
  if (s.val.empty()) return svg;
  svg += fmt::format("<polyline class=\"validation\" {} points=\"", kValStyle);
  for (const Point& p : s.val) svg += fmt::format("{:.1f},{:.1f} ", f.x(p.step), f.y(p.loss));
  svg += "\"/>\n";
  for (const Point& p : s.val) {
    svg += fmt::format("<circle class=\"validation\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" {}/>\n", f.x(p.step),
                       f.y(p.loss), kValMarker);
  }
  return svg;
}

// Top right, inside the plot: a sample of each line and its marks beside its name.
std::string draw_legend(const Frame& f, bool has_val) {
  const double x = f.plot_right() - 130, y = Frame::kTop + 8;
  std::string svg = fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"122\" height=\"{}\" fill=\"white\" stroke=\"#999\"/>\n", x, y,
      has_val ? 44 : 24);
  svg += fmt::format(
      "<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" {3}/><text class=\"legend\" x=\"{4}\" y=\"{5}\">"
      "train</text>\n",
      x + 8, x + 40, y + 12, kTrainStyle, x + 48, y + 16);
  if (has_val) {
    svg += fmt::format(
        "<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" {3}/><circle cx=\"{4}\" cy=\"{2}\" r=\"4\" {5}/>"
        "<text class=\"legend\" x=\"{6}\" y=\"{7}\">validation</text>\n",
        x + 8, x + 40, y + 32, kValStyle, x + 24, kValMarker, x + 48, y + 36);
  }
  return svg;
}

}  // namespace

void write_loss_curve(const std::string& log_path, const std::string& svg_path) {
  const Series series = read_log(log_path);
  if (series.train.empty()) return;

  double max_step = 1, lo = series.train[0].loss, hi = lo;
  for (const std::vector<Point>* points : {&series.train, &series.val}) {
    for (const Point& p : *points) {
      max_step = std::max(max_step, p.step);
      lo = std::min(lo, p.loss);
      hi = std::max(hi, p.loss);
    }
  }
  const std::vector<double> x_ticks = nice_ticks(0, max_step, 6, /*min_step=*/1);  // steps are whole
  const std::vector<double> y_ticks = nice_ticks(lo, hi, 5);
  const Frame frame{x_ticks.front(), x_ticks.back(), y_ticks.front(), y_ticks.back()};

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text class=\"title\" x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">Switchyard training "
      "loss</text>\n",
      Frame::kWidth, Frame::kHeight, (Frame::kLeft + frame.plot_right()) / 2);
  svg += draw_axes(frame, x_ticks, y_ticks);
  svg += draw_series(frame, series);
  svg += draw_legend(frame, !series.val.empty());
  svg += "</svg>\n";
  std::ofstream out(svg_path, std::ios::trunc);
  if (!out) fail("cannot write {}", svg_path);
  out << svg;
}

}  // namespace switchyard::train
