// libFuzzer harness: a plan file (plan.json, docs/PLAN.md), written by `mpq plan` and editable by
// hand, as `mpq quantize --plan` reads it. The input is the file. Exercised: read_plan /
// plan_from_json, validate_plan against the Linear tensors of a small model (the synthetic model's
// shapes: 2 layers, GQA), plan_module_choice for every planned tensor, and the write -> read round
// trip (what a plan that was read says must survive being written and read again).
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "json_mutator.h"
#include "plan/plan.h"

using namespace mpq;

namespace {

// The Linear tensors of tests/synthetic_model.h's default model (dim 32, ffn 48, 4 heads of 8,
// 2 KV heads, 2 layers), as validate_plan sees a model.
std::vector<PlanTensorShape> model_tensors() {
  std::vector<PlanTensorShape> out;
  const int64_t dim = 32, ffn = 48, q = 32, kv = 16;
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    out.push_back({p + "self_attn.q_proj", q, dim});
    out.push_back({p + "self_attn.k_proj", kv, dim});
    out.push_back({p + "self_attn.v_proj", kv, dim});
    out.push_back({p + "self_attn.o_proj", dim, q});
    out.push_back({p + "mlp.gate_proj", ffn, dim});
    out.push_back({p + "mlp.up_proj", ffn, dim});
    out.push_back({p + "mlp.down_proj", dim, ffn});
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<PlanTensorShape> tensors = model_tensors();
  const std::string path = fuzz::scratch().file("plan.json");
  fuzz::write_file(path, {reinterpret_cast<const char*>(data), size});

  Plan plan;
  if (!fuzz::accepts([&] { plan = read_plan(path); })) return 0;
  for (const auto& entry : plan.tensors) fuzz::accepts([&] { plan_module_choice(plan, entry.first); });
  fuzz::accepts([&] { validate_plan(plan, tensors); });

  // Round trip: the plan as mpq would write it reads back with the same choices.
  const std::string copy = fuzz::scratch().file("plan-copy.json");
  fuzz::accepts([&] {
    write_plan(plan, copy);
    const Plan again = read_plan(copy);
    if (again.tensors.size() != plan.tensors.size() || again.unquantized != plan.unquantized) __builtin_trap();
    for (const auto& [name, e] : plan.tensors) {
      const PlanEntry& f = again.tensors.at(name);
      if (f.format != e.format || f.quantizer != e.quantizer || f.split != e.split ||
          f.high_channels != e.high_channels)
        __builtin_trap();
    }
  });
  return 0;
}

// JSON-aware mutations (json_mutator.h).
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned seed) {
  using mpq::fuzz::FileKind;
  return mpq::fuzz::mutate_files(data, size, max_size, seed, {FileKind::Json});
}
