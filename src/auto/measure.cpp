#include "auto/measure.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "io/model_writer.h"
#include "mpq/error.h"
#include "mpq/eval.h"
#include "quant/quantize.h"

namespace mpq {
namespace fs = std::filesystem;
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

PplOptions ppl_options(const EvalSettings& eval) {
  PplOptions p;
  p.ctx = eval.ctx;
  p.max_chunks = eval.chunks;
  p.progress = eval.progress;
  return p;
}

double finite_number(const nlohmann::json& j, const char* key, const std::string& where) {
  check(j.contains(key) && j[key].is_number(), where, std::string("missing number \"") + key + "\"");
  const double v = j[key].get<double>();
  check(std::isfinite(v), where, std::string("\"") + key + "\" is not finite");
  return v;
}

uint64_t count(const nlohmann::json& j, const char* key, const std::string& where) {
  check(j.contains(key) && (j[key].is_number_unsigned() || (j[key].is_number_integer() && j[key].get<int64_t>() >= 0)),
        where, std::string("missing non-negative integer \"") + key + "\"");
  return j[key].get<uint64_t>();
}

}  // namespace

uint64_t model_bytes(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return fs::file_size(path, ec);
  uint64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(path, ec)) {
    if (e.is_regular_file(ec)) total += e.file_size(ec);
  }
  return total;
}

nlohmann::json ReferenceMeasurement::to_json() const {
  return {{"ppl", ppl}, {"n_tokens", n_tokens}, {"file_bytes", file_bytes}};
}

ReferenceMeasurement ReferenceMeasurement::from_json(const nlohmann::json& j, const std::string& where) {
  check(j.is_object(), where, "must be a JSON object");
  ReferenceMeasurement r;
  r.ppl = finite_number(j, "ppl", where);
  r.n_tokens = static_cast<int64_t>(count(j, "n_tokens", where));
  r.file_bytes = count(j, "file_bytes", where);
  return r;
}

ReferenceMeasurement measure_reference(Model& model, const std::string& model_path, const EvalSettings& eval,
                                       const std::string& logits_path) {
  PplOptions p = ppl_options(eval);
  p.save_logits_path = logits_path;
  const PplResult r = evaluate_perplexity(model, eval.text, eval.text_path, p);
  check(std::isfinite(r.ppl), model_path, "the unquantized model's perplexity is not finite");
  ReferenceMeasurement m;
  m.ppl = r.ppl;
  m.n_tokens = r.n_tokens;
  m.file_bytes = model_bytes(model_path);
  return m;
}

nlohmann::json CandidateMeasurement::to_json() const {
  return {{"bits_per_weight", bits_per_weight},
          {"linear_bytes", linear_bytes},
          {"file_bytes", file_bytes},
          {"ppl", ppl},
          {"ppl_ratio", ppl_ratio},
          {"kld_mean", kld_mean},
          {"kld_median", kld_median},
          {"kld_p99", kld_p99},
          {"top1_agree", top1_agree},
          {"decode_tok_s", decode_tok_s ? nlohmann::json(*decode_tok_s) : nlohmann::json(nullptr)},
          {"seconds", {{"quantize", seconds_quantize}, {"evaluate", seconds_evaluate}}}};
}

CandidateMeasurement CandidateMeasurement::from_json(const nlohmann::json& j, const std::string& where) {
  check(j.is_object(), where, "must be a JSON object");
  CandidateMeasurement m;
  m.bits_per_weight = finite_number(j, "bits_per_weight", where);
  m.linear_bytes = count(j, "linear_bytes", where);
  m.file_bytes = count(j, "file_bytes", where);
  m.ppl = finite_number(j, "ppl", where);
  m.ppl_ratio = finite_number(j, "ppl_ratio", where);
  m.kld_mean = finite_number(j, "kld_mean", where);
  m.kld_median = finite_number(j, "kld_median", where);
  m.kld_p99 = finite_number(j, "kld_p99", where);
  m.top1_agree = finite_number(j, "top1_agree", where);
  check(j.contains("decode_tok_s"), where, "missing \"decode_tok_s\" (null when not measured)");
  if (!j["decode_tok_s"].is_null()) m.decode_tok_s = finite_number(j, "decode_tok_s", where);
  check(j.contains("seconds") && j["seconds"].is_object(), where, "missing \"seconds\"");
  m.seconds_quantize = finite_number(j["seconds"], "quantize", where + ": seconds");
  m.seconds_evaluate = finite_number(j["seconds"], "evaluate", where + ": seconds");
  return m;
}

CandidateMeasurement measure_written_model(const std::string& path, const LoadOptions& load, const EvalSettings& eval,
                                           const std::string& reference_logits) {
  const auto t0 = std::chrono::steady_clock::now();
  LoadOptions packed = load;
  packed.runtime.packed = true;          // as a user runs it: from packed weights
  packed.keep_gguf_quantized = true;     // a GGUF's ggml blocks run as stored, not decoded to fp32
  Model q = load_model(path, packed);
  PplOptions p = ppl_options(eval);
  p.kl_base_path = reference_logits;
  const PplResult r = evaluate_perplexity(q, eval.text, eval.text_path, p);
  // A model whose loss is not finite cannot be ranked (or written into run.json).
  for (double v : {r.ppl, r.kld_mean, r.kld_p99, r.top1_agree}) {
    check(std::isfinite(v), path, "evaluation gave a non-finite perplexity or KL divergence");
  }
  CandidateMeasurement m;
  m.file_bytes = model_bytes(path);
  m.ppl = r.ppl;
  m.ppl_ratio = r.ppl_ratio;
  m.kld_mean = r.kld_mean;
  m.kld_median = r.kld_median;
  m.kld_p99 = r.kld_p99;
  m.top1_agree = r.top1_agree;
  if (eval.measure_speed) {
    BenchOptions b;
    b.pp_tokens = 64;
    b.tg_prompt = 32;
    b.tg_tokens = 16;
    b.repetitions = 1;
    b.tg_repetitions = 5;
    b.bandwidth_bytes = 0;
    const double tok_s = benchmark_model(q, b).tg_tok_s;
    if (std::isfinite(tok_s) && tok_s > 0) m.decode_tok_s = tok_s;
  }
  m.seconds_evaluate = seconds_since(t0);
  return m;
}

CandidateMeasurement quantize_and_measure(const std::string& model_path, const LoadOptions& load, const Plan& plan,
                                          const QuantizeOptions& quantize_options, const std::string& out,
                                          const EvalSettings& eval, const std::string& reference_logits,
                                          const OutputRules& rules) {
  const auto t0 = std::chrono::steady_clock::now();
  Model fresh = load_model(model_path, load);
  const QuantizeReport report = quantize(fresh, plan, quantize_options);
  ModelWriteOptions write;
  write.report = quantize_report_json(fresh, plan, quantize_options, report);
  write.rules = {rules.inputs, /*force=*/true};  // `out` belongs to the caller's run
  write_model(fresh, out, write);
  const double seconds_quantize = seconds_since(t0);
  CandidateMeasurement m = measure_written_model(out, load, eval, reference_logits);
  // The plan's exact storage bits over every decoder Linear weight (kept tensors count their
  // 16 bits): the figure the budget constrains and the report checks against the plan file.
  m.bits_per_weight = plan.bits_per_weight;
  m.linear_bytes = (plan.total_bits + 7) / 8;
  m.seconds_quantize = seconds_quantize;
  return m;
}

PlanSweep measure_plans(const std::string& model_path, const LoadOptions& load, const std::vector<Plan>& plans,
                        const std::vector<std::string>& outs, const QuantizeOptions& quantize, const EvalSettings& eval,
                        const std::string& reference_logits, const OutputRules& rules, bool progress) {
  check(plans.size() == outs.size(), "measure", "one output per plan");
  const auto t0 = std::chrono::steady_clock::now();
  PlanSweep sweep;
  {
    Model model = load_model(model_path, load);
    sweep.reference = measure_reference(model, model_path, eval, reference_logits);
  }
  if (progress) std::fprintf(stderr, "[measure] reference PPL %.4f  (%.0f s)\n", sweep.reference.ppl, seconds_since(t0));
  const auto t_plans = std::chrono::steady_clock::now();
  for (size_t i = 0; i < plans.size(); ++i) {
    PlanPointResult point;
    try {
      point.measurement = quantize_and_measure(model_path, load, plans[i], quantize, outs[i], eval, reference_logits, rules);
    } catch (const Error& e) {
      point.failure = e.what();
    }
    if (progress) {
      const double each = seconds_since(t_plans) / static_cast<double>(i + 1);
      char line[512];
      if (point.measurement) {
        std::snprintf(line, sizeof line, "%.4f bits/weight: PPL %.4f, KLD %.5f", point.measurement->bits_per_weight,
                      point.measurement->ppl, point.measurement->kld_mean);
      } else {
        std::snprintf(line, sizeof line, "failed: %s", point.failure.c_str());
      }
      std::fprintf(stderr, "[measure] %zu/%zu %s  (%.0f s elapsed, about %.0f s left)\n", i + 1, plans.size(), line,
                   seconds_since(t0), each * static_cast<double>(plans.size() - i - 1));
    }
    sweep.points.push_back(std::move(point));
  }
  return sweep;
}

}  // namespace mpq
