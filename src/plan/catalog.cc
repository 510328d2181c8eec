#include "plan/catalog.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace switchyard::plan {

namespace {

using nlohmann::json;

const json& member(const json& object, const char* key, const std::string& where) {
  if (!object.is_object()) fail("{}: expected a JSON object", where);
  if (!object.contains(key)) fail("{}: missing field '{}'", where, key);
  return object.at(key);
}

std::string string_field(const json& object, const char* key, const std::string& where) {
  const json& value = member(object, key, where);
  if (!value.is_string() || value.get<std::string>().empty()) {
    fail("{}: field '{}' must be a non-empty string, got {}", where, key, value.dump());
  }
  return value.get<std::string>();
}

// A figure: {"value": positive number, "source": string, "date": string, "note"?: string}.
Figure figure_field(const json& object, const char* key, const std::string& where) {
  std::string at = where + "." + key;
  const json& value = member(object, key, where);
  if (!value.is_object()) {
    fail("{}: expected an object {{\"value\", \"source\", \"date\"}}, got {}", at, value.dump());
  }
  Figure f;
  const json& v = member(value, "value", at);
  if (!v.is_number()) fail("{}: 'value' must be a number, got {}", at, v.dump());
  f.value = v.get<double>();
  if (!std::isfinite(f.value) || f.value <= 0)
    fail("{}: 'value' must be positive, got {}", at, v.dump());
  f.source = string_field(value, "source", at);
  f.date = string_field(value, "date", at);
  if (value.contains("note")) {
    if (!value["note"].is_string()) fail("{}: 'note' must be a string", at);
    f.note = value["note"].get<std::string>();
  }
  return f;
}

std::optional<Figure> optional_figure(const json& object, const char* key,
                                      const std::string& where) {
  if (!object.contains(key) || object.at(key).is_null()) return std::nullopt;
  return figure_field(object, key, where);
}

const json& array_field(const json& object, const char* key, const std::string& where) {
  const json& value = member(object, key, where);
  if (!value.is_array()) fail("{}: field '{}' must be an array", where, key);
  return value;
}

// The chip names of a family's 'measured_on' list.
std::vector<std::string> chip_names(const json& object, const std::string& where) {
  std::vector<std::string> names;
  for (const json& chip : array_field(object, "measured_on", where)) {
    if (!chip.is_string() || chip.get<std::string>().empty()) {
      fail("{}: 'measured_on' must list chip names, got {}", where, chip.dump());
    }
    names.push_back(chip.get<std::string>());
  }
  return names;
}

// Every chip in `measured_on` is in the catalog and of `family`.
void check_measured_on(const Catalog& catalog, const std::string& what, const std::string& family,
                       const std::vector<std::string>& measured_on) {
  for (const std::string& name : measured_on) {
    const ChipSpec* chip = nullptr;
    for (const ChipSpec& c : catalog.chips) {
      if (c.name == name) chip = &c;
    }
    require(chip != nullptr,
            "chip catalog: {} '{}' is measured_on chip '{}', which is not in the catalog", what,
            family, name);
    require(chip->family == family,
            "chip catalog: {} '{}' is measured_on chip '{}', which is of family '{}'", what, family,
            name, chip->family);
  }
}

}  // namespace

const ChipSpec& Catalog::chip(const std::string& name) const {
  for (const ChipSpec& c : chips) {
    if (c.name == name) return c;
  }
  std::string known;
  for (const ChipSpec& c : chips) known += (known.empty() ? "" : ", ") + c.name;
  fail("unknown chip '{}' (the catalog has: {})", name, known);
}

const FamilyEfficiency* Catalog::family(const std::string& name) const {
  for (const FamilyEfficiency& f : families) {
    if (f.family == name) return &f;
  }
  return nullptr;
}

std::vector<const InstanceSpec*> Catalog::instances_of(const std::string& chip) const {
  std::vector<const InstanceSpec*> result;
  for (const InstanceSpec& i : instances) {
    if (i.chip == chip) result.push_back(&i);
  }
  return result;
}

void Catalog::validate() const {
  std::set<std::string> names;
  for (const ChipSpec& c : chips) {
    require(names.insert(c.name).second, "chip catalog: chip '{}' is listed twice", c.name);
  }
  std::set<std::string> instance_names;
  for (const InstanceSpec& i : instances) {
    require(instance_names.insert(i.name).second, "instance catalog: instance '{}' is listed twice",
            i.name);
    require(names.count(i.chip) == 1,
            "instance catalog: instance '{}' names chip '{}', which is not in the chip catalog",
            i.name, i.chip);
  }
  std::set<std::string> families_seen;
  for (const FamilyEfficiency& f : families) {
    require(families_seen.insert(f.family).second, "chip catalog: family '{}' is listed twice",
            f.family);
    require(f.mfu.value > 0 && f.mfu.value <= 1,
            "chip catalog: family '{}' has MFU {} (expected a fraction in (0, 1])", f.family,
            f.mfu.value);
    check_measured_on(*this, "family", f.family, f.measured_on);
  }
  std::set<std::string> serving_seen;
  for (const ServingFamily& f : serving_families) {
    require(serving_seen.insert(f.family).second,
            "chip catalog: serving family '{}' is listed twice", f.family);
    require(f.efficiency.value > 0 && f.efficiency.value <= 1,
            "chip catalog: serving family '{}' has efficiency {} (expected a fraction in (0, 1])",
            f.family, f.efficiency.value);
    require(!f.measured_on.empty(), "chip catalog: serving family '{}' names no measured_on chip",
            f.family);
    check_measured_on(*this, "serving family", f.family, f.measured_on);
  }
}

const ServingFamily* Catalog::serving_family(const std::string& name) const {
  for (const ServingFamily& f : serving_families) {
    if (f.family == name) return &f;
  }
  return nullptr;
}

void parse_chips(const json& root, const std::string& what, Catalog& catalog) {
  if (!root.is_object()) fail("{}: expected a JSON object with 'chips'", what);
  if (root.contains("families")) {
    const json& families = array_field(root, "families", what);
    for (size_t i = 0; i < families.size(); ++i) {
      std::string where = fmt::format("{}: families[{}]", what, i);
      FamilyEfficiency f;
      f.family = string_field(families[i], "family", where);
      f.mfu = figure_field(families[i], "mfu", where);
      if (families[i].contains("measured_on")) f.measured_on = chip_names(families[i], where);
      catalog.families.push_back(std::move(f));
    }
  }
  if (root.contains("serving_families")) {
    const json& families = array_field(root, "serving_families", what);
    for (size_t i = 0; i < families.size(); ++i) {
      std::string where = fmt::format("{}: serving_families[{}]", what, i);
      ServingFamily f;
      f.family = string_field(families[i], "family", where);
      f.efficiency = figure_field(families[i], "efficiency", where);
      f.measured_on = chip_names(families[i], where);
      catalog.serving_families.push_back(std::move(f));
    }
  }
  const json& chips = array_field(root, "chips", what);
  for (size_t i = 0; i < chips.size(); ++i) {
    const json& c = chips[i];
    std::string where = fmt::format("{}: chips[{}]", what, i);
    ChipSpec chip;
    chip.name = string_field(c, "name", where);
    where += " (" + chip.name + ")";
    chip.display = string_field(c, "display", where);
    chip.family = string_field(c, "family", where);
    chip.bf16_tflops = figure_field(c, "bf16_tflops", where);
    chip.fp8_tflops = optional_figure(c, "fp8_tflops", where);
    chip.fp32_tflops = optional_figure(c, "fp32_tflops", where);
    chip.mxfp4_tflops = optional_figure(c, "mxfp4_tflops", where);
    chip.memory_gib = figure_field(c, "memory_gib", where);
    chip.memory_gbs = figure_field(c, "memory_gbs", where);
    chip.chip_to_chip_gbs = figure_field(c, "chip_to_chip_gbs", where);
    if (c.contains("chip_to_chip_bidirectional")) {
      if (!c["chip_to_chip_bidirectional"].is_boolean()) {
        fail("{}: field 'chip_to_chip_bidirectional' must be true or false", where);
      }
      chip.chip_to_chip_bidirectional = c["chip_to_chip_bidirectional"].get<bool>();
    }
    chip.power_w = optional_figure(c, "power_w", where);
    catalog.chips.push_back(std::move(chip));
  }
}

void parse_instances(const json& root, const std::string& what, Catalog& catalog) {
  if (!root.is_object()) fail("{}: expected a JSON object with 'instances'", what);
  const json& instances = array_field(root, "instances", what);
  for (size_t i = 0; i < instances.size(); ++i) {
    const json& o = instances[i];
    std::string where = fmt::format("{}: instances[{}]", what, i);
    InstanceSpec inst;
    inst.name = string_field(o, "name", where);
    where += " (" + inst.name + ")";
    inst.chip = string_field(o, "chip", where);
    const json& chips = member(o, "chips", where);
    if (!chips.is_number_integer() || chips.get<int64_t>() <= 0 || chips.get<int64_t>() > 4096) {
      fail("{}: field 'chips' must be a positive integer, got {}", where, chips.dump());
    }
    inst.chips = chips.get<int>();
    inst.price_per_hour = figure_field(o, "price_per_hour", where);
    inst.region = string_field(o, "region", where);
    inst.network_gbps = figure_field(o, "network_gbps", where);
    catalog.instances.push_back(std::move(inst));
  }
}

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot open {}", path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return json::parse(buffer.str());
  } catch (const json::parse_error& e) {
    fail("{}: malformed JSON: {}", path, e.what());
  }
}

Catalog load_catalog(const std::string& chips_path, const std::string& instances_path) {
  Catalog catalog;
  parse_chips(read_json_file(chips_path), chips_path, catalog);
  parse_instances(read_json_file(instances_path), instances_path, catalog);
  catalog.validate();
  return catalog;
}

std::string default_catalog_dir() {
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("SWITCHYARD_CATALOG_DIR"); env && *env)
    candidates.emplace_back(env);
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    exe[n] = '\0';
    fs::path dir = fs::path(exe).parent_path();
    candidates.push_back(dir / ".." / "data" / "catalog");
    candidates.push_back(dir / ".." / ".." / "data" / "catalog");
  }
  candidates.push_back(fs::current_path() / "data" / "catalog");
  std::string looked;
  for (const fs::path& p : candidates) {
    std::error_code ec;
    if (fs::is_regular_file(p / "chips.json", ec)) return fs::weakly_canonical(p).string();
    looked += (looked.empty() ? "" : ", ") + p.string();
  }
  fail(
      "cannot find the catalog directory (looked in {}); pass --catalog-dir or set "
      "SWITCHYARD_CATALOG_DIR",
      looked);
}

}  // namespace switchyard::plan
