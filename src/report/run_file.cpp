#include "report/run_file.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>

#include "io/output.h"
#include "plan/target.h"
#include "io/read_file.h"
#include "mpq/error.h"
#include "quant/scheme.h"

namespace mpq {
namespace {

using nlohmann::json;

// One JSON object read strictly: every key must be in `allowed`; values are checked as they are
// taken. Errors name the file and the path of the key ("run.json: candidates[2].ppl: ...").
class Reader {
 public:
  Reader(const json& j, std::string where, const std::set<std::string>& allowed) : j_(j), where_(std::move(where)) {
    check(j.is_object(), where_, "must be a JSON object");
    for (const auto& [key, value] : j.items()) {
      if (allowed.count(key) == 0) {
        std::string valid;
        for (const auto& a : allowed) valid += (valid.empty() ? "" : ", ") + a;
        fail(where_, "unknown key \"" + key + "\" (valid: " + valid + ")");
      }
    }
  }
  const std::string& where() const { return where_; }
  std::string at(const std::string& key) const { return where_ + "." + key; }
  bool has(const std::string& key) const { return j_.contains(key); }
  // Present and not null.
  bool set(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }
  const json& operator[](const std::string& key) const {
    check(j_.contains(key), where_, "missing \"" + key + "\"");
    return j_[key];
  }
  std::string string(const std::string& key, bool non_empty = true) const {
    const json& v = (*this)[key];
    check(v.is_string(), at(key), "must be a string");
    check(!non_empty || !v.get<std::string>().empty(), at(key), "must not be empty");
    return v.get<std::string>();
  }
  double number(const std::string& key) const {
    const json& v = (*this)[key];
    check(v.is_number(), at(key), "must be a number");
    const double d = v.get<double>();
    check(std::isfinite(d), at(key), "must be finite");
    return d;
  }
  double positive(const std::string& key) const {
    const double d = number(key);
    check(d > 0, at(key), "must be > 0");
    return d;
  }
  uint64_t count(const std::string& key, bool positive = true) const {
    const json& v = (*this)[key];
    check(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0), at(key),
          "must be a non-negative integer");
    const uint64_t n = v.get<uint64_t>();
    check(!positive || n > 0, at(key), "must be > 0");
    return n;
  }
  int small_count(const std::string& key) const {
    const uint64_t n = count(key);
    check(n <= 1u << 30, at(key), "is implausibly large");
    return static_cast<int>(n);
  }
  std::vector<std::string> strings(const std::string& key) const {
    const json& v = (*this)[key];
    check(v.is_array(), at(key), "must be an array of strings");
    std::vector<std::string> out;
    for (const auto& s : v) {
      check(s.is_string(), at(key), "must be an array of strings");
      out.push_back(s.get<std::string>());
    }
    return out;
  }

 private:
  const json& j_;
  std::string where_;
};

const std::set<std::string> kTopKeys = {"format",     "version",    "model",   "budget",     "target",
                                        "calibration", "evaluation", "reference", "sensitivity", "candidates",
                                        "chosen",     "commands"};
const std::set<std::string> kModelKeys = {"path", "arch", "parameters", "linear_weights", "identity"};
const std::set<std::string> kIdentityKeys = {"path", "identity_source", "sha256", "parameter_count", "arch", "n_layers"};
const std::set<std::string> kBudgetKeys = {"bits_per_weight", "bytes"};
const std::set<std::string> kCalibrationKeys = {"files", "samples", "len", "seed"};
const std::set<std::string> kEvaluationKeys = {"text", "protocol", "ctx", "chunks"};
const std::set<std::string> kReferenceKeys = {"ppl", "file_bytes"};
const std::set<std::string> kCandidateKeys = {"name",     "kind",       "method",   "cost",         "scheme",
                                              "plan",     "model",      "status",   "bits_per_weight", "file_bytes",
                                              "ppl",      "kld_mean",   "kld_p99",  "top1_agree",   "decode_tok_s",
                                              "seconds"};
const std::set<std::string> kSecondsKeys = {"quantize", "evaluate"};
const std::set<std::string> kKinds = {"plan", "uniform", "llama.cpp"};

std::string joined(const std::set<std::string>& s) {
  std::string out;
  for (const auto& v : s) out += (out.empty() ? "" : ", ") + v;
  return out;
}

json optional_number(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

RunCandidate candidate_from_json(const json& j, const std::string& where) {
  const Reader r(j, where, kCandidateKeys);
  RunCandidate c;
  c.name = r.string("name");
  c.kind = r.string("kind");
  check(kKinds.count(c.kind) > 0, r.at("kind"), "unknown kind \"" + c.kind + "\" (valid: " + joined(kKinds) + ")");
  c.method = r.string("method");
  if (r.has("cost")) c.cost = r.string("cost", /*non_empty=*/false);
  c.status = r.string("status");
  check(c.status == "done" || (c.status.rfind("failed: ", 0) == 0 && c.status.size() > 8), r.at("status"),
        "unknown status \"" + c.status + "\" (valid: \"done\" or \"failed: <why>\")");
  // Kind-specific keys: a key that belongs to another kind is refused, not ignored.
  check(c.kind == "uniform" || !r.has("scheme"), r.at("scheme"), "only a uniform candidate has a scheme");
  check(c.kind != "llama.cpp" || !r.has("plan"), r.at("plan"), "a llama.cpp candidate has no plan file");
  if (c.kind == "uniform") {
    c.scheme = r.string("scheme");
    parse_scheme(c.scheme, r.at("scheme"));  // refuses unknown formats/quantizers by name
    // Optional: the scheme as applied, the target's fallbacks resolved per tensor.
    if (r.has("plan")) c.plan = r.string("plan");
  }
  if (c.kind == "plan") {
    c.plan = r.string("plan");
    check(r.has("cost"), where, "missing \"cost\" (a plan candidate names its sensitivity cost)");
  }
  c.model = r.string("model", /*non_empty=*/c.done());
  if (c.kind == "llama.cpp" && c.done()) {
    check(c.model.size() > 5 && c.model.substr(c.model.size() - 5) == ".gguf", r.at("model"), "must be a .gguf file");
  }
  // Measurements: required (numbers) when done, null or absent when failed.
  const auto measure = [&](const std::string& key, bool required_when_done) -> std::optional<double> {
    if (!r.set(key)) {
      check(!(c.done() && required_when_done), r.at(key), "missing (a done candidate has every measurement)");
      return std::nullopt;
    }
    return r.number(key);
  };
  c.bits_per_weight = measure("bits_per_weight", true);
  if (r.set("file_bytes")) c.file_bytes = r.count("file_bytes");
  else check(!c.done(), r.at("file_bytes"), "missing (a done candidate has every measurement)");
  c.ppl = measure("ppl", true);
  c.kld_mean = measure("kld_mean", true);
  c.kld_p99 = measure("kld_p99", true);
  c.top1_agree = measure("top1_agree", true);
  c.decode_tok_s = measure("decode_tok_s", false);
  if (c.done()) check(r.has("decode_tok_s"), r.at("decode_tok_s"), "missing (write null when not measured)");
  if (c.bits_per_weight) check(*c.bits_per_weight > 0 && *c.bits_per_weight <= 32, r.at("bits_per_weight"), "must be in (0, 32]");
  if (c.ppl) check(*c.ppl >= 1, r.at("ppl"), "a perplexity is >= 1");
  // KL divergence is >= 0; summed in double it can land a rounding error below.
  if (c.kld_mean) check(*c.kld_mean >= -1e-9, r.at("kld_mean"), "negative KL divergence");
  if (c.kld_p99) check(*c.kld_p99 >= -1e-9, r.at("kld_p99"), "negative KL divergence");
  if (c.top1_agree) check(*c.top1_agree >= 0 && *c.top1_agree <= 1, r.at("top1_agree"), "must be a share in [0, 1]");
  if (c.decode_tok_s) check(*c.decode_tok_s > 0, r.at("decode_tok_s"), "must be > 0 (null when not measured)");
  if (r.set("seconds")) {
    const Reader s(r["seconds"], r.at("seconds"), kSecondsKeys);
    for (const char* key : {"quantize", "evaluate"}) {
      if (!s.set(key)) {
        check(!c.done(), s.at(key), "missing (a done candidate has both times)");
        continue;
      }
      const double v = s.number(key);
      check(v >= 0, s.at(key), "must be >= 0");
      (std::string(key) == "quantize" ? c.seconds_quantize : c.seconds_evaluate) = v;
    }
  } else {
    check(!c.done(), r.at("seconds"), "missing (a done candidate has both times)");
  }
  return c;
}

}  // namespace

const RunCandidate& RunRecord::chosen_candidate() const {
  for (const auto& c : candidates) {
    if (c.name == chosen) return c;
  }
  fail(path.empty() ? "run" : path, "chosen candidate \"" + chosen + "\" is not among the candidates");
}

std::string RunRecord::budget_describe() const {
  char buf[64];
  if (budget_bytes > 0) std::snprintf(buf, sizeof buf, "%llu bytes", static_cast<unsigned long long>(budget_bytes));
  else std::snprintf(buf, sizeof buf, "%g bits/weight", budget_bits_per_weight);
  return buf;
}

json run_to_json(const RunRecord& run) {
  json j;
  j["format"] = kRunFileFormat;
  j["version"] = kRunFileVersion;
  j["model"] = {{"path", run.model_path},
                {"arch", run.arch},
                {"parameters", run.parameters},
                {"linear_weights", run.linear_weights},
                {"identity", run.identity}};
  j["budget"] = run.budget_bytes > 0 ? json{{"bytes", run.budget_bytes}} : json{{"bits_per_weight", run.budget_bits_per_weight}};
  j["target"] = run.target;
  j["calibration"] = {{"files", run.calib_files}, {"samples", run.calib_samples}, {"len", run.calib_len}, {"seed", run.calib_seed}};
  j["evaluation"] = {{"text", run.eval_text}, {"protocol", run.eval_protocol}, {"ctx", run.eval_ctx}, {"chunks", run.eval_chunks}};
  j["reference"] = {{"ppl", run.reference_ppl}, {"file_bytes", run.reference_file_bytes}};
  j["sensitivity"] = run.sensitivity;
  json candidates = json::array();
  for (const auto& c : run.candidates) {
    json e = {{"name", c.name},
              {"kind", c.kind},
              {"method", c.method},
              {"model", c.model},
              {"status", c.status},
              {"bits_per_weight", optional_number(c.bits_per_weight)},
              {"file_bytes", c.file_bytes ? json(*c.file_bytes) : json(nullptr)},
              {"ppl", optional_number(c.ppl)},
              {"kld_mean", optional_number(c.kld_mean)},
              {"kld_p99", optional_number(c.kld_p99)},
              {"top1_agree", optional_number(c.top1_agree)},
              {"decode_tok_s", optional_number(c.decode_tok_s)},
              {"seconds", {{"quantize", optional_number(c.seconds_quantize)}, {"evaluate", optional_number(c.seconds_evaluate)}}}};
    if (c.kind == "plan" || !c.cost.empty()) e["cost"] = c.cost;
    if (c.kind == "uniform") e["scheme"] = c.scheme;
    if (c.kind == "plan" || (c.kind == "uniform" && !c.plan.empty())) e["plan"] = c.plan;
    candidates.push_back(e);
  }
  j["candidates"] = candidates;
  j["chosen"] = run.chosen;
  j["commands"] = run.commands;
  return j;
}

RunRecord run_from_json(const json& j, const std::string& where) {
  RunRecord run;
  run.path = where;
  try {
    const Reader top(j, where, kTopKeys);
    check(top.has("format") && top["format"] == kRunFileFormat, where,
          std::string("not an mpq auto run file (\"format\" is not \"") + kRunFileFormat + "\")");
    check(top["version"] == kRunFileVersion, where,
          "unsupported run file version (expected " + std::to_string(kRunFileVersion) + ")");

    const Reader model(top["model"], where + ": model", kModelKeys);
    run.model_path = model.string("path");
    run.arch = model.string("arch");
    run.parameters = model.count("parameters");
    run.linear_weights = model.count("linear_weights");
    const Reader identity(model["identity"], where + ": model.identity", kIdentityKeys);
    identity.string("sha256");
    run.identity = model["identity"];

    const Reader budget(top["budget"], where + ": budget", kBudgetKeys);
    check(budget.has("bits_per_weight") != budget.has("bytes"), budget.where(),
          "needs exactly one of \"bits_per_weight\" and \"bytes\"");
    if (budget.has("bits_per_weight")) run.budget_bits_per_weight = budget.positive("bits_per_weight");
    else run.budget_bytes = budget.count("bytes");

    run.target = top.string("target");
    run.target = parse_target(run.target, where + ": target").name();

    const Reader calib(top["calibration"], where + ": calibration", kCalibrationKeys);
    run.calib_files = calib.strings("files");
    run.calib_samples = calib.small_count("samples");
    run.calib_len = calib.small_count("len");
    run.calib_seed = calib.count("seed", /*positive=*/false);

    const Reader eval(top["evaluation"], where + ": evaluation", kEvaluationKeys);
    run.eval_text = eval.string("text");
    run.eval_protocol = eval.string("protocol");
    run.eval_ctx = eval.small_count("ctx");
    run.eval_chunks = eval.small_count("chunks");

    const Reader ref(top["reference"], where + ": reference", kReferenceKeys);
    run.reference_ppl = ref.number("ppl");
    check(run.reference_ppl >= 1, ref.at("ppl"), "a perplexity is >= 1");
    run.reference_file_bytes = ref.count("file_bytes");

    run.sensitivity = top.string("sensitivity");
    const json& cands = top["candidates"];
    check(cands.is_array() && !cands.empty(), where + ": candidates", "must be a non-empty array");
    std::set<std::string> names;
    for (size_t i = 0; i < cands.size(); ++i) {
      const std::string w = where + ": candidates[" + std::to_string(i) + "]";
      RunCandidate c = candidate_from_json(cands[i], w);
      check(names.insert(c.name).second, w, "duplicate candidate name \"" + c.name + "\"");
      run.candidates.push_back(std::move(c));
    }
    run.chosen = top.string("chosen");
    const RunCandidate& chosen = run.chosen_candidate();
    check(chosen.done(), where + ": chosen", "candidate \"" + run.chosen + "\" did not finish (" + chosen.status + ")");
    run.commands = top.strings("commands");
  } catch (const nlohmann::json::exception& e) {
    fail(where, std::string("malformed run file: ") + e.what());
  }
  return run;
}

RunRecord read_run_file(const std::string& path) { return run_from_json(read_json_file(path, "run file"), path); }

void write_run_file(const RunRecord& run, const std::string& path) {
  const json j = run_to_json(run);
  run_from_json(j, path);  // never write a file the reader would refuse
  write_file_atomically(path, j.dump(1) + "\n");
}

std::string run_path(const std::string& run_dir, const std::string& relative) {
  const std::filesystem::path p(relative);
  return p.is_absolute() ? relative : (std::filesystem::path(run_dir) / p).string();
}

}  // namespace mpq
