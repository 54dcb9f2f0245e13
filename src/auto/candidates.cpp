#include "auto/candidates.h"

#include <algorithm>
#include <map>

#include "calib/sensitivity.h"
#include "mpq/error.h"

namespace mpq {
namespace {

// Exact bits of `format` over every Linear tensor of the file, with the target's fallback where a
// tensor cannot take it (llama-quantize's chain for ggml types, a smaller group otherwise);
// nullopt when a tensor has no fallback. `fallbacks` counts the tensors that fell back.
std::optional<uint64_t> uniform_bits(const SensitivityInput& in, const Target& target, WeightFormatId format,
                                     uint64_t* weights, int* fallbacks, std::vector<WeightFormatId>* formats) {
  uint64_t bits = 0;
  *weights = 0;
  *fallbacks = 0;
  for (const auto& t : in.tensors) {
    const auto f = fallback_format(format, t.rows, t.cols, target);
    if (!f) return std::nullopt;
    if (*f != format) ++*fallbacks;
    if (formats) formats->push_back(*f);
    bits += storage_bits(*f, t.rows, t.cols);
    *weights += static_cast<uint64_t>(t.rows) * static_cast<uint64_t>(t.cols);
  }
  return bits;
}

bool accepted_everywhere(const SensitivityInput& in, const Target& target, WeightFormatId format) {
  return std::all_of(in.tensors.begin(), in.tensors.end(),
                     [&](const auto& t) { return target.accepts(format, t.rows, t.cols); });
}

double mean_bits(const SensitivityInput& in, WeightFormatId format) {
  uint64_t bits = 0, weights = 0;
  for (const auto& t : in.tensors) {
    bits += storage_bits(format, t.rows, t.cols);
    weights += static_cast<uint64_t>(t.rows) * static_cast<uint64_t>(t.cols);
  }
  return weights ? static_cast<double>(bits) / static_cast<double>(weights) : 0;
}

// The uniform schemes that fit the budget: the three with the most bits (the closest in size),
// fallbacks included; a scheme that falls back to exactly the allocation of one already taken is
// left out (int4_g128 -> int4_g64 on 576-wide rows is uniform int4_g64), the exact one kept.
std::vector<WeightFormatId> uniform_formats(const SensitivityInput& in, const PlanBudget& budget, const Target& target) {
  struct Fit {
    uint64_t bits;
    int fallbacks;
    WeightFormatId format;
    std::vector<WeightFormatId> allocation;
  };
  std::vector<Fit> fitting;
  for (const WeightFormatTraits& f : weight_formats()) {
    if (f.value_kind == ValueKind::Half) continue;
    uint64_t weights = 0;
    int fallbacks = 0;
    std::vector<WeightFormatId> allocation;
    const auto bits = uniform_bits(in, target, f.id, &weights, &fallbacks, &allocation);
    if (bits && *bits <= budget.cap_bits(weights)) fitting.push_back({*bits, fallbacks, f.id, std::move(allocation)});
  }
  std::stable_sort(fitting.begin(), fitting.end(), [](const Fit& a, const Fit& b) {
    return a.bits != b.bits ? a.bits > b.bits : a.fallbacks < b.fallbacks;
  });
  std::vector<WeightFormatId> out;
  std::vector<std::vector<WeightFormatId>> taken;
  for (const Fit& f : fitting) {
    if (out.size() == 3) break;
    if (std::find(taken.begin(), taken.end(), f.allocation) != taken.end()) continue;
    taken.push_back(f.allocation);
    out.push_back(f.format);
  }
  return out;
}

// The average bits the budget allows (bytes budgets converted over the file's weights).
double budget_bits(const SensitivityInput& in, const PlanBudget& budget) {
  if (budget.bytes == 0) return budget.bits_per_weight;
  uint64_t weights = 0;
  for (const auto& t : in.tensors) weights += static_cast<uint64_t>(t.rows) * static_cast<uint64_t>(t.cols);
  return weights ? 8.0 * static_cast<double>(budget.bytes) / static_cast<double>(weights) : 0;
}

// Formats for the methods that place formats by rank (tiers, rule, bqp), from those the target
// runs on every tensor and the analysis measured: `low` < `mid` <= the budget's bits < `high`,
// where high is an 8-bit format when the target runs one (else bf16: the kept weights).
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
  if ((!r.high || budget_bits >= 7) && accepted_everywhere(in, target, WeightFormatId::BF16)) r.high = WeightFormatId::BF16;
  return r;
}

}  // namespace

std::string planner_cost(bool kld, bool fisher, bool output) {
  if (kld) return "kld";
  if (fisher) return "fisher";
  if (output) return "output";
  fail("--analyze", "the analysis must measure kld, fisher or output for the planners");
}

std::vector<WeightFormatId> analysis_formats_for(const Target& target,
                                                 const std::vector<std::pair<int64_t, int64_t>>& shapes) {
  const bool llama = std::find(target.engines.begin(), target.engines.end(), Engine::LlamaCpp) != target.engines.end();
  std::vector<WeightFormatId> candidates;
  if (llama) {
    for (const WeightFormatTraits& f : weight_formats()) {
      if (is_ggml_format(f)) candidates.push_back(f.id);
    }
  } else {
    candidates = default_sensitivity_formats();
  }
  auto everywhere = [&](WeightFormatId f, const Target& t) {
    return std::all_of(shapes.begin(), shapes.end(), [&](const auto& s) { return t.accepts(f, s.first, s.second); });
  };
  std::vector<WeightFormatId> out;
  for (WeightFormatId f : candidates) {
    if (everywhere(f, target)) out.push_back(f);
  }
  if (out.empty()) {
    // No format the target runs fits every tensor (ggml blocks on rows of 172): the analysis
    // measures the default formats mpq can hold, for the report; plans over them are then refused
    // by the target, with the reason, and only the uniform schemes (with their fallbacks) remain.
    for (WeightFormatId f : default_sensitivity_formats()) {
      if (everywhere(f, Target{{Engine::Mpq}})) out.push_back(f);
    }
  }
  check(!out.empty(), "--target", "no quantized format fits every tensor of this model");
  return out;
}

std::vector<AutoCandidate> make_candidates(const SensitivityInput& in, const CandidateRequest& o) {
  std::vector<AutoCandidate> out;
  const Target& target = o.target;
  auto planned = [&](const std::string& name, const std::string& method, const std::string& plan_cost,
                     std::vector<WeightFormatId> formats) {
    AutoCandidate c{name, "plan", method, plan_cost, "", std::nullopt, ""};
    PlanRequest req;
    req.method = method;
    if (!plan_cost.empty()) req.cost = plan_cost;
    req.formats = std::move(formats);
    req.quantizer = o.quantizer;
    req.target = target;
    req.fused_same = target.needs_fused_same();
    if (o.budget.bytes > 0) req.bytes = o.budget.bytes;
    else req.bits = o.budget.bits_per_weight;
    try {
      c.plan = make_plan(in, req);
      c.plan->head = o.head;
      c.cost = c.plan->cost;
    } catch (const Error& e) {
      c.failure = e.what();
    }
    out.push_back(std::move(c));
  };
  const double bits = budget_bits(in, o.budget);
  const RankFormats rank = rank_formats(in, target, bits);
  auto skipped = [&](const std::string& name, const std::string& method, const std::string& why) {
    out.push_back({name, "plan", method, o.cost, "", std::nullopt, why});
  };
  const std::string& cost = o.cost;
  for (const std::string& m : o.methods) {
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
        skipped("tiers-" + cost, "tiers", "the target runs too few formats for three tiers");
      }
    } else if (m == "rule") {
      if (rank.high && rank.mid) planned("rule", "rule", "", {*rank.mid, *rank.high});
      else skipped("rule", "rule", "the target runs too few formats for the rule");
    } else if (m == "bqp") {
      if (in.shapley.is_object()) planned("bqp-shapley", "bqp", "shapley", {});
      else if (rank.high && rank.mid) planned("bqp-" + cost, "bqp", cost, {*rank.high, *rank.mid});
      else skipped("bqp-" + cost, "bqp", "the target runs too few formats for bqp");
    } else if (m == "uniform") {
      for (WeightFormatId f : uniform_formats(in, o.budget, target)) {
        const Scheme s{f, o.quantizer};
        out.push_back({std::string("uniform-") + weight_format(f).name, "uniform", "uniform", "", s.name(), std::nullopt, ""});
      }
    } else {
      fail("--methods", "unknown candidate kind '" + m + "' (valid: knapsack, channels, tiers, rule, bqp, uniform)");
    }
  }
  return out;
}

}  // namespace mpq
