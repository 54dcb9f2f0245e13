#include "auto/auto.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "auto/candidates.h"
#include "auto/measure.h"
#include "calib/sensitivity_file.h"
#include "io/model_writer.h"
#include "io/read_file.h"
#include "mpq/error.h"
#include "plan/planner.h"
#include "plan/target.h"
#include "quant/quantize.h"
#include "report/report.h"
#include "report/run_file.h"

namespace mpq {
namespace fs = std::filesystem;
namespace {

constexpr const char* kStateFormat = "mpq-auto-state";
constexpr int kStateVersion = 1;
constexpr const char* kStateFile = "auto-state.json";

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string clock_text(double seconds) {
  char buf[32];
  const int s = static_cast<int>(std::lround(seconds));
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", s / 3600, s / 60 % 60);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", s / 60, s % 60);
  return buf;
}

// Progress lines on stderr: "[auto] 3/9 knapsack-fisher: quantizing  (4m10s elapsed, about 6m20s
// left)". The estimate of what is left counts candidates only, at the mean time of those measured
// in this run so far (the analysis and the reference pass have their own progress lines).
class Progress {
 public:
  explicit Progress(bool on) : on_(on), t0_(std::chrono::steady_clock::now()) {}
  void note(const std::string& what) const {
    if (on_) std::fprintf(stderr, "[auto] %s  (%s elapsed)\n", what.c_str(), clock_text(seconds_since(t0_)).c_str());
  }
  // Which candidates will be quantized and measured in this run (not failed, not measured
  // earlier, not the same allocation as an earlier one): the estimate counts those.
  void set_work(std::vector<char> to_measure) { work_ = std::move(to_measure); }
  // A line about candidate `index` (0-based); `running`: it is being measured now.
  void candidate(int index, const std::string& what, bool running = false) const {
    if (!on_) return;
    std::string eta;
    if (measured_ > 0) {
      const double each = measured_seconds_ / measured_;
      double left = running ? std::max(0.0, each - seconds_since(current_start_)) : 0.0;
      for (size_t j = static_cast<size_t>(index) + 1; j < work_.size(); ++j) left += work_[j] ? each : 0.0;
      eta = ", about " + clock_text(left) + " left";
    }
    std::fprintf(stderr, "[auto] %d/%zu %s  (%s elapsed%s)\n", index + 1, work_.size(), what.c_str(),
                 clock_text(seconds_since(t0_)).c_str(), eta.c_str());
  }
  void start_candidate() { current_start_ = std::chrono::steady_clock::now(); }
  // A candidate measured in this run (not read back): its time goes into the estimate.
  void measured() {
    measured_seconds_ += seconds_since(current_start_);
    ++measured_;
  }

 private:
  bool on_;
  std::vector<char> work_;
  int measured_ = 0;
  double measured_seconds_ = 0;
  std::chrono::steady_clock::time_point t0_, current_start_;
};

nlohmann::json read_json_if(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return nullptr;
  return read_json_file(p.string());
}

bool is_ours(const fs::path& run_dir) {
  std::error_code ec;
  const fs::path state = run_dir / kStateFile;
  return fs::is_regular_file(state, ec) && json_with_format(kStateFormat)(state.string());
}

// The settings that decide a run's results: what --resume requires to be equal. (The commands,
// progress, cache and work directory do not change any number.)
nlohmann::json run_settings(const Model& model, const std::string& model_path, const AutoOptions& o,
                            const std::vector<std::string>& methods, const Target& target, bool gguf_out) {
  return {{"analysis", analysis_settings(model, model_path, o.analysis)},
          {"budget", o.budget.bytes > 0 ? nlohmann::json{{"bytes", o.budget.bytes}}
                                        : nlohmann::json{{"bits_per_weight", o.budget.bits_per_weight}}},
          {"target", target.name()},
          {"output", gguf_out ? "gguf" : "directory"},
          {"methods", methods},
          {"quantizer", quantizer_name(o.quantizer)},
          {"gptq", {{"act_order", o.quantize.gptq_act_order}, {"damp", o.quantize.gptq_damp}}},
          {"head", o.head ? o.head->name() : "keep"},
          {"evaluation", {{"text", o.eval_text}, {"ctx", o.eval_ctx}, {"chunks", o.eval_chunks},
                          {"speed", o.measure_speed}}}};
}

// The names of the top-level settings that differ ("budget, target").
std::string differing(const nlohmann::json& a, const nlohmann::json& b) {
  std::string out;
  for (const auto& [key, value] : a.items()) {
    if (!b.contains(key) || b[key] != value) out += (out.empty() ? "" : ", ") + key;
  }
  for (const auto& [key, value] : b.items()) {
    if (!a.contains(key)) out += (out.empty() ? "" : ", ") + key;
  }
  return out.empty() ? "format" : out;
}

// The candidate's row of run.json from its measurements (or failure).
RunCandidate run_candidate(const AutoCandidate& c, const nlohmann::json& eval, const std::string& model_rel) {
  RunCandidate r;
  r.name = c.name;
  r.kind = c.kind;
  r.method = c.method;
  r.cost = c.cost;
  r.scheme = c.scheme;
  const bool done = eval.is_object() && eval.value("status", "") == "done";
  if (c.kind == "plan" || done) r.plan = "plans/" + c.name + ".json";
  if (!done) {
    r.status = !c.failure.empty() ? "failed: " + c.failure : eval.value("status", std::string("failed: not measured"));
    return r;
  }
  const CandidateMeasurement m = CandidateMeasurement::from_json(eval, "evals/" + c.name + ".json");
  r.status = "done";
  r.model = model_rel;
  r.bits_per_weight = m.bits_per_weight;
  r.file_bytes = m.file_bytes;
  r.ppl = m.ppl;
  r.kld_mean = m.kld_mean;
  r.kld_p99 = m.kld_p99;
  r.top1_agree = m.top1_agree;
  r.decode_tok_s = m.decode_tok_s;
  r.seconds_quantize = m.seconds_quantize;
  r.seconds_evaluate = m.seconds_evaluate;
  return r;
}

// What a plan puts where (tensors, kept tensors, head), without its provenance: equal keys,
// equal quantized models.
std::string allocation_key(const Plan& plan) {
  const nlohmann::json j = plan_to_json(plan);
  return nlohmann::json{{"tensors", j["tensors"]}, {"unquantized", j.value("unquantized", nlohmann::json())},
                        {"head", j.value("head", nlohmann::json())}}
      .dump();
}

// Copies the file `from` to `to` through a temporary beside it (io/output.h rule 1).
void copy_file_atomically(const fs::path& from, const std::string& to) {
  StagedFile staged(to);
  std::error_code ec;
  fs::copy_file(from, staged.temp(), fs::copy_options::overwrite_existing, ec);
  if (ec) fail(to, "cannot copy " + from.string() + ": " + ec.message());
  staged.commit();
}

}  // namespace

std::string default_cache_dir() {
  if (const char* d = std::getenv("MPQ_CACHE_DIR"); d != nullptr && *d) return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d != nullptr && *d) return std::string(d) + "/mpq";
  if (const char* d = std::getenv("HOME"); d != nullptr && *d) return std::string(d) + "/.cache/mpq";
  return "";
}

std::vector<std::string> default_auto_methods() { return {"knapsack", "channels", "tiers", "rule", "bqp", "uniform"}; }

std::string auto_report_path(const std::string& out) {
  if (is_gguf_output(out)) return out.substr(0, out.size() - 5) + ".report.html";
  return (fs::path(out) / "report.html").string();
}

AutoResult run_auto(const std::string& model_path, const LoadOptions& load, const AutoOptions& o, const std::string& out) {
  check(o.budget.bits_per_weight > 0 || o.budget.bytes > 0, "--bits/--size", "give a budget");
  const bool gguf_out = is_gguf_output(out);
  const Target target = parse_target(o.target.empty() ? (gguf_out ? "llama.cpp" : "compressed-tensors") : o.target);
  const bool llama = std::find(target.engines.begin(), target.engines.end(), Engine::LlamaCpp) != target.engines.end();
  if (gguf_out && target.engines != std::vector<Engine>{Engine::LlamaCpp}) {
    fail("--target", "a .gguf output (" + out + ") is for llama.cpp: use --target llama.cpp (or leave it out), not " +
                         target.name());
  }
  if (!gguf_out && llama) fail("--out", "target llama.cpp writes a GGUF file: give --out NAME.gguf, not " + out);
  check(!o.eval_text.empty(), "--eval-text", "no evaluation text given and the default is missing");
  check(o.eval_chunks > 0 && o.eval_ctx >= 2, "--eval-chunks", "need at least one chunk of at least 2 tokens");
  OutputRules rules = o.rules;
  rules.inputs.push_back(model_path);
  rules.inputs.push_back(o.eval_text);
  for (const auto& f : o.analysis.calibration.text_paths) rules.inputs.push_back(f);
  // Everything that can be refused is refused before any work: OUT, its report, the run directory.
  const std::string report_out = auto_report_path(out);
  if (gguf_out) {
    check_output_file(out, rules, is_mpq_gguf);
    check_output_file(report_out, rules, file_with_magic(kReportMagic));
  } else {
    check_output_dir(out, rules);
  }
  const fs::path run_dir = o.work_dir.empty() ? fs::path(out + ".run") : fs::path(o.work_dir);
  std::error_code ec;
  if (fs::exists(run_dir, ec)) {
    if (!is_ours(run_dir) && !(fs::is_directory(run_dir, ec) && fs::is_empty(run_dir, ec))) {
      fail(run_dir.string(), "exists and is not an mpq auto run directory (no " + std::string(kStateFile) +
                                 "): refusing to write there");
    }
    if (is_ours(run_dir) && !o.resume) {
      fail(run_dir.string(), "holds an earlier run: continue it with --resume, or choose another --out / --work-dir");
    }
  }
  check_output_dir(run_dir.string(), {rules.inputs, true});  // inputs, current directory
  const std::vector<std::string> methods = o.methods.empty() ? default_auto_methods() : o.methods;

  Model model = load_model(model_path, load);
  std::vector<std::pair<int64_t, int64_t>> shapes;
  uint64_t linear_weights = 0;
  for (const Linear* l : model.linears()) {
    shapes.emplace_back(l->weights->out_features(), l->weights->in_features());
    linear_weights += static_cast<uint64_t>(l->weights->out_features()) * static_cast<uint64_t>(l->weights->in_features());
  }
  AnalysisRequest analysis = o.analysis;
  if (analysis.options.formats.empty()) analysis.options.formats = analysis_formats_for(target, shapes);
  AutoOptions opts = o;
  opts.analysis = analysis;

  // ---- the run's settings: written first, compared on --resume
  const nlohmann::json settings = run_settings(model, model_path, opts, methods, target, gguf_out);
  const fs::path state_path = run_dir / kStateFile;
  if (o.resume && is_ours(run_dir)) {
    const nlohmann::json earlier = read_json_file(state_path.string(), "run state");
    if (earlier.value("settings", nlohmann::json()) != settings) {
      fail(run_dir.string(), "holds a run with other settings (differing: " +
                                 differing(earlier.value("settings", nlohmann::json::object()), settings) +
                                 "): rerun it with the same arguments, or choose another --out / --work-dir");
    }
  }
  for (const char* sub : {"plans", "candidates", "evals"}) fs::create_directories(run_dir / sub, ec);
  if (ec) fail(run_dir.string(), "cannot create the run directory: " + ec.message());
  write_file_atomically(state_path.string(),
                        nlohmann::json{{"format", kStateFormat}, {"version", kStateVersion}, {"settings", settings}}.dump(1) + "\n");

  Progress progress(o.progress);
  // ---- 1. sensitivity (cached by the analysis settings)
  const nlohmann::json a_settings = settings["analysis"];
  const std::string key = sha256_hex(a_settings.dump().data(), a_settings.dump().size()).substr(0, 16);
  const fs::path s_json = run_dir / "sensitivity.json";
  if (!fs::exists(s_json, ec)) {
    fs::path cached;
    if (!o.cache_dir.empty()) cached = fs::path(o.cache_dir) / ("sensitivity-" + key + ".json");
    if (!cached.empty() && fs::exists(cached, ec) && json_with_format("mpq-sensitivity")(cached.string())) {
      progress.note("sensitivity: reusing " + cached.string());
    } else {
      progress.note("sensitivity analysis (" + a_settings["methods"].dump() + " over " +
                    std::to_string(a_settings["formats"].size()) + " formats)");
      const fs::path dest = cached.empty() ? s_json : cached;
      if (!cached.empty()) fs::create_directories(cached.parent_path(), ec);
      AnalysisRequest request = analysis;
      request.rules = rules;
      request.options.progress = o.progress;
      request.resume = o.resume;
      run_analysis(model, model_path, request, dest.string());
    }
    if (!cached.empty()) {
      write_file_atomically(sensitivity_sidecar_path(s_json.string()),
                            read_file(sensitivity_sidecar_path(cached.string()), "sensitivity sidecar"));
      write_file_atomically(s_json.string(), read_file(cached.string(), "sensitivity file"));
    }
  }
  const SensitivityInput input = read_sensitivity_input(s_json.string(), /*load_channels=*/true);
  check(input.model.value("sha256", std::string()) == settings["analysis"]["model"].value("sha256", std::string()),
        s_json.string(), "is the sensitivity file of another model");

  // ---- 2. the reference: the unquantized model's log-probs on the evaluation text
  EvalSettings eval;
  eval.text_path = o.eval_text;
  eval.text = read_file(o.eval_text, "evaluation text");
  eval.ctx = o.eval_ctx;
  eval.chunks = o.eval_chunks;
  eval.measure_speed = o.measure_speed;
  eval.progress = o.progress;
  const fs::path ref_logits = run_dir / "reference.logits";
  const fs::path ref_json = run_dir / "reference.json";
  nlohmann::json ref_j = read_json_if(ref_json);
  ReferenceMeasurement reference;
  if (ref_j.is_null() || !fs::exists(ref_logits, ec)) {
    progress.note("reference: the unquantized model on " + std::to_string(o.eval_chunks) + " chunks of " +
                  std::to_string(o.eval_ctx) + " tokens");
    reference = measure_reference(model, model_path, eval, ref_logits.string());
    write_file_atomically(ref_json.string(), reference.to_json().dump(1) + "\n");
  } else {
    reference = ReferenceMeasurement::from_json(ref_j, ref_json.string());
  }
  char line[256];
  std::snprintf(line, sizeof line, "reference perplexity %.4f", reference.ppl);
  progress.note(line);

  // ---- 3. candidates: plan, quantize, write, reload, evaluate
  CandidateRequest creq;
  creq.budget = o.budget;
  creq.target = target;
  creq.methods = methods;
  creq.cost = planner_cost(analysis.options.methods.kld, analysis.options.methods.fisher, analysis.options.methods.output);
  creq.quantizer = o.quantizer;
  creq.head = o.head;
  std::vector<AutoCandidate> candidates = make_candidates(input, creq);
  check(!candidates.empty(), "--methods", "no candidate applies to this target and budget");
  QuantizeOptions qopt = o.quantize;
  qopt.calibration = analysis.calibration;
  qopt.progress = false;
  std::vector<RunCandidate> rows;
  // Every candidate's plan first (a uniform scheme's with the target's fallbacks), so that
  // candidates with the same allocation (a knapsack that found the uniform scheme optimal) are
  // quantized and measured once: the same plan gives the same model (GPTQ is deterministic). The
  // later ones record "same_as" and share the earlier one's model and numbers.
  const std::string ext = gguf_out ? ".gguf" : "";
  std::vector<std::string> keys(candidates.size());
  std::vector<char> to_measure(candidates.size(), 0);
  std::map<std::string, size_t> first_with;  // allocation key -> first candidate with it
  for (size_t i = 0; i < candidates.size(); ++i) {
    AutoCandidate& c = candidates[i];
    if (!c.failure.empty()) continue;
    try {
      if (!c.plan) c.plan = uniform_plan(model, parse_scheme(c.scheme), o.head, target);
    } catch (const Error& e) {
      c.failure = e.what();
      continue;
    }
    keys[i] = allocation_key(*c.plan);
    const bool first = first_with.emplace(keys[i], i).second;
    to_measure[i] = first && !fs::exists(run_dir / "evals" / (c.name + ".json"), ec);
  }
  progress.set_work(to_measure);
  std::map<std::string, std::string> measured_allocations;  // allocation key -> candidate measured
  for (size_t i = 0; i < candidates.size(); ++i) {
    AutoCandidate& c = candidates[i];
    const int index = static_cast<int>(i);
    const fs::path plan_path = run_dir / "plans" / (c.name + ".json");
    const fs::path eval_path = run_dir / "evals" / (c.name + ".json");
    nlohmann::json eval_j = read_json_if(eval_path);
    const auto model_of = [&](const nlohmann::json& e) {
      return "candidates/" + (e.is_object() && e.contains("same_as") ? e["same_as"].get<std::string>() : c.name) + ext;
    };
    if (eval_j.is_object() && eval_j.value("status", "") == "done" &&
        (!fs::exists(run_dir / model_of(eval_j), ec) || !fs::exists(plan_path, ec))) {
      eval_j = nullptr;  // measured, but its model or plan is gone: again
    }
    if (!c.failure.empty()) {
      progress.candidate(index, c.name + ": no plan (" + c.failure + ")");
    } else if (!eval_j.is_null()) {
      progress.candidate(index, c.name + ": measured earlier (" + eval_j.value("status", std::string("?")) + ")");
      if (eval_j.value("status", "") == "done" && !eval_j.contains("same_as")) measured_allocations.emplace(keys[i], c.name);
    } else if (const auto it = measured_allocations.find(keys[i]); it != measured_allocations.end()) {
      write_plan(*c.plan, plan_path.string());
      eval_j = read_json_file((run_dir / "evals" / (it->second + ".json")).string(), "candidate measurements");
      eval_j["same_as"] = it->second;
      progress.candidate(index, c.name + ": the same allocation as " + it->second + " (measured once)");
      write_file_atomically(eval_path.string(), eval_j.dump(1) + "\n");
    } else {
      progress.start_candidate();
      try {
        write_plan(*c.plan, plan_path.string());
        const Plan plan = read_plan(plan_path.string());  // what the file says is what runs
        std::snprintf(line, sizeof line, "%s: quantizing (%s, %.4f bits/weight)", c.name.c_str(), plan.method.c_str(),
                      plan.bits_per_weight);
        progress.candidate(index, line, /*running=*/true);
        const CandidateMeasurement m = quantize_and_measure(model_path, load, plan, qopt,
                                                            (run_dir / model_of(nullptr)).string(), eval,
                                                            ref_logits.string(), rules);
        eval_j = m.to_json();
        eval_j["status"] = "done";
        measured_allocations.emplace(keys[i], c.name);
        std::snprintf(line, sizeof line, "%s: PPL %.4f, KLD %.5f, top-1 %.2f %%", c.name.c_str(), m.ppl, m.kld_mean,
                      100 * m.top1_agree);
        progress.measured();
        progress.candidate(index, line);
      } catch (const Error& e) {
        // One candidate that cannot be built or run does not end the run; it is reported.
        eval_j = {{"status", std::string("failed: ") + e.what()}};
        progress.measured();
        progress.candidate(index, c.name + " failed: " + e.what());
      }
      write_file_atomically(eval_path.string(), eval_j.dump(1) + "\n");
    }
    rows.push_back(run_candidate(c, eval_j, model_of(eval_j)));
  }

  // ---- 4. the run file: the best candidate chosen
  RunRecord run;
  run.model_path = model_path;
  run.arch = model.config.arch;
  run.parameters = model.parameter_count();
  run.linear_weights = linear_weights;
  run.identity = settings["analysis"]["model"];
  run.budget_bits_per_weight = o.budget.bytes > 0 ? 0 : o.budget.bits_per_weight;
  run.budget_bytes = o.budget.bytes;
  run.target = target.name();
  run.calib_files = analysis.calibration.text_paths;
  run.calib_samples = analysis.calibration.n_samples;
  run.calib_len = analysis.calibration.seq_len;
  run.calib_seed = analysis.calibration.seed;
  run.eval_text = o.eval_text;
  run.eval_protocol = "llama.cpp perplexity (mpq ppl --kl-base)";
  run.eval_ctx = o.eval_ctx;
  run.eval_chunks = o.eval_chunks;
  run.reference_ppl = reference.ppl;
  run.reference_file_bytes = reference.file_bytes;
  run.sensitivity = "sensitivity.json";
  run.candidates = rows;
  const RunCandidate* best = nullptr;
  for (const RunCandidate& r : run.candidates) {
    if (r.done() && (best == nullptr || *r.kld_mean < *best->kld_mean)) best = &r;
  }
  if (best == nullptr) fail(run_dir.string(), "no candidate could be built and evaluated (see evals/ for why)");
  run.chosen = best->name;
  run.commands = o.commands;
  run.commands.push_back("mpq report '" + run_dir.string() + "'");
  const std::string run_json = (run_dir / "run.json").string();
  write_run_file(run, run_json);
  write_report(run_dir.string(), default_report_path(run_dir.string()), /*force=*/false);

  // ---- 5. the best candidate becomes OUT, with the report
  const fs::path chosen_model = run_dir / best->model;
  if (gguf_out) {
    copy_file_atomically(chosen_model, out);
    write_report(run_dir.string(), report_out, /*force=*/false);
  } else {
    StagedDirectory staged(out, "hf-model");
    for (const auto& e : fs::directory_iterator(chosen_model)) {
      const std::string name = e.path().filename().string();
      if (name == kOutputManifest) continue;
      fs::copy_file(e.path(), staged.path(name), ec);
      if (ec) fail(out, "cannot copy " + e.path().string() + ": " + ec.message());
    }
    write_file_atomically(staged.path("report.html"), render_report(run_dir.string()));
    staged.commit(rules);
  }
  progress.note("chose " + run.chosen + " -> " + out + "; report: " + report_out);
  return {run_dir.string(), run.chosen, run_to_json(run), report_out};
}

}  // namespace mpq
