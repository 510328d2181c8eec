#include "plan/report.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "plan/report_text.h"
#include "plan/units.h"

namespace switchyard::plan {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// "trn2, 16 x trn2.48xlarge (256 chips), 2.6 min, $24.75, evidence borrowed:trn1" and, when the
// batch changed, the batch it used.
std::string describe_plan(const PlanRow& r) {
  std::string s =
      fmt::format("{}, {} x {} ({} chips), {}, {}, evidence {}", r.chip, r.instances, r.instance,
                  r.chips, format_duration(r.hours), format_dollars(r.dollars), r.evidence_label());
  if (r.batch_changed()) {
    s += fmt::format(", global batch {} tokens (requested {})", group_digits(r.tokens_per_step),
                     group_digits(r.requested_batch_tokens));
  }
  return s;
}

// The two halves of the summary line (the SVG sets them on two lines).
std::vector<std::string> summary_parts(const std::vector<PlanRow>& rows) {
  PlanSummary summary = summarize(rows);
  if (!summary.cheapest) {
    return {"no plan: no configuration fits in memory on a priced instance (see below)"};
  }
  if (summary.cheapest == summary.fastest) {
    return {"cheapest and fastest: " + describe_plan(*summary.cheapest)};
  }
  return {"cheapest: " + describe_plan(*summary.cheapest),
          "fastest: " + describe_plan(*summary.fastest)};
}

nlohmann::json nullable(double x) {
  return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr);
}

nlohmann::json row_to_json(const PlanRow& r, const PlanSummary& summary) {
  nlohmann::json o = {{"chip", r.chip},
                      {"instance", r.instance},
                      {"instances", r.instances},
                      {"chips", r.chips},
                      {"status", status_name(r.status)},
                      {"fits", r.status == RowStatus::kOverMaxChips ? nlohmann::json(nullptr)
                                                                    : nlohmann::json(r.fits)},
                      {"evidence", evidence_name(r.evidence)},
                      {"evidence_label", r.evidence_label()},
                      {"evidence_source_chips", r.evidence_source_chips},
                      {"evidence_detail", r.evidence_detail},
                      {"memory_gib_capacity", r.memory_capacity / kGiB},
                      {"memory_gib_usable", r.memory_usable / kGiB},
                      {"batch_tokens_requested", r.requested_batch_tokens}};
  if (!r.planned()) {
    o["why_not"] = r.why_not;
    if (r.memory_per_chip > 0) o["memory_gib_per_chip_needed"] = r.memory_per_chip / kGiB;
    // Keep the documented keys present (null: not applicable) so consumers need no special case.
    for (const char* key : {"hours", "time", "dollars", "tokens_per_s"}) o[key] = nullptr;
    return o;
  }
  o["layout"] = r.layout();
  o["tensor_parallel"] = r.tensor_parallel;
  o["data_parallel"] = r.data_parallel;
  o["zero1"] = r.zero1;
  o["recompute"] = r.recompute;
  o["micro_batch"] = r.micro_batch;
  o["accumulation"] = r.accumulation;
  o["tokens_per_step"] = r.tokens_per_step;
  o["batch_tokens"] = r.tokens_per_step;
  o["batch_changed"] = r.batch_changed();
  o["batch_note"] = r.batch_changed() ? nlohmann::json(r.batch_note) : nlohmann::json(nullptr);
  o["memory_gib_per_chip"] = r.memory_per_chip / kGiB;
  o["compute_s"] = r.compute_s;
  o["tp_comm_s"] = r.tp_comm_s;
  o["dp_comm_s"] = r.dp_comm_s;
  o["exposed_dp_comm_s"] = r.exposed_dp_comm_s;
  o["step_s"] = r.step_s;
  o["tokens_per_s"] = r.tokens_per_s;
  o["hours"] = r.hours;
  o["time"] = format_duration(r.hours);
  o["price_per_hour"] = r.price_per_hour;
  o["dollars"] = r.dollars;
  o["dollars_per_billion_tokens"] = r.dollars_per_billion_tokens;
  o["energy_kwh"] = nullable(r.energy_kwh);
  o["energy_note"] =
      r.energy_note.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.energy_note);
  o["pareto"] = r.pareto;
  o["cheapest"] = &r == summary.cheapest;
  o["fastest"] = &r == summary.fastest;
  return o;
}

}  // namespace

PlanSummary summarize(const std::vector<PlanRow>& rows) {
  PlanSummary s;
  for (const PlanRow& r : rows) {
    if (!r.planned()) continue;
    if (!s.cheapest ||
        std::tie(r.dollars, r.hours) < std::tie(s.cheapest->dollars, s.cheapest->hours))
      s.cheapest = &r;
    if (!s.fastest || std::tie(r.hours, r.dollars) < std::tie(s.fastest->hours, s.fastest->dollars))
      s.fastest = &r;
  }
  return s;
}

std::string summary_line(const std::vector<PlanRow>& rows) {
  std::vector<std::string> parts = summary_parts(rows);
  std::string line = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) line += "; " + parts[i];
  return line;
}

std::string format_table(const std::vector<PlanRow>& rows, const std::string& heading) {
  std::string out = summary_line(rows) + "\n";
  if (!heading.empty()) out += heading + "\n";
  Notes notes;
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"chip", "instance", "n", "chips", "layout", "batch", "GiB/chip", "tokens/s",
                   "time", "cost", "$/Btok", "kWh", "pareto", "evidence"});
  for (const PlanRow& r : rows) {
    if (!r.planned()) continue;
    std::string batch = group_digits(r.tokens_per_step);
    if (r.batch_changed()) batch = fmt::format("{} {}", batch, notes.ref(r.batch_note));
    // fmt rather than "literal" + string: GCC 12 warns falsely (-Wrestrict) on the latter.
    std::string energy =
        std::isnan(r.energy_kwh)
            ? fmt::format("n/a {}", notes.ref(fmt::format("kWh n/a: {}", r.energy_note)))
            : fmt::format("{:.1f}", r.energy_kwh);
    cells.push_back({r.chip, r.instance, std::to_string(r.instances), std::to_string(r.chips),
                     r.layout(), batch, fmt::format("{:.1f}", r.memory_per_chip / kGiB),
                     human_count(r.tokens_per_s), format_duration(r.hours),
                     format_dollars(r.dollars), fmt::format("{:.2f}", r.dollars_per_billion_tokens),
                     energy, r.pareto ? "yes" : "no", r.evidence_label()});
  }
  if (cells.size() > 1) {
    out += aligned(cells);
    out +=
        "(batch: tokens per optimizer step; pareto: no other plan is both cheaper and faster; "
        "kWh: chip power only)\n";
  }
  if (!notes.empty()) out += "\nnotes:\n" + notes.format();

  // Evidence, once per chip: where each chip's throughput came from.
  std::vector<std::string> seen;
  out += "\nevidence (where each chip's tokens/s comes from):\n";
  for (const PlanRow& r : rows) {
    if (std::find(seen.begin(), seen.end(), r.chip) != seen.end()) continue;
    seen.push_back(r.chip);
    out += fmt::format("  {}: {}\n", r.chip, r.evidence_detail);
  }
  out +=
      "  kinds: measured = a Switchyard run on this chip (--measured); simulated = a trn*-sim "
      "run;\n"
      "    published = peak x the MFU of published runs on this chip; borrowed:X = peak x the MFU\n"
      "    of published runs on chip X; roofline = no evidence, peak x an assumed MFU\n";

  struct Section {
    RowStatus status;
    const char* title;
  };
  for (const Section& section :
       {Section{RowStatus::kNoPrice,
                "no price (fits in memory, but no instance in the instance catalog has a price)"},
        Section{RowStatus::kOutOfMemory, "does not fit in memory"},
        Section{RowStatus::kOverMaxChips, "over --max-chips"}}) {
    bool first = true;
    for (const PlanRow& r : rows) {
      if (r.status != section.status) continue;
      if (first) out += fmt::format("\n{}:\n", section.title);
      first = false;
      if (r.instances > 0) {
        out +=
            fmt::format("  {} x {} ({} chips): {}\n", r.instances, r.instance, r.chips, r.why_not);
      } else if (r.instance != "-") {
        out += fmt::format("  {} ({}): {}\n", r.chip, r.instance, r.why_not);
      } else {
        out += fmt::format("  {}: {}\n", r.chip, r.why_not);
      }
    }
  }
  return out;
}

nlohmann::json plan_to_json(const std::vector<PlanRow>& rows) {
  PlanSummary summary = summarize(rows);
  nlohmann::json plans = nlohmann::json::array();
  for (const PlanRow& r : rows) plans.push_back(row_to_json(r, summary));
  return {{"summary", summary_line(rows)},
          {"cheapest", summary.cheapest ? row_to_json(*summary.cheapest, summary) : nullptr},
          {"fastest", summary.fastest ? row_to_json(*summary.fastest, summary) : nullptr},
          {"plans", plans}};
}

std::string plan_to_csv(const std::vector<PlanRow>& rows) {
  PlanSummary summary = summarize(rows);
  std::string out =
      "chip,instance,instances,chips,status,fits,layout,tensor_parallel,data_parallel,zero1,"
      "recompute,micro_batch,batch_tokens_requested,batch_tokens,batch_changed,"
      "memory_gib_per_chip,memory_gib_usable,tokens_per_s,hours,time,dollars,"
      "dollars_per_billion_tokens,energy_kwh,pareto,cheapest,fastest,evidence,"
      "evidence_source_chips,evidence_detail,batch_note,energy_note,why_not\n";
  for (const PlanRow& r : rows) {
    std::string sources;
    for (const std::string& c : r.evidence_source_chips)
      sources += (sources.empty() ? "" : " ") + c;
    const std::string head = fmt::format(
        "{},{},{},{},{},{}", csv_field(r.chip), csv_field(r.instance), r.instances, r.chips,
        status_name(r.status),
        r.status == RowStatus::kOverMaxChips ? std::string() : fmt::format("{}", r.fits));
    const std::string tail = fmt::format("{},{},{}", evidence_name(r.evidence), csv_field(sources),
                                         csv_field(r.evidence_detail));
    if (r.planned()) {
      out += fmt::format(
          "{},{},{},{},{},{},{},{:.0f},{:.0f},{},{:.3f},{:.3f},{:.6g},{:.6g},{},{:.6g},{:.6g},{},"
          "{},{},{},{},{},{},\n",
          head, csv_field(r.layout()), r.tensor_parallel, r.data_parallel, r.zero1, r.recompute,
          r.micro_batch, r.requested_batch_tokens, r.tokens_per_step, r.batch_changed(),
          r.memory_per_chip / kGiB, r.memory_usable / kGiB, r.tokens_per_s, r.hours,
          format_duration(r.hours), r.dollars, r.dollars_per_billion_tokens,
          std::isnan(r.energy_kwh) ? std::string() : fmt::format("{:.6g}", r.energy_kwh), r.pareto,
          &r == summary.cheapest, &r == summary.fastest, tail, csv_field(r.batch_note),
          csv_field(r.energy_note));
    } else {
      // Memory is the least any layout needs; the status and why_not say why the rest is empty.
      out += fmt::format(
          "{},,,,,,,{:.0f},,,{},{:.3f},,,,,,,,,,{},,,{}\n", head, r.requested_batch_tokens,
          r.memory_per_chip > 0 ? fmt::format("{:.3f}", r.memory_per_chip / kGiB) : std::string(),
          r.memory_usable / kGiB, tail, csv_field(r.why_not));
    }
  }
  return out;
}

std::string plan_to_svg(const std::vector<PlanRow>& rows, const std::string& title) {
  std::vector<const PlanRow*> points;
  for (const PlanRow& r : rows) {
    if (r.planned()) points.push_back(&r);
  }
  require(!points.empty(), "no configuration fits in memory on a priced instance: nothing to draw");
  const PlanSummary summary = summarize(rows);
  double hmin = 1e300, hmax = 0, dmin = 1e300, dmax = 0;
  for (const PlanRow* p : points) {
    hmin = std::min(hmin, p->hours);
    hmax = std::max(hmax, p->hours);
    dmin = std::min(dmin, p->dollars);
    dmax = std::max(dmax, p->dollars);
  }
  // The time axis counts in the largest unit in which the quickest plan takes at least one.
  struct Unit {
    const char* name;
    double hours;
  };
  Unit unit{"seconds", 1.0 / 3600};
  for (Unit u : {Unit{"minutes", 1.0 / 60}, Unit{"hours", 1.0}, Unit{"days", 24.0}}) {
    if (hmin >= u.hours) unit = u;
  }
  // Whole decades around the data, so the log axes have round tick labels.
  double lx0 = std::floor(std::log10(hmin / unit.hours)),
         lx1 = std::ceil(std::log10(hmax / unit.hours));
  double ly0 = std::floor(std::log10(dmin)), ly1 = std::ceil(std::log10(dmax));
  if (lx1 <= lx0) lx1 = lx0 + 1;
  if (ly1 <= ly0) ly1 = ly0 + 1;
  const double W = 900, H = 620, left = 90, right = 210, top = 80, bottom = 70;
  auto X = [&](double in_unit) {
    return left + (std::log10(in_unit) - lx0) / (lx1 - lx0) * (W - left - right);
  };
  auto X_hours = [&](double hours) { return X(hours / unit.hours); };
  auto Y = [&](double d) {
    return H - bottom - (std::log10(d) - ly0) / (ly1 - ly0) * (H - top - bottom);
  };

  std::vector<const PlanRow*> chips;  // first row of each chip, for the legend
  for (const PlanRow* p : points) {
    if (std::none_of(chips.begin(), chips.end(),
                     [&](const PlanRow* c) { return c->chip == p->chip; }))
      chips.push_back(p);
  }
  const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                           "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
  auto color = [&](const std::string& chip) {
    size_t i = std::find_if(chips.begin(), chips.end(),
                            [&](const PlanRow* c) { return c->chip == chip; }) -
               chips.begin();
    return palette[i % 8];
  };

  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      W, H);
  s += fmt::format("<text x=\"{}\" y=\"25\" font-size=\"15\">{}</text>\n", left, xml_escape(title));
  double sy = 45;
  for (const std::string& part : summary_parts(rows)) {
    s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>\n", left, sy,
                     xml_escape(part));
    sy += 15;
  }
  // Decades get a grid line and a label; 2x and 5x get a lighter line and a small label.
  for (const LogTick& tick : log_ticks(lx0, lx1)) {
    const double x = X(tick.value);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{}\" stroke=\"{}\"/>\n", x,
                     top, x, H - bottom, tick.major ? "#ccc" : "#eee");
    s += fmt::format(
        "<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{}\">{:g}</text>\n", x,
        H - bottom + 18, tick.major ? 12 : 9, tick.value);
  }
  for (const LogTick& tick : log_ticks(ly0, ly1)) {
    const double y = Y(tick.value);
    s += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"{}\"/>\n",
                     left, y, W - right, y, tick.major ? "#ccc" : "#eee");
    s += fmt::format(
        "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\" font-size=\"{}\">${:g}</text>\n",
        left - 6, y + 4, tick.major ? 12 : 9, tick.value);
  }
  s += fmt::format(
      "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">wall time ({}, log scale)</text>\n",
      (left + W - right) / 2, H - 20, unit.name);
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
      path += fmt::format("{:.1f},{:.1f} ", X_hours(p->hours), Y(p->dollars));
    s += fmt::format(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"black\" stroke-width=\"1.5\" "
        "stroke-dasharray=\"5,3\"/>\n",
        path);
  }
  bool any_changed_batch = false;
  for (const PlanRow* p : points) {
    const double x = X_hours(p->hours), y = Y(p->dollars);
    std::string tip = fmt::format("{} x {} ({} chips, {}): {}, {}; evidence {}", p->instances,
                                  p->instance, p->chips, p->layout(), format_duration(p->hours),
                                  format_dollars(p->dollars), p->evidence_label());
    if (p->batch_changed()) {
      any_changed_batch = true;
      tip += "; " + p->batch_note;
      s += fmt::format(
          "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"9\" fill=\"none\" stroke=\"{}\" "
          "stroke-dasharray=\"2,2\"/>\n",
          x, y, color(p->chip));
    }
    s += fmt::format(
        "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" fill=\"{}\" stroke=\"{}\" "
        "stroke-width=\"1.5\"><title>{}</title></circle>\n",
        x, y, p->pareto ? 6 : 4, p->pareto ? color(p->chip) : "white", color(p->chip),
        xml_escape(tip));
  }
  for (const PlanRow* p : front) {
    std::string label = fmt::format("{}x{}", p->instances, p->instance);
    if (p == summary.cheapest) label += " (cheapest)";
    if (p == summary.fastest) label += " (fastest)";
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\">{}</text>\n",
                     X_hours(p->hours) + 8, Y(p->dollars) - 6, xml_escape(label));
  }
  double ly = top + 10;
  for (const PlanRow* c : chips) {
    s += fmt::format(
        "<circle cx=\"{}\" cy=\"{:.1f}\" r=\"5\" fill=\"{}\"/><text x=\"{}\" "
        "y=\"{:.1f}\">{} ({})</text>\n",
        W - right + 20, ly, color(c->chip), W - right + 32, ly + 4, xml_escape(c->chip),
        xml_escape(c->evidence_label()));
    ly += 20;
  }
  s += fmt::format("<text x=\"{}\" y=\"{:.1f}\">filled, dashed: Pareto front</text>\n",
                   W - right + 14, ly + 10);
  if (any_changed_batch) {
    s += fmt::format("<text x=\"{}\" y=\"{:.1f}\">dotted ring: batch changed</text>\n",
                     W - right + 14, ly + 28);
  }
  s += "</svg>\n";
  return s;
}

}  // namespace switchyard::plan
