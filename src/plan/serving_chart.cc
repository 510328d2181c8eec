// serving_to_svg (declared in serving_report.h): $ per million output tokens against TPOT.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "plan/report_text.h"
#include "plan/serving_report.h"

namespace switchyard::plan {

namespace {

constexpr double W = 900, H = 620, kLeft = 90, kRight = 230, kTop = 80, kBottom = 70;
constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                    "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

// Whole decades around [lo, hi], so the log axes have round tick labels.
struct Decades {
  double lo, hi;
  Decades(double min, double max)
      : lo(std::floor(std::log10(min))), hi(std::ceil(std::log10(max))) {
    if (hi <= lo) hi = lo + 1;
  }
};

struct Frame {
  Decades x, y;
  double px(double tpot_ms) const {
    return kLeft + (std::log10(tpot_ms) - x.lo) / (x.hi - x.lo) * (W - kLeft - kRight);
  }
  double py(double dollars) const {
    return H - kBottom - (std::log10(dollars) - y.lo) / (y.hi - y.lo) * (H - kTop - kBottom);
  }
};

std::string axes(const Frame& f) {
  std::string s;
  for (const LogTick& t : log_ticks(f.x.lo, f.x.hi)) {
    const double x = f.px(t.value);
    s += fmt::format(
        "<line x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{}\" stroke=\"{}\"/>\n"
        "<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{}\">{:g}</text>\n",
        x, kTop, x, H - kBottom, t.major ? "#ccc" : "#eee", x, H - kBottom + 18, t.major ? 12 : 9,
        t.value);
  }
  for (const LogTick& t : log_ticks(f.y.lo, f.y.hi)) {
    const double y = f.py(t.value);
    s += fmt::format(
        "<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"{}\"/>\n"
        "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\" font-size=\"{}\">${:g}</text>\n",
        kLeft, y, W - kRight, y, t.major ? "#ccc" : "#eee", kLeft - 6, y + 4, t.major ? 12 : 9,
        t.value);
  }
  s += fmt::format(
      "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">time per output token (ms, log "
      "scale)</text>\n",
      (kLeft + W - kRight) / 2, H - 20);
  s += fmt::format(
      "<text x=\"20\" y=\"{0}\" transform=\"rotate(-90 20 {0})\" text-anchor=\"middle\">$ per "
      "million output tokens (log scale)</text>\n",
      (kTop + H - kBottom) / 2);
  return s;
}

// One chip's series: its batches joined, those meeting the TPOT target filled, its plan ringed.
std::string series(const Frame& f, const ServeRow& r, const char* color) {
  std::string path, dots;
  for (const ServePoint& p : r.curve) {
    const double x = f.px(p.tpot_s * 1000), y = f.py(p.dollars_per_million);
    path += fmt::format("{:.1f},{:.1f} ", x, y);
    dots += fmt::format(
        "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\" stroke=\"{}\" "
        "stroke-width=\"1.5\"><title>{}: batch {}, TP={}, {} chips, TPOT {:.3g} ms, ${:.3g} per "
        "million</title></circle>\n",
        x, y, p.meets_tpot ? color : "white", color, xml_escape(r.chip), p.batch, p.tensor_parallel,
        p.chips, p.tpot_s * 1000, p.dollars_per_million);
  }
  std::string s = fmt::format(
      "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>\n", path, color);
  const double x = f.px(r.plan.tpot_s * 1000), y = f.py(r.plan.dollars_per_million);
  s += dots + fmt::format(
                  "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"9\" fill=\"none\" stroke=\"{}\" "
                  "stroke-width=\"2\"/>\n<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\">{} x "
                  "{}, batch {}{}</text>\n",
                  x, y, color, x + 11, y - 8, r.plan.instances, xml_escape(r.instance),
                  r.plan.batch, r.cheapest ? " (cheapest)" : "");
  return s;
}

std::string legend(const std::vector<const ServeRow*>& drawn, const std::vector<ServeRow>& rows) {
  std::string s;
  double y = kTop + 10;
  for (size_t i = 0; i < drawn.size(); ++i, y += 20) {
    s += fmt::format(
        "<circle cx=\"{}\" cy=\"{:.1f}\" r=\"5\" fill=\"{}\"/><text x=\"{}\" y=\"{:.1f}\">{} "
        "({})</text>\n",
        W - kRight + 20, y, kPalette[i % 8], W - kRight + 32, y + 4, xml_escape(drawn[i]->chip),
        xml_escape(drawn[i]->evidence_label()));
  }
  s += fmt::format(
      "<text x=\"{0}\" y=\"{1:.1f}\">filled: meets the TPOT target</text>\n"
      "<text x=\"{0}\" y=\"{2:.1f}\">ringed: the chip's plan</text>\n",
      W - kRight + 14, y + 6, y + 22);
  y += 46;
  for (const ServeRow& r : rows) {
    if (r.status == ServeStatus::kPlanned) continue;
    s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" font-size=\"10\">{}: {}</text>\n",
                     W - kRight + 14, y, xml_escape(r.chip), serve_status_name(r.status));
    y += 14;
  }
  return s;
}

// `text` in lines of at most `width` characters, broken at spaces.
std::vector<std::string> wrap(const std::string& text, size_t width) {
  std::vector<std::string> lines(1);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(start, end - start);
    if (!lines.back().empty() && lines.back().size() + 1 + word.size() > width)
      lines.emplace_back();
    if (!lines.back().empty()) lines.back() += ' ';
    lines.back() += word;
    start = end + 1;
  }
  return lines;
}

}  // namespace

std::string serving_to_svg(const std::vector<ServeRow>& rows, double tpot_target_s,
                           const std::string& title) {
  std::vector<const ServeRow*> drawn;
  double xmin = tpot_target_s * 1000, xmax = xmin, ymin = 1e300, ymax = 0;
  for (const ServeRow& r : rows) {
    if (r.status != ServeStatus::kPlanned || r.curve.empty()) continue;
    drawn.push_back(&r);
    for (const ServePoint& p : r.curve) {
      xmin = std::min(xmin, p.tpot_s * 1000);
      xmax = std::max(xmax, p.tpot_s * 1000);
      ymin = std::min(ymin, p.dollars_per_million);
      ymax = std::max(ymax, p.dollars_per_million);
    }
  }
  require(!drawn.empty(), "no chip meets the targets on a priced instance: nothing to draw");
  const Frame f{Decades(xmin, xmax), Decades(ymin, ymax)};
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
      "fill=\"white\"/>\n<text x=\"{}\" y=\"25\" font-size=\"15\">{}</text>\n",
      W, H, kLeft, xml_escape(title));
  double line_y = 43;
  for (const std::string& line : wrap(serving_summary(rows), 130)) {
    s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>\n", kLeft, line_y,
                     xml_escape(line));
    line_y += 14;
  }
  s += axes(f);
  const double tx = f.px(tpot_target_s * 1000);
  s += fmt::format(
      "<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"black\" "
      "stroke-dasharray=\"5,3\"/>\n<text x=\"{3:.1f}\" y=\"{4}\" font-size=\"10\">TPOT "
      "target</text>\n",
      tx, kTop, H - kBottom, tx + 4, kTop + 12);
  for (size_t i = 0; i < drawn.size(); ++i) s += series(f, *drawn[i], kPalette[i % 8]);
  s += legend(drawn, rows);
  return s + "</svg>\n";
}

}  // namespace switchyard::plan
