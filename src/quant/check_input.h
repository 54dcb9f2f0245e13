// The input check every quantizer starts with.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "format/weight_format.h"
#include "mpq/error.h"

namespace mpq {

// Throws mpq::Error naming the format and `quantizer` when w [rows, cols] is empty or holds a NaN
// or an infinity (and where).
inline void check_quantizer_input(const WeightFormatTraits& f, const char* quantizer, const float* w,
                                  int64_t rows, int64_t cols) {
  check(rows > 0 && cols > 0, f.name, std::string(quantizer) + ": empty matrix");
  const int64_t n = rows * cols;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(w[i])) {
      fail(f.name, std::string(quantizer) + ": non-finite weight at row " + std::to_string(i / cols) +
                       ", column " + std::to_string(i % cols));
    }
  }
}

}  // namespace mpq
