// The loss curve drawn from log.jsonl: round tick values, labelled axes, and training and
// validation losses told apart by line style and marks, checked by reading the SVG back.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "core/axis_ticks.h"
#include "temp_dir_test_base.h"
#include "train/loss_curve.h"

namespace switchyard::train {
namespace {

// True when `step` is 1, 2, 2.5 or 5 times a power of ten.
bool is_round_step(double step) {
  const double mantissa = step / std::pow(10.0, std::floor(std::log10(step)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (std::abs(mantissa - m) < 1e-9) return true;
  }
  return false;
}

void expect_ticks(double lo, double hi, int target, double min_step, const std::vector<double>& want) {
  std::vector<double> got = nice_ticks(lo, hi, target, min_step);
  ASSERT_EQ(got.size(), want.size()) << lo << ".." << hi;
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12) << lo << ".." << hi << " #" << i;
}

TEST(NiceTicks, PicksRoundStepsThatCoverTheRange) {
  expect_ticks(0, 1200, 6, 1, {0, 200, 400, 600, 800, 1000, 1200});
  expect_ticks(2.204, 3.041, 5, 0, {2.2, 2.4, 2.6, 2.8, 3.0, 3.2});
  expect_ticks(1.52, 5.61, 5, 0, {1, 2, 3, 4, 5, 6});
  expect_ticks(0, 9, 4, 0, {0, 2.5, 5, 7.5, 10});
  expect_ticks(0.0123, 0.0456, 4, 0, {0.01, 0.02, 0.03, 0.04, 0.05});
  expect_ticks(0, 7, 6, 1, {0, 2, 4, 6, 8});
  expect_ticks(0, 1, 6, 1, {0, 1});  // a one-step run: no fractional steps
}

TEST(NiceTicks, HoldsForManyRanges) {
  for (double lo : {0.0, 0.37, 1.6, 2.9, 47.0}) {
    for (double width : {1e-3, 0.05, 0.9, 3.3, 11.0, 740.0}) {
      const double hi = lo + width;
      std::vector<double> t = nice_ticks(lo, hi, 5);
      ASSERT_GE(t.size(), 2u);
      const double step = t[1] - t[0];
      EXPECT_TRUE(is_round_step(step)) << lo << ".." << hi << " step " << step;
      EXPECT_LE(t.front(), lo + 1e-12);
      EXPECT_GT(t.front(), lo - step);
      EXPECT_GE(t.back(), hi - 1e-12);
      EXPECT_LT(t.back(), hi + step);
      EXPECT_LE(t.size(), 11u);
      for (size_t i = 1; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], step, 1e-9 * step);
    }
  }
}

TEST(NiceTicks, OneValueGetsARangeAroundIt) {
  std::vector<double> t = nice_ticks(3, 3, 5);
  ASSERT_GE(t.size(), 2u);
  EXPECT_LT(t.front(), 3);
  EXPECT_GT(t.back(), 3);
}

TEST(FormatTick, UsesTheDecimalsTheStepNeeds) {
  EXPECT_EQ(format_tick(1000, 200), "1000");
  EXPECT_EQ(format_tick(25, 25), "25");
  EXPECT_EQ(format_tick(2.2, 0.2), "2.2");
  EXPECT_EQ(format_tick(3, 0.2), "3.0");
  EXPECT_EQ(format_tick(7.5, 2.5), "7.5");
  EXPECT_EQ(format_tick(0.25, 0.25), "0.25");
  EXPECT_EQ(format_tick(0.05, 0.01), "0.05");
  EXPECT_EQ(format_tick(-1e-17, 0.5), "0.0");
  EXPECT_EQ(format_tick(0.1 + 0.2, 0.1), "0.3");
}

struct SvgText {
  std::string cls, x, y, text;
};

// Every <text> element with a class, in order.
std::vector<SvgText> texts(const std::string& svg) {
  std::vector<SvgText> out;
  std::regex element(R"re(<text class="([^"]+)" x="([^"]+)" y="([^"]+)"[^>]*>([^<]*)</text>)re");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), element); it != std::sregex_iterator(); ++it) {
    out.push_back({(*it)[1], (*it)[2], (*it)[3], (*it)[4]});
  }
  return out;
}

std::vector<SvgText> of_class(const std::vector<SvgText>& all, const std::string& cls) {
  std::vector<SvgText> out;
  for (const SvgText& t : all) {
    if (t.cls == cls) out.push_back(t);
  }
  return out;
}

// The opening tag of the first <polyline class="...">, or "" when there is none. Found with
// string searches, not std::regex: libstdc++'s regex recurses once per character matched, and the
// points attribute of a 1200-step curve is long enough to overflow the stack of a sanitizer build.
std::string polyline_tag(const std::string& svg, const std::string& cls) {
  const size_t start = svg.find("<polyline class=\"" + cls + "\"");
  if (start == std::string::npos) return "";
  const size_t end = svg.find('>', start);
  return svg.substr(start, end == std::string::npos ? std::string::npos : end - start + 1);
}

// The points="..." of the first <polyline class="...">.
std::vector<std::pair<double, double>> polyline(const std::string& svg, const std::string& cls) {
  const std::string tag = polyline_tag(svg, cls);
  const std::string key = "points=\"";
  const size_t at = tag.find(key);
  if (at == std::string::npos) return {};
  const size_t begin = at + key.size();
  std::vector<std::pair<double, double>> points;
  std::istringstream in(tag.substr(begin, tag.find('"', begin) - begin));
  double x, y;
  char comma;
  while (in >> x >> comma >> y) points.push_back({x, y});
  return points;
}

class LossCurve : public TempDirTest {
 protected:
  // Training loss 1.6 + 3.9 exp(-step/200) for steps 1..1200, validation 0.1 above it every 200
  // steps, and lines the plot must skip.
  void write_log(bool with_validation) {
    std::ofstream log(path("log.jsonl"));
    log << "not json\n{\"event\": \"resumed\"}\n";
    for (int step = 1; step <= 1200; ++step) {
      log << "{\"step\": " << step << ", \"loss\": " << train_loss(step) << ", \"lr\": 0.001}\n";
      if (with_validation && step % 200 == 0) {
        log << "{\"step\": " << step << ", \"val_loss\": " << train_loss(step) + 0.1 << "}\n";
      }
    }
  }
  static double train_loss(int step) { return 1.6 + 3.9 * std::exp(-step / 200.0); }

  std::string draw() {
    write_loss_curve(path("log.jsonl"), path("loss.svg"));
    std::ifstream in(path("loss.svg"));
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
};

TEST_F(LossCurve, AxesHaveLabelsAndRoundTicks) {
  write_log(/*with_validation=*/true);
  const std::string svg = draw();
  const std::vector<SvgText> all = texts(svg);

  std::vector<std::string> x_labels, y_labels, axis_labels;
  for (const SvgText& t : of_class(all, "tick-x")) x_labels.push_back(t.text);
  for (const SvgText& t : of_class(all, "tick-y")) y_labels.push_back(t.text);
  for (const SvgText& t : of_class(all, "axis-label")) axis_labels.push_back(t.text);
  // Steps 1..1200 and losses 1.61..5.48 (by the formula above).
  EXPECT_EQ(x_labels, (std::vector<std::string>{"0", "200", "400", "600", "800", "1000", "1200"}));
  EXPECT_EQ(y_labels, (std::vector<std::string>{"1", "2", "3", "4", "5", "6"}));
  EXPECT_EQ(axis_labels, (std::vector<std::string>{"step", "loss (nats/token)"}));
  ASSERT_EQ(of_class(all, "title").size(), 1u);
  EXPECT_NE(of_class(all, "title")[0].text.find("loss"), std::string::npos);

  // The curve sits where the ticks say: step s at the x of tick 0 plus s/1200 of the way to tick
  // 1200, loss l between the y of ticks 1 and 6.
  const std::vector<SvgText> xt = of_class(all, "tick-x"), yt = of_class(all, "tick-y");
  const double x0 = std::stod(xt.front().x), x1 = std::stod(xt.back().x);
  const double label_offset = 4;  // tick-y labels sit 4 px below their line, to centre the digits
  const double y1 = std::stod(yt.front().y) - label_offset, y6 = std::stod(yt.back().y) - label_offset;
  const auto train = polyline(svg, "train");
  ASSERT_EQ(train.size(), 1200u);
  for (int step : {1, 300, 1200}) {
    EXPECT_NEAR(train[step - 1].first, x0 + (x1 - x0) * step / 1200.0, 0.11) << step;
    EXPECT_NEAR(train[step - 1].second, y1 + (y6 - y1) * (train_loss(step) - 1) / 5.0, 0.11) << step;
  }
}

TEST_F(LossCurve, ValidationIsDashedWithMarksAndInTheLegend) {
  write_log(/*with_validation=*/true);
  const std::string svg = draw();
  EXPECT_EQ(polyline(svg, "validation").size(), 6u);
  EXPECT_NE(polyline_tag(svg, "validation").find("stroke-dasharray="), std::string::npos);
  const std::string train_tag = polyline_tag(svg, "train");
  ASSERT_FALSE(train_tag.empty());
  EXPECT_EQ(train_tag.find("stroke-dasharray="), std::string::npos);
  std::regex circle("<circle class=\"validation\"");
  EXPECT_EQ(std::distance(std::sregex_iterator(svg.begin(), svg.end(), circle), std::sregex_iterator()), 6);

  std::vector<std::string> legend;
  for (const SvgText& t : of_class(texts(svg), "legend")) legend.push_back(t.text);
  EXPECT_EQ(legend, (std::vector<std::string>{"train", "validation"}));
  // The legend's validation sample is dashed and marked like the series.
  const size_t legend_at = svg.find("<text class=\"legend\"");
  ASSERT_NE(legend_at, std::string::npos);
  const std::string legend_part = svg.substr(legend_at);
  EXPECT_NE(legend_part.find("stroke-dasharray"), std::string::npos);
  EXPECT_NE(legend_part.find("<circle"), std::string::npos);
}

TEST_F(LossCurve, WithoutValidationOnlyTrainingIsShown) {
  write_log(/*with_validation=*/false);
  const std::string svg = draw();
  EXPECT_EQ(svg.find("validation"), std::string::npos);
  EXPECT_EQ(polyline(svg, "train").size(), 1200u);
}

TEST_F(LossCurve, NoStepsNoPlot) {
  std::ofstream(path("log.jsonl")) << "{\"step\": 5, \"val_loss\": 2.0}\n";
  write_loss_curve(path("log.jsonl"), path("loss.svg"));
  EXPECT_FALSE(std::filesystem::exists(path("loss.svg")));
}

}  // namespace
}  // namespace switchyard::train
