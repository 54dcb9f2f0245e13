// libFuzzer harness: a sensitivity file (S.json and its sidecar S.bin, docs/SENSITIVITY.md), as
// `mpq plan S.json` reads it. Input: S.json [SEPARATOR S.bin] (fuzz_util.h). Exercised:
// read_sensitivity_input with the channel saliences (sidecar magic, sizes, offsets), then
// make_plan with every method on the costs read (small files only: the solvers' running time
// grows with the tensor count by design).
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "json_mutator.h"
#include "plan/planner.h"

using namespace mpq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = fuzz::split_files(data, size, 2);
  const std::string path = fuzz::scratch().file("S.json");
  const std::string bin_path = fuzz::scratch().file("S.bin");
  fuzz::write_file(path, parts[0]);
  if (parts.size() > 1) fuzz::write_file(bin_path, parts[1]);
  else fuzz::remove_file(bin_path);

  SensitivityInput input;
  if (!fuzz::accepts([&] { input = read_sensitivity_input(path, /*load_channels=*/true); })) return 0;
  if (input.tensors.size() > 64) return 0;
  struct Method {
    const char* name;
    const char* cost;
    double bits;
  };
  for (const Method& m : {Method{"knapsack", "fisher", 5.0}, Method{"tiers", "output", 9.0},
                          Method{"bqp", "kld", 6.0}, Method{"bqp", "shapley", 6.0},
                          Method{"channels", "fisher", 5.0}, Method{"rule", "fisher", 6.0}}) {
    PlanRequest request;
    request.method = m.name;
    request.cost = m.cost;
    request.bits = m.bits;
    request.knapsack_cells = 1 << 12;
    fuzz::accepts([&] { make_plan(input, request); });
  }
  return 0;
}

// JSON-aware mutations (json_mutator.h).
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned seed) {
  using mpq::fuzz::FileKind;
  return mpq::fuzz::mutate_files(data, size, max_size, seed, {FileKind::Json, FileKind::Binary});
}
