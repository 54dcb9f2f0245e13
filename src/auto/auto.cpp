#include "auto/auto.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "calib/sensitivity_file.h"
#include "io/model_writer.h"
#include "io/read_file.h"
#include "mpq/error.h"
#include "mpq/eval.h"
#include "plan/planner.h"
#include "plan/target.h"
#include "quant/quantize.h"

namespace mpq {
namespace fs = std::filesystem;
namespace {

constexpr const char* kRunFormat = "mpq-auto-run";
constexpr int kRunVersion = 1;

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

// Progress lines: "[auto] 3/9 quantize knapsack-fisher  (12m04s, about 20m left)". The estimate
// comes from the steps finished so far, weighted by their kind's measured cost.
class Progress {
 public:
  Progress(bool on, int steps) : on_(on), steps_(steps), t0_(std::chrono::steady_clock::now()) {}
  void add_steps(int n) { steps_ += n; }
  void step(const std::string& what) {
    ++done_;
    if (!on_) return;
    const double elapsed = seconds_since(t0_);
    std::string eta;
    if (done_ > 1) eta = ", about " + clock_text(elapsed / (done_ - 1) * (steps_ - done_ + 1)) + " left";
    std::fprintf(stderr, "[auto] %d/%d %s  (%s elapsed%s)\n", done_, steps_, what.c_str(), clock_text(elapsed).c_str(),
                 eta.c_str());
  }
  void note(const std::string& what) const {
    if (on_) std::fprintf(stderr, "[auto] %s\n", what.c_str());
  }

 private:
  bool on_;
  int steps_;
  int done_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

// One candidate of the run.
struct Candidate {
  std::string name;    // "knapsack-fisher", "uniform-int4_g64", ...
  std::string kind;    // "plan" or "uniform"
  std::string method;  // planner method, or "uniform"
  std::string cost;    // planner cost ("" for uniform, rule, channels)
  std::string scheme;  // uniform: "int4_g64:gptq"
  std::optional<Plan> plan;
  std::string failure;  // why it could not be built ("" when it could)
};

uint64_t directory_bytes(const fs::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (e.is_regular_file(ec)) total += e.file_size(ec);
  }
  return total;
}

// The budget as a planner request.
void set_budget(PlanRequest& req, const PlanBudget& budget) {
  if (budget.bytes > 0) req.bytes = budget.bytes;
  else req.bits = budget.bits_per_weight;
}

// Exact bits of `format` over every Linear tensor of the sensitivity file.
uint64_t uniform_bits(const SensitivityInput& in, WeightFormatId format, uint64_t* weights) {
  uint64_t bits = 0;
  *weights = 0;
  for (const auto& t : in.tensors) {
    bits += storage_bits(format, t.rows, t.cols);
    *weights += static_cast<uint64_t>(t.rows) * static_cast<uint64_t>(t.cols);
  }
  return bits;
}

// True when the target runs `format` on every tensor of the file.
bool accepted_everywhere(const SensitivityInput& in, const Target& target, WeightFormatId format) {
  return std::all_of(in.tensors.begin(), in.tensors.end(),
                     [&](const auto& t) { return target.accepts(format, t.rows, t.cols); });
}

double mean_bits(const SensitivityInput& in, WeightFormatId format) {
  uint64_t weights = 0;
  const uint64_t bits = uniform_bits(in, format, &weights);
  return weights ? static_cast<double>(bits) / static_cast<double>(weights) : 0;
}

// The uniform schemes that fit the budget: the three with the most bits (the closest in size).
std::vector<WeightFormatId> uniform_formats(const SensitivityInput& in, const PlanBudget& budget, const Target& target) {
  std::vector<std::pair<uint64_t, WeightFormatId>> fitting;
  for (const WeightFormatTraits& f : weight_formats()) {
    if (f.value_kind == ValueKind::Half || !accepted_everywhere(in, target, f.id)) continue;
    uint64_t weights = 0;
    const uint64_t bits = uniform_bits(in, f.id, &weights);
    if (bits <= budget.cap_bits(weights)) fitting.emplace_back(bits, f.id);
  }
  std::stable_sort(fitting.begin(), fitting.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<WeightFormatId> out;
  for (size_t i = 0; i < fitting.size() && i < 3; ++i) out.push_back(fitting[i].second);
  return out;
}

// The average bits the budget allows (bytes budgets converted over the file's weights).
double budget_bits(const SensitivityInput& in, const PlanBudget& budget) {
  if (budget.bytes == 0) return budget.bits_per_weight;
  uint64_t weights = 0;
  uniform_bits(in, WeightFormatId::Int8_Channel, &weights);
  return weights ? 8.0 * static_cast<double>(budget.bytes) / static_cast<double>(weights) : 0;
}

// Formats for the methods that place formats by rank (tiers, rule, bqp), from what the target runs
// on every tensor: `low` < `mid` <= the budget's bits < `high`, where high is an 8-bit format when
// the target runs one (else bf16: the kept weights), and the mission's bf16 / 8-bit / 4-bit tiers
// near 8 bits. Empty when the target leaves no such choice.
struct RankFormats {
  std::optional<WeightFormatId> high, mid, low;
};
RankFormats rank_formats(const SensitivityInput& in, const Target& target, double budget_bits) {
  RankFormats r;
  std::vector<std::pair<double, WeightFormatId>> by_bits;
  for (const WeightFormatTraits& f : weight_formats()) {
    if (f.value_kind == ValueKind::Half || !accepted_everywhere(in, target, f.id)) continue;
    if (std::find(in.formats.begin(), in.formats.end(), f.name) == in.formats.end()) continue;  // no measured costs
    by_bits.emplace_back(mean_bits(in, f.id), f.id);
  }
  std::stable_sort(by_bits.begin(), by_bits.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [bits, f] : by_bits) {
    if (bits <= budget_bits && !r.mid) r.mid = f;
    else if (r.mid && bits < mean_bits(in, *r.mid) && !r.low) r.low = f;
  }
  for (const auto& [bits, f] : by_bits) {
    if (bits > budget_bits && bits <= 9 && weight_format(f).bits == 8) r.high = f;
  }
  if (!r.high || budget_bits >= 7) r.high = WeightFormatId::BF16;
  return r;
}

std::vector<Candidate> make_candidates(const SensitivityInput& in, const AutoOptions& o, const std::vector<std::string>& methods,
                                       const std::string& cost, const Target& target) {
  std::vector<Candidate> out;
  auto planned = [&](const std::string& name, const std::string& method, const std::string& plan_cost,
                     std::vector<WeightFormatId> formats) {
    Candidate c{name, "plan", method, plan_cost, "", std::nullopt, ""};
    PlanRequest req;
    req.method = method;
    if (!plan_cost.empty()) req.cost = plan_cost;
    req.formats = std::move(formats);
    req.quantizer = o.quantizer;
    req.target = target;
    set_budget(req, o.budget);
    try {
      c.plan = make_plan(in, req);
      c.plan->head = o.head;
    } catch (const Error& e) {
      c.failure = e.what();
    }
    out.push_back(std::move(c));
  };
  const double bits = budget_bits(in, o.budget);
  const RankFormats rank = rank_formats(in, target, bits);
  auto skipped = [&](const std::string& name, const std::string& why) {
    out.push_back({name, "plan", name, "", "", std::nullopt, why});
  };
  for (const std::string& m : methods) {
    if (m == "knapsack") {
      planned("knapsack-" + cost, "knapsack", cost, {});
    } else if (m == "channels") {
      if (target.allows_channel_split()) planned("channels", "channels", "", {});
    } else if (m == "tiers") {
      // The mission's 16/8/4-bit tiers near 8 bits; below that the same idea one level down.
      if (bits >= 7 && accepted_everywhere(in, target, WeightFormatId::FP8_E4M3_Channel) &&
          accepted_everywhere(in, target, WeightFormatId::NVFP4)) {
        planned("tiers-" + cost, "tiers", cost, {WeightFormatId::BF16, WeightFormatId::FP8_E4M3_Channel, WeightFormatId::NVFP4});
      } else if (rank.high && rank.mid && rank.low) {
        planned("tiers-" + cost, "tiers", cost, {*rank.high, *rank.mid, *rank.low});
      } else {
        skipped("tiers-" + cost, "the target runs too few formats for three tiers");
      }
    } else if (m == "rule") {
      if (rank.high && rank.mid) planned("rule", "rule", "", {*rank.mid, *rank.high});
      else skipped("rule", "the target runs too few formats for the rule");
    } else if (m == "bqp") {
      if (in.shapley.is_object()) planned("bqp-shapley", "bqp", "shapley", {});
      else if (rank.high && rank.mid) planned("bqp-" + cost, "bqp", cost, {*rank.high, *rank.mid});
      else skipped("bqp-" + cost, "the target runs too few formats for bqp");
    } else if (m == "uniform") {
      for (WeightFormatId f : uniform_formats(in, o.budget, target)) {
        Scheme s{f, o.quantizer};
        out.push_back({std::string("uniform-") + weight_format(f).name, "uniform", "uniform", "", s.name(), std::nullopt, ""});
      }
    } else {
      fail("--methods", "unknown candidate kind '" + m + "' (valid: knapsack, channels, tiers, rule, bqp, uniform)");
    }
  }
  return out;
}

// The cost the plans use: the most faithful one the analysis measured.
std::string best_cost(const SensitivityMethods& m) {
  if (m.kld) return "kld";
  if (m.fisher) return "fisher";
  if (m.output) return "output";
  fail("--analyze", "the analysis must measure kld, fisher or output for the planners");
}

bool is_ours(const fs::path& run_dir) {
  std::error_code ec;
  return fs::is_regular_file(run_dir / "run.json", ec) && json_with_format(kRunFormat)((run_dir / "run.json").string());
}

nlohmann::json read_json_if(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return nullptr;
  return read_json_file(p.string());
}

}  // namespace

std::string default_cache_dir() {
  if (const char* d = std::getenv("MPQ_CACHE_DIR"); d != nullptr && *d) return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d != nullptr && *d) return std::string(d) + "/mpq";
  if (const char* d = std::getenv("HOME"); d != nullptr && *d) return std::string(d) + "/.cache/mpq";
  return "";
}

std::vector<std::string> default_auto_methods() { return {"knapsack", "channels", "tiers", "rule", "bqp", "uniform"}; }

AutoResult run_auto(const std::string& model_path, const LoadOptions& load, const AutoOptions& o, const std::string& out) {
  check(o.budget.bits_per_weight > 0 || o.budget.bytes > 0, "--bits/--size", "give a budget");
  const Target target = parse_target(o.target);
  check(!o.eval_text.empty(), "--eval-text", "no evaluation text given and the default is missing");
  check(o.eval_chunks > 0 && o.eval_ctx >= 2, "--eval-chunks", "need at least one chunk of at least 2 tokens");
  OutputRules rules = o.rules;
  rules.inputs.push_back(model_path);
  rules.inputs.push_back(o.eval_text);
  for (const auto& f : o.analysis.calibration.text_paths) rules.inputs.push_back(f);
  check_output_dir(out, rules);
  const fs::path run_dir = o.work_dir.empty() ? fs::path(out + ".run") : fs::path(o.work_dir);
  std::error_code ec;
  if (fs::exists(run_dir, ec)) {
    if (!is_ours(run_dir) && !(fs::is_directory(run_dir, ec) && fs::is_empty(run_dir, ec))) {
      fail(run_dir.string(), "exists and is not an mpq auto run directory: refusing to write there");
    }
    if (is_ours(run_dir) && !o.resume) {
      fail(run_dir.string(), "holds an earlier run: continue it with --resume, or choose another --out / --work-dir");
    }
  }
  check_output_dir(run_dir.string(), {rules.inputs, true});  // inputs, current directory
  fs::create_directories(run_dir / "plans", ec);
  fs::create_directories(run_dir / "candidates", ec);
  fs::create_directories(run_dir / "evals", ec);
  if (ec) fail(run_dir.string(), "cannot create the run directory: " + ec.message());

  std::vector<std::string> methods = o.methods.empty() ? default_auto_methods() : o.methods;
  Model model = load_model(model_path, load);
  nlohmann::json run = {{"format", kRunFormat},
                        {"version", kRunVersion},
                        {"model", {{"path", model_path},
                                   {"arch", model.config.arch},
                                   {"parameters", model.parameter_count()},
                                   {"identity", sensitivity_model_identity(model, model_path)}}},
                        {"target", target.name()},
                        {"calibration", calibration_json(o.analysis.calibration)},
                        {"evaluation", {{"text", o.eval_text}, {"protocol", "llamacpp"}, {"ctx", o.eval_ctx},
                                        {"chunks", o.eval_chunks}}},
                        {"sensitivity", "sensitivity.json"},
                        {"candidates", nlohmann::json::array()},
                        {"chosen", nullptr},
                        {"commands", o.commands}};
  run["budget"] = o.budget.bytes > 0 ? nlohmann::json{{"bytes", o.budget.bytes}}
                                     : nlohmann::json{{"bits_per_weight", o.budget.bits_per_weight}};
  uint64_t linear_weights = 0;
  for (const Linear* l : model.linears()) {
    linear_weights += static_cast<uint64_t>(l->weights->out_features()) * static_cast<uint64_t>(l->weights->in_features());
  }
  run["model"]["linear_weights"] = linear_weights;
  const std::string run_json = (run_dir / "run.json").string();
  auto save_run = [&] { write_file_atomically(run_json, run.dump(1) + "\n"); };
  save_run();  // marks the directory as an mpq run from the start (resumable)

  // ---- 1. sensitivity (cached)
  const nlohmann::json settings = analysis_settings(model, model_path, o.analysis);
  const std::string key = sha256_hex(settings.dump().data(), settings.dump().size()).substr(0, 16);
  const fs::path s_json = run_dir / "sensitivity.json";
  int steps = 3;  // analysis, reference, final
  Progress progress(o.progress, steps);
  if (!fs::exists(s_json, ec)) {
    fs::path cached;
    if (!o.cache_dir.empty()) cached = fs::path(o.cache_dir) / ("sensitivity-" + key + ".json");
    if (!cached.empty() && fs::exists(cached, ec) && json_with_format("mpq-sensitivity")(cached.string())) {
      progress.note("sensitivity: reusing " + cached.string());
    } else {
      const fs::path target = cached.empty() ? s_json : cached;
      if (!cached.empty()) fs::create_directories(cached.parent_path(), ec);
      AnalysisRequest request = o.analysis;
      request.rules = rules;
      request.options.progress = o.progress;
      request.resume = o.resume;
      run_analysis(model, model_path, request, target.string());
    }
    if (!cached.empty()) {
      write_file_atomically(sensitivity_sidecar_path(s_json.string()),
                            read_file(sensitivity_sidecar_path(cached.string()), "sensitivity sidecar"));
      write_file_atomically(s_json.string(), read_file(cached.string(), "sensitivity file"));
    }
  }
  progress.step("sensitivity analysis");
  const SensitivityInput input = read_sensitivity_input(s_json.string(), /*load_channels=*/true);

  // ---- 2. the reference: the unquantized model's log-probs on the evaluation text
  const std::string text = read_file(o.eval_text, "evaluation text");
  const fs::path ref_logits = run_dir / "reference.logits";
  const fs::path ref_json = run_dir / "reference.json";
  nlohmann::json reference = read_json_if(ref_json);
  if (reference.is_null() || !fs::exists(ref_logits, ec)) {
    PplOptions p;
    p.ctx = o.eval_ctx;
    p.max_chunks = o.eval_chunks;
    p.save_logits_path = ref_logits.string();
    p.progress = false;
    const PplResult r = evaluate_perplexity(model, text, o.eval_text, p);
    reference = {{"ppl", r.ppl}, {"n_tokens", r.n_tokens}, {"file_bytes", fs::is_directory(model_path)
                                                                            ? directory_bytes(model_path)
                                                                            : fs::file_size(model_path)}};
    write_file_atomically(ref_json.string(), reference.dump(1) + "\n");
  }
  run["reference"] = reference;
  save_run();
  progress.step("reference perplexity " + std::to_string(reference["ppl"].get<double>()));

  // ---- 3/4. candidates: plan, quantize, write, evaluate
  const std::string cost = best_cost(o.analysis.options.methods);
  std::vector<Candidate> candidates = make_candidates(input, o, methods, cost, target);
  Progress& work = progress;
  work.add_steps(2 * static_cast<int>(candidates.size()));
  QuantizeOptions qopt = o.quantize;
  qopt.calibration = o.analysis.calibration;
  qopt.progress = false;
  for (Candidate& c : candidates) {
    nlohmann::json row = {{"name", c.name}, {"kind", c.kind}, {"method", c.method}, {"cost", c.cost}};
    if (!c.scheme.empty()) row["scheme"] = c.scheme;
    const fs::path plan_path = run_dir / "plans" / (c.name + ".json");
    const fs::path model_dir = run_dir / "candidates" / c.name;
    const fs::path eval_path = run_dir / "evals" / (c.name + ".json");
    nlohmann::json eval = read_json_if(eval_path);
    if (!c.failure.empty()) {
      row["status"] = "failed: " + c.failure;
      run["candidates"].push_back(row);
      work.step(c.name + ": no plan (" + c.failure + ")");
      work.step(c.name + ": skipped");
      save_run();
      continue;
    }
    if (eval.is_null()) {
      try {
        const auto t0 = std::chrono::steady_clock::now();
        Model fresh = load_model(model_path, load);
        Plan plan = c.plan ? *c.plan : uniform_plan(fresh, parse_scheme(c.scheme), o.head, target);
        write_plan(plan, plan_path.string());
        plan = read_plan(plan_path.string());  // what the file says is what runs
        const QuantizeReport report = quantize(fresh, plan, qopt);
        ModelWriteOptions write;
        write.report = quantize_report_json(fresh, plan, qopt, report);
        write.rules = {rules.inputs, /*force=*/true};  // our own run directory
        write_model(fresh, model_dir.string(), write);
        const double quantize_seconds = seconds_since(t0);
        work.step("quantized " + c.name);
        const auto t1 = std::chrono::steady_clock::now();
        LoadOptions packed = load;
        packed.runtime.packed = true;
        Model q = load_model(model_dir.string(), packed);
        PplOptions p;
        p.ctx = o.eval_ctx;
        p.max_chunks = o.eval_chunks;
        p.kl_base_path = ref_logits.string();
        p.progress = false;
        const PplResult r = evaluate_perplexity(q, text, o.eval_text, p);
        eval = {{"status", "done"},
                {"bits_per_weight", report.bits_per_weight},
                {"linear_bytes", (plan.total_bits + 7) / 8},
                {"file_bytes", directory_bytes(model_dir)},
                {"ppl", r.ppl},
                {"ppl_ratio", r.ppl_ratio},
                {"kld_mean", r.kld_mean},
                {"kld_median", r.kld_median},
                {"kld_p99", r.kld_p99},
                {"top1_agree", r.top1_agree},
                {"decode_tok_s", nullptr}};
        if (o.measure_speed) {
          BenchOptions b;
          b.pp_tokens = 64;
          b.tg_prompt = 32;
          b.tg_tokens = 16;
          b.repetitions = 1;
          b.tg_repetitions = 5;
          b.bandwidth_bytes = 0;
          eval["decode_tok_s"] = benchmark_model(q, b).tg_tok_s;
        }
        eval["seconds"] = {{"quantize", quantize_seconds}, {"evaluate", seconds_since(t1)}};
        write_file_atomically(eval_path.string(), eval.dump(1) + "\n");
        char line[160];
        std::snprintf(line, sizeof line, "evaluated %s: %.4f bits/weight, PPL %.4f, KLD %.5f", c.name.c_str(),
                      report.bits_per_weight, r.ppl, r.kld_mean);
        work.step(line);
      } catch (const Error& e) {
        // One candidate that cannot be built or run does not end the run; it is reported.
        eval = {{"status", std::string("failed: ") + e.what()}};
        write_file_atomically(eval_path.string(), eval.dump(1) + "\n");
        work.step(c.name + " failed: " + e.what());
        work.step(c.name + ": skipped");
      }
    } else {
      work.step(c.name + ": done earlier");
      work.step(c.name + ": done earlier");
    }
    row.update(eval);
    if (eval.value("status", "") == "done") {
      row["plan"] = "plans/" + c.name + ".json";
      row["model"] = "candidates/" + c.name;
    }
    run["candidates"].push_back(row);
    save_run();
  }

  // ---- 5. the best candidate becomes OUT
  const nlohmann::json* best = nullptr;
  for (const auto& row : run["candidates"]) {
    if (row.value("status", "") != "done") continue;
    if (best == nullptr || row["kld_mean"].get<double>() < (*best)["kld_mean"].get<double>()) best = &row;
  }
  if (best == nullptr) fail(run_dir.string(), "no candidate could be built and evaluated (see run.json)");
  run["chosen"] = (*best)["name"];
  save_run();
  const fs::path chosen_dir = run_dir / (*best)["model"].get<std::string>();
  StagedDirectory staged(out, "hf-model");
  for (const auto& e : fs::directory_iterator(chosen_dir)) {
    const std::string name = e.path().filename().string();
    if (name == kOutputManifest) continue;
    fs::copy_file(e.path(), staged.path(name), ec);
    if (ec) fail(out, "cannot copy " + e.path().string() + ": " + ec.message());
  }
  write_file_atomically(staged.path("run.json"), run.dump(1) + "\n");
  staged.commit(rules);
  progress.step("chose " + run["chosen"].get<std::string>() + " -> " + out);
  return {run_dir.string(), run["chosen"].get<std::string>(), run};
}

}  // namespace mpq
