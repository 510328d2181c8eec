#include "train/loss_curve.h"

#include <algorithm>
#include <fstream>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace switchyard::train {

namespace {

struct Point {
  double step, loss;
};

}  // namespace

void write_loss_curve(const std::string& log_path, const std::string& svg_path) {
  std::vector<Point> train, val;
  std::ifstream in(log_path);
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object() || !record.contains("step")) continue;
    if (record.contains("loss") && record["loss"].is_number()) {
      train.push_back({record["step"].get<double>(), record["loss"].get<double>()});
    } else if (record.contains("val_loss") && record["val_loss"].is_number()) {
      val.push_back({record["step"].get<double>(), record["val_loss"].get<double>()});
    }
  }
  if (train.empty()) return;

  double max_step = 1, lo = train[0].loss, hi = train[0].loss;
  for (const auto* series : {&train, &val}) {
    for (const Point& p : *series) {
      max_step = std::max(max_step, p.step);
      lo = std::min(lo, p.loss);
      hi = std::max(hi, p.loss);
    }
  }
  if (hi - lo < 1e-6) hi = lo + 1;
  const double W = 720, H = 400, left = 60, right = 20, top = 30, bottom = 40;
  auto x = [&](double step) { return left + (W - left - right) * step / max_step; };
  auto y = [&](double loss) { return top + (H - top - bottom) * (hi - loss) / (hi - lo); };

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"18\">Switchyard training loss</text>\n",
      W, H, left);
  for (int i = 0; i <= 4; ++i) {
    double loss = lo + (hi - lo) * i / 4.0;
    svg += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>"
                       "<text x=\"5\" y=\"{:.1f}\">{:.3f}</text>\n",
                       left, W - right, y(loss), y(loss), y(loss) + 4, loss);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\">step (last {})</text>\n", W / 2 - 40, H - 10, max_step);
  svg += "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"";
  for (const Point& p : train) svg += fmt::format("{:.1f},{:.1f} ", x(p.step), y(p.loss));
  svg += "\"/>\n";
  for (const Point& p : val) {
    svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"#d62728\"/>\n", x(p.step), y(p.loss));
  }
  svg += fmt::format("<text x=\"{}\" y=\"18\" fill=\"#1f77b4\">train</text><text x=\"{}\" y=\"18\" "
                     "fill=\"#d62728\">validation</text>\n</svg>\n",
                     W - 170, W - 120);
  std::ofstream out(svg_path, std::ios::trunc);
  if (!out) fail("cannot write {}", svg_path);
  out << svg;
}

}  // namespace switchyard::train
