#include "plan/plan.h"
#include "io/read_file.h"
#include "plan/target.h"

#include "format/channel_split.h"
#include "io/output.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "mpq/error.h"
#include "util/json_number.h"

namespace mpq {
namespace {

WeightFormatId format_named(const nlohmann::json& v, const std::string& where) {
  check(v.is_string(), where, "format must be a string");
  const auto id = weight_format_from_name(v.get<std::string>());
  if (!id) {
    std::string names;
    for (const auto& f : weight_formats()) names += std::string(names.empty() ? "" : ", ") + f.name;
    fail(where, "unknown format '" + v.get<std::string>() + "' (valid: " + names + ")");
  }
  return *id;
}

Quantizer quantizer_named(const nlohmann::json& v, const std::string& where) {
  check(v.is_string(), where, "quantizer must be a string");
  return parse_scheme("int4_g128:" + v.get<std::string>(), where).quantizer;
}

}  // namespace

uint64_t PlanBudget::cap_bits(uint64_t weights) const {
  constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();
  if (bytes > 0) return bytes > kNoLimit / 8 ? kNoLimit : bytes * 8;
  const long double cap = std::floor(static_cast<long double>(bits_per_weight) * weights + 1e-6L);
  // A cap beyond any 64-bit count of bits limits nothing; converting it would be undefined.
  if (!(cap < 18446744073709551616.0L)) return kNoLimit;
  return static_cast<uint64_t>(cap);
}

std::string PlanBudget::describe() const {
  if (file_bytes > 0) return std::to_string(file_bytes) + "-byte file (" + std::to_string(bytes) + " bytes of Linear weights)";
  if (bytes > 0) return std::to_string(bytes) + " bytes";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g bits/weight", bits_per_weight);
  return buf;
}

uint64_t plan_entry_bits(const PlanEntry& e, int64_t rows, int64_t cols) {
  if (!e.split) return storage_bits(e.format, rows, cols);
  return split_storage_bits(e.high_format, e.low_format, static_cast<int64_t>(e.high_channels.size()), rows, cols);
}

nlohmann::json plan_to_json(const Plan& plan) {
  nlohmann::json j;
  j["format"] = "mpq-plan";
  j["version"] = kPlanFileVersion;
  j["method"] = plan.method;
  j["cost"] = plan.cost;
  nlohmann::json budget = nlohmann::json::object();
  if (plan.budget.bytes > 0) budget["bytes"] = plan.budget.bytes;
  else budget["bits_per_weight"] = plan.budget.bits_per_weight;
  if (plan.budget.file_bytes > 0) budget["file_bytes"] = plan.budget.file_bytes;
  j["budget"] = budget;
  j["bits_per_weight"] = plan.bits_per_weight;
  j["total_bits"] = plan.total_bits;
  j["total_bytes"] = (plan.total_bits + 7) / 8;
  j["weights"] = plan.weights;
  j["predicted_objective"] = plan.predicted_objective;
  j["solver"] = plan.solver;
  j["sensitivity"] = plan.sensitivity;
  nlohmann::json tensors = nlohmann::json::object();
  for (const auto& [name, e] : plan.tensors) {
    nlohmann::json t{{"format", weight_format(e.format).name}, {"quantizer", quantizer_name(e.quantizer)}};
    if (e.split) {
      t["format"] = weight_format(e.low_format).name;
      t["high_format"] = weight_format(e.high_format).name;
      t["low_format"] = weight_format(e.low_format).name;
      t["high_channels"] = e.high_channels;
    }
    tensors[name] = t;
  }
  j["tensors"] = tensors;
  j["unquantized"] = plan.unquantized;
  j["target"] = plan.target;
  if (plan.head) {
    j["head"] = {{"format", weight_format(plan.head->format).name}, {"quantizer", quantizer_name(plan.head->quantizer)}};
  }
  return j;
}

Plan plan_from_json(const nlohmann::json& j, const std::string& where) {
  Plan p;
  p.path = where;
  // Every access is inside the try: a field of another JSON type (a number where a string
  // belongs, ...) is a malformed plan naming the file, not a bare nlohmann exception.
  try {
    check(j.is_object(), where, "not a JSON object");
    check(j.value("format", std::string()) == "mpq-plan", where, "not an mpq plan (\"format\" is not \"mpq-plan\")");
    check(j.contains("version") && j["version"] == kPlanFileVersion, where,
          "unsupported plan version (expected " + std::to_string(kPlanFileVersion) + ")");
    // A key mpq does not know is refused, never skipped: it may change what the plan means.
    static const std::set<std::string> kKeys = {"format", "version", "method", "cost", "budget", "bits_per_weight",
                                                "total_bits", "total_bytes", "weights", "predicted_objective",
                                                "solver", "sensitivity", "tensors", "unquantized", "head",
                                                "target"};
    for (const auto& [key, value] : j.items()) {
      check(kKeys.count(key) > 0, where, "unknown key \"" + key + "\" (not an mpq plan key)");
    }
    p.method = j.value("method", std::string());
    p.cost = j.value("cost", std::string());
    check(j.contains("budget") && j["budget"].is_object(), where, "missing \"budget\" object");
    const auto& b = j["budget"];
    const bool has_bits = b.contains("bits_per_weight"), has_bytes = b.contains("bytes");
    check(has_bits != has_bytes, where, "budget needs exactly one of \"bits_per_weight\" and \"bytes\"");
    if (has_bits) {
      p.budget.bits_per_weight = b["bits_per_weight"].get<double>();
      check(p.budget.bits_per_weight > 0 && std::isfinite(p.budget.bits_per_weight), where,
            "budget.bits_per_weight must be a positive number");
    } else {
      p.budget.bytes = static_cast<uint64_t>(json_integer(b["bytes"], 1, INT64_MAX, where, "budget.bytes"));
    }
    for (const auto& [key, value] : b.items()) {
      check(key == "bits_per_weight" || key == "bytes" || key == "file_bytes", where,
            "unknown budget key \"" + key + "\"");
    }
    if (b.contains("file_bytes")) {
      check(has_bytes, where, "budget.file_bytes needs budget.bytes (the Linear share the planner derived)");
      p.budget.file_bytes = static_cast<uint64_t>(json_integer(b["file_bytes"], 1, INT64_MAX, where, "budget.file_bytes"));
    }
    p.bits_per_weight = j.value("bits_per_weight", 0.0);
    const auto count = [&](const char* key) -> uint64_t {
      if (!j.contains(key)) return 0;
      return static_cast<uint64_t>(json_integer(j[key], 0, INT64_MAX, where, key));
    };
    p.total_bits = count("total_bits");
    p.weights = count("weights");
    p.predicted_objective = j.value("predicted_objective", 0.0);
    if (j.contains("solver")) p.solver = j["solver"];
    if (j.contains("sensitivity")) p.sensitivity = j["sensitivity"];
    check(j.contains("tensors") && j["tensors"].is_object(), where, "missing \"tensors\" object");
    for (const auto& [name, t] : j["tensors"].items()) {
      const std::string w = where + ": tensor " + name;
      check(t.is_object(), w, "entry must be an object");
      for (const auto& [key, value] : t.items()) {
        check(key == "format" || key == "quantizer" || key == "high_format" || key == "low_format" ||
                  key == "high_channels",
              w, "unknown key \"" + key + "\"");
      }
      PlanEntry e;
      check(t.contains("format"), w, "missing \"format\"");
      e.format = format_named(t["format"], w);
      if (t.contains("quantizer")) e.quantizer = quantizer_named(t["quantizer"], w);
      const bool any_split = t.contains("high_format") || t.contains("low_format") || t.contains("high_channels");
      if (any_split) {
        check(t.contains("high_format") && t.contains("low_format") && t.contains("high_channels"), w,
              "a channel-split entry needs high_format, low_format and high_channels");
        e.split = true;
        e.high_format = format_named(t["high_format"], w);
        e.low_format = format_named(t["low_format"], w);
        check(t["high_channels"].is_array(), w, "high_channels must be an array");
        // Row indices, ints in ModuleChoice::high_rows; validate_plan checks them against the rows.
        for (const auto& c : t["high_channels"]) e.high_channels.push_back(json_integer(c, 0, INT32_MAX, w, "high_channels entry"));
        std::sort(e.high_channels.begin(), e.high_channels.end());
        e.format = e.low_format;
      }
      p.tensors[name] = std::move(e);
    }
    if (j.contains("unquantized")) {
      check(j["unquantized"].is_array(), where, "\"unquantized\" must be an array of names");
      for (const auto& n : j["unquantized"]) {
        check(n.is_string(), where, "\"unquantized\" must be an array of names");
        p.unquantized.push_back(n.get<std::string>());
      }
    }
    if (j.contains("target")) {
      check(j["target"].is_string(), where, "\"target\" must be a string");
      p.target = parse_target(j["target"].get<std::string>(), where).name();
    }
    if (j.contains("head")) {
      const auto& h = j["head"];
      check(h.is_object() && h.contains("format"), where, "\"head\" must be an object with a \"format\"");
      for (const auto& [key, value] : h.items()) {
        check(key == "format" || key == "quantizer", where + ": head", "unknown key \"" + key + "\"");
      }
      Scheme head;
      head.format = format_named(h["format"], where + ": head");
      if (h.contains("quantizer")) head.quantizer = quantizer_named(h["quantizer"], where + ": head");
      p.head = head;
    }
  } catch (const nlohmann::json::exception& e) {
    fail(where, std::string("malformed plan: ") + e.what());
  }
  return p;
}

void write_plan(const Plan& plan, const std::string& path) {
  write_file_atomically(path, plan_to_json(plan).dump(1) + "\n");
}

Plan read_plan(const std::string& path) {
  return plan_from_json(read_json_file(path, "plan file"), path);
}

void validate_plan(const Plan& plan, const std::vector<PlanTensorShape>& tensors) {
  const std::string where = plan.path.empty() ? "plan" : plan.path;
  std::map<std::string, const PlanTensorShape*> model;
  for (const auto& t : tensors) model[t.name] = &t;
  std::set<std::string> unq;
  for (const auto& n : plan.unquantized) {
    check(model.count(n) > 0, where, "unquantized tensor '" + n + "' is not a Linear tensor of the model");
    check(plan.tensors.count(n) == 0, where, "tensor '" + n + "' is both planned and unquantized");
    check(unq.insert(n).second, where, "tensor '" + n + "' is listed twice in unquantized");
  }
  uint64_t bits = 0, weights = 0;
  for (const auto& [name, e] : plan.tensors) {
    auto it = model.find(name);
    check(it != model.end(), where, "tensor '" + name + "' is not a Linear tensor of the model");
    const PlanTensorShape& s = *it->second;
    if (e.split) {
      int64_t prev = -1;
      for (int64_t c : e.high_channels) {
        check(c >= 0 && c < s.rows, where,
              "tensor '" + name + "': channel " + std::to_string(c) + " out of range [0, " + std::to_string(s.rows) + ")");
        check(c != prev, where, "tensor '" + name + "': channel " + std::to_string(c) + " listed twice");
        prev = c;
      }
    }
    bits += plan_entry_bits(e, s.rows, s.cols);
    weights += static_cast<uint64_t>(s.rows) * static_cast<uint64_t>(s.cols);
  }
  for (const auto& t : tensors)
    check(plan.tensors.count(t.name) || unq.count(t.name), where,
          "model tensor '" + t.name + "' is missing from the plan (list it in tensors or unquantized)");
  const uint64_t cap = plan.budget.cap_bits(weights);
  if (bits > cap) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "exceeds its budget of %s: %llu bits (%.6f bits/weight) > %llu bits",
                  plan.budget.describe().c_str(), static_cast<unsigned long long>(bits),
                  weights ? static_cast<double>(bits) / static_cast<double>(weights) : 0.0,
                  static_cast<unsigned long long>(cap));
    fail(where, buf);
  }
}

void check_plan_model(const Plan& plan, const nlohmann::json& identity) {
  const std::string where = plan.path.empty() ? "plan" : plan.path;
  if (!plan.sensitivity.is_object() || !plan.sensitivity.contains("model")) return;
  const auto& m = plan.sensitivity["model"];
  if (!m.is_object() || !m.contains("sha256") || !identity.contains("sha256")) return;
  check(m["sha256"] == identity["sha256"], where,
        "made for another model (sha256 " + m["sha256"].dump() + " of " + m.value("path", std::string("?")) +
            ", this model has " + identity["sha256"].dump() + ")");
}

ModuleChoice plan_module_choice(const Plan& plan, const std::string& module) {
  const std::string where = plan.path.empty() ? "plan" : plan.path;
  auto it = plan.tensors.find(module);
  check(it != plan.tensors.end(), where, "no entry for tensor '" + module + "'");
  const PlanEntry& e = it->second;
  ModuleChoice choice = ModuleChoice::whole(e.format, e.quantizer);
  if (e.split) {
    choice.split = true;
    choice.format = e.low_format;
    choice.high_format = e.high_format;
    choice.high_rows.assign(e.high_channels.begin(), e.high_channels.end());
  }
  return choice;
}

uint64_t parse_byte_size(const std::string& text, const std::string& where) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (const std::exception&) {
    fail(where, "'" + text + "' is not a size (e.g. 90MB, 512MiB, 123456)");
  }
  std::string unit = text.substr(pos);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double mul = 0;
  if (unit.empty() || unit == "b") mul = 1;
  else if (unit == "kb" || unit == "k") mul = 1e3;
  else if (unit == "mb" || unit == "m") mul = 1e6;
  else if (unit == "gb" || unit == "g") mul = 1e9;
  else if (unit == "kib") mul = 1024.0;
  else if (unit == "mib") mul = 1024.0 * 1024;
  else if (unit == "gib") mul = 1024.0 * 1024 * 1024;
  check(mul > 0 && v > 0 && std::isfinite(v), where, "'" + text + "' is not a positive size (units: B, kB, MB, GB, KiB, MiB, GiB)");
  return static_cast<uint64_t>(std::floor(v * mul));
}

}  // namespace mpq
