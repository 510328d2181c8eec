#include "plan/report.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace switchyard::plan {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string human_count(double x) {
  if (x >= 1e9) return fmt::format("{:.2f}G", x / 1e9);
  if (x >= 1e6) return fmt::format("{:.2f}M", x / 1e6);
  if (x >= 1e3) return fmt::format("{:.1f}k", x / 1e3);
  return fmt::format("{:.1f}", x);
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

std::string format_table(const std::vector<PlanRow>& rows) {
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"chip", "instance", "n", "chips", "layout", "GiB/chip", "tokens/s", "hours", "$",
                   "$/Btok", "kWh", "pareto", "evidence"});
  for (const PlanRow& r : rows) {
    if (!r.fits) continue;
    cells.push_back(
        {r.chip, r.instance, std::to_string(r.instances), std::to_string(r.chips), r.layout(),
         fmt::format("{:.1f}", r.memory_per_chip / kGiB), human_count(r.tokens_per_s),
         fmt::format("{:.2f}", r.hours), fmt::format("{:.0f}", r.dollars),
         fmt::format("{:.2f}", r.dollars_per_billion_tokens),
         std::isnan(r.energy_kwh) ? std::string("-") : fmt::format("{:.0f}", r.energy_kwh),
         r.pareto ? "*" : "", evidence_name(r.evidence)});
  }
  std::vector<size_t> width(cells[0].size(), 0);
  for (const auto& row : cells) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : cells) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i] + std::string(width[i] - row[i].size() + (i + 1 < row.size() ? 2 : 0), ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  // Evidence, once per chip: where each step time came from.
  std::vector<std::string> seen;
  out += "\nevidence:\n";
  for (const PlanRow& r : rows) {
    if (std::find(seen.begin(), seen.end(), r.chip) != seen.end() || r.evidence_detail.empty())
      continue;
    seen.push_back(r.chip);
    out += fmt::format("  {}: {}\n", r.chip, r.evidence_detail);
  }
  bool any_unfit = false;
  for (const PlanRow& r : rows) {
    if (r.fits) continue;
    if (!any_unfit) out += "\ndoes not fit:\n";
    any_unfit = true;
    if (r.instances > 0) {
      out += fmt::format("  {} x {} ({} chips): {}\n", r.instances, r.instance, r.chips, r.why_not);
    } else {
      out += fmt::format("  {} ({}): {}\n", r.chip, r.instance, r.why_not);
    }
  }
  return out;
}

nlohmann::json plan_to_json(const std::vector<PlanRow>& rows) {
  nlohmann::json array = nlohmann::json::array();
  for (const PlanRow& r : rows) {
    nlohmann::json o = {{"chip", r.chip},
                        {"instance", r.instance},
                        {"instances", r.instances},
                        {"chips", r.chips},
                        {"fits", r.fits},
                        {"evidence", evidence_name(r.evidence)},
                        {"evidence_detail", r.evidence_detail}};
    if (!r.fits) {
      o["why_not"] = r.why_not;
      if (r.memory_per_chip > 0) o["memory_gib_per_chip_needed"] = r.memory_per_chip / kGiB;
      // Keep the documented keys present (null: not applicable) so consumers need no special case.
      for (const char* key : {"hours", "dollars", "tokens_per_s"}) o[key] = nullptr;
      array.push_back(o);
      continue;
    }
    o["layout"] = r.layout();
    o["tensor_parallel"] = r.tensor_parallel;
    o["data_parallel"] = r.data_parallel;
    o["zero1"] = r.zero1;
    o["recompute"] = r.recompute;
    o["micro_batch"] = r.micro_batch;
    o["accumulation"] = r.accumulation;
    o["tokens_per_step"] = r.tokens_per_step;
    o["memory_gib_per_chip"] = r.memory_per_chip / kGiB;
    o["memory_gib_capacity"] = r.memory_capacity / kGiB;
    o["compute_s"] = r.compute_s;
    o["tp_comm_s"] = r.tp_comm_s;
    o["dp_comm_s"] = r.dp_comm_s;
    o["exposed_dp_comm_s"] = r.exposed_dp_comm_s;
    o["step_s"] = r.step_s;
    o["tokens_per_s"] = r.tokens_per_s;
    o["hours"] = r.hours;
    o["price_per_hour"] = r.price_per_hour;
    o["dollars"] = r.dollars;
    o["dollars_per_billion_tokens"] = r.dollars_per_billion_tokens;
    o["energy_kwh"] =
        std::isnan(r.energy_kwh) ? nlohmann::json(nullptr) : nlohmann::json(r.energy_kwh);
    o["pareto"] = r.pareto;
    array.push_back(o);
  }
  return array;
}

std::string plan_to_csv(const std::vector<PlanRow>& rows) {
  std::string out =
      "chip,instance,instances,chips,fits,layout,tensor_parallel,data_parallel,zero1,recompute,"
      "micro_batch,memory_gib_per_chip,tokens_per_s,hours,dollars,dollars_per_billion_tokens,"
      "energy_kwh,pareto,evidence,note\n";
  for (const PlanRow& r : rows) {
    if (r.fits) {
      out += fmt::format(
          "{},{},{},{},true,{},{},{},{},{},{},{:.3f},{:.6g},{:.6g},{:.6g},{:.6g},{},{},{},{}\n",
          csv_field(r.chip), csv_field(r.instance), r.instances, r.chips, csv_field(r.layout()),
          r.tensor_parallel, r.data_parallel, r.zero1, r.recompute, r.micro_batch,
          r.memory_per_chip / kGiB, r.tokens_per_s, r.hours, r.dollars,
          r.dollars_per_billion_tokens,
          std::isnan(r.energy_kwh) ? std::string() : fmt::format("{:.6g}", r.energy_kwh), r.pareto,
          evidence_name(r.evidence), csv_field(r.evidence_detail));
    } else {
      out += fmt::format("{},{},{},{},false,,,,,,,,,,,,,,{},{}\n", csv_field(r.chip),
                         csv_field(r.instance), r.instances, r.chips, evidence_name(r.evidence),
                         csv_field(r.why_not));
    }
  }
  return out;
}

std::string plan_to_svg(const std::vector<PlanRow>& rows, const std::string& title) {
  std::vector<const PlanRow*> points;
  for (const PlanRow& r : rows) {
    if (r.fits) points.push_back(&r);
  }
  require(!points.empty(), "no configuration fits in memory: nothing to draw");
  double hmin = 1e300, hmax = 0, dmin = 1e300, dmax = 0;
  for (const PlanRow* p : points) {
    hmin = std::min(hmin, p->hours);
    hmax = std::max(hmax, p->hours);
    dmin = std::min(dmin, p->dollars);
    dmax = std::max(dmax, p->dollars);
  }
  // Whole decades around the data, so the log axes have round tick labels.
  double lx0 = std::floor(std::log10(hmin)), lx1 = std::ceil(std::log10(hmax));
  double ly0 = std::floor(std::log10(dmin)), ly1 = std::ceil(std::log10(dmax));
  if (lx1 <= lx0) lx1 = lx0 + 1;
  if (ly1 <= ly0) ly1 = ly0 + 1;
  const double W = 900, H = 600, left = 90, right = 200, top = 50, bottom = 70;
  auto X = [&](double h) {
    return left + (std::log10(h) - lx0) / (lx1 - lx0) * (W - left - right);
  };
  auto Y = [&](double d) {
    return H - bottom - (std::log10(d) - ly0) / (ly1 - ly0) * (H - top - bottom);
  };

  std::vector<std::string> chips;
  for (const PlanRow* p : points) {
    if (std::find(chips.begin(), chips.end(), p->chip) == chips.end()) chips.push_back(p->chip);
  }
  const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                           "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
  auto color = [&](const std::string& chip) {
    size_t i = std::find(chips.begin(), chips.end(), chip) - chips.begin();
    return palette[i % 8];
  };

  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      W, H);
  s += fmt::format("<text x=\"{}\" y=\"25\" font-size=\"15\">{}</text>\n", left, xml_escape(title));
  // Decades get a grid line and a label; 2x and 5x get a lighter line and a small label.
  for (double e = lx0; e <= lx1; e += 1) {
    for (double m : {1.0, 2.0, 5.0}) {
      const double v = m * std::pow(10, e);
      if (std::log10(v) > lx1 + 1e-9) break;
      const double x = X(v);
      s += fmt::format("<line x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{}\" stroke=\"{}\"/>\n", x,
                       top, x, H - bottom, m == 1.0 ? "#ccc" : "#eee");
      s += fmt::format(
          "<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{}\">{:g}</text>\n", x,
          H - bottom + 18, m == 1.0 ? 12 : 9, v);
    }
  }
  for (double e = ly0; e <= ly1; e += 1) {
    for (double m : {1.0, 2.0, 5.0}) {
      const double v = m * std::pow(10, e);
      if (std::log10(v) > ly1 + 1e-9) break;
      const double y = Y(v);
      s += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"{}\"/>\n",
                       left, y, W - right, y, m == 1.0 ? "#ccc" : "#eee");
      s += fmt::format(
          "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\" font-size=\"{}\">${:g}</text>\n",
          left - 6, y + 4, m == 1.0 ? 12 : 9, v);
    }
  }
  s += fmt::format(
      "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">wall time (hours, log scale)</text>\n",
      (left + W - right) / 2, H - 20);
  s += fmt::format(
      "<text x=\"20\" y=\"{}\" transform=\"rotate(-90 20 {})\" text-anchor=\"middle\">total cost "
      "(USD, log scale)</text>\n",
      (top + H - bottom) / 2, (top + H - bottom) / 2);

  // Pareto front, fastest to cheapest.
  std::vector<const PlanRow*> front;
  for (const PlanRow* p : points) {
    if (p->pareto) front.push_back(p);
  }
  std::sort(front.begin(), front.end(),
            [](const PlanRow* a, const PlanRow* b) { return a->hours < b->hours; });
  if (front.size() > 1) {
    std::string path;
    for (const PlanRow* p : front)
      path += fmt::format("{:.1f},{:.1f} ", X(p->hours), Y(p->dollars));
    s += fmt::format(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"black\" stroke-width=\"1.5\" "
        "stroke-dasharray=\"5,3\"/>\n",
        path);
  }
  for (const PlanRow* p : points) {
    s += fmt::format(
        "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" fill=\"{}\" stroke=\"{}\" "
        "stroke-width=\"1.5\"><title>{} x {} ({} chips, {}): {:.2f} h, ${:.0f}</title></circle>\n",
        X(p->hours), Y(p->dollars), p->pareto ? 6 : 4, p->pareto ? color(p->chip) : "white",
        color(p->chip), p->instances, xml_escape(p->instance), p->chips, xml_escape(p->layout()),
        p->hours, p->dollars);
  }
  for (const PlanRow* p : front) {
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\">{}x{}</text>\n",
                     X(p->hours) + 8, Y(p->dollars) - 6, p->instances, xml_escape(p->instance));
  }
  double ly = top + 10;
  for (const std::string& chip : chips) {
    s += fmt::format(
        "<circle cx=\"{}\" cy=\"{:.1f}\" r=\"5\" fill=\"{}\"/><text x=\"{}\" "
        "y=\"{:.1f}\">{}</text>\n",
        W - right + 20, ly, color(chip), W - right + 32, ly + 4, xml_escape(chip));
    ly += 20;
  }
  s += fmt::format("<text x=\"{}\" y=\"{:.1f}\">filled, dashed: Pareto front</text>\n",
                   W - right + 14, ly + 10);
  s += "</svg>\n";
  return s;
}

}  // namespace switchyard::plan
