// Internal to src/calib: pieces shared by the sensitivity methods (sensitivity.cpp for the
// gradient and output methods, sensitivity_kld.cpp for kld and shapley).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "calib/sensitivity.h"

namespace mpq {

// A Linear layer's weights as fp32 [out, in].
std::vector<float> weights_f32(const Linear& lin);
// The RTN-dequantized weights of `format`.
std::vector<float> rtn_dequantized(WeightFormatId format, const std::vector<float>& w, int64_t rows,
                                   int64_t cols);

// Progress lines "[analyze] PHASE i/n, elapsed X s, ETA Y s" on stderr.
class Progress {
 public:
  Progress(bool enabled, std::string phase, int total);
  void step(int done) const;

 private:
  bool enabled_;       // print at all
  std::string phase_;  // what is being counted
  int total_;          // steps in the phase
  std::chrono::steady_clock::time_point start_;  // for elapsed / ETA
};

// The kld method: fills TensorSensitivity::kld of every tensor of `r` (formats r.formats).
void run_kld_method(Model& model, const SensitivityOptions& options, SensitivityResult& r,
                    nlohmann::json& checkpoint);
// The shapley method: fills r.shapley.
void run_shapley_method(Model& model, const SensitivityOptions& options, SensitivityResult& r,
                        nlohmann::json& checkpoint);

}  // namespace mpq
