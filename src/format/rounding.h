// Round-to-nearest-even on doubles, independent of the floating-point environment's rounding
// mode (std::rint/std::nearbyint follow the current mode; the codecs must not).
#pragma once

#include <cmath>

namespace mpq {

// Nearest integer to v; exact halves go to the even neighbour (2.5 -> 2, 3.5 -> 4, -2.5 -> -2).
inline double round_half_even(double v) {
  const double lower = std::floor(v);
  const double fraction = v - lower;  // exact: v and floor(v) share the exponent range
  if (fraction > 0.5) return lower + 1.0;
  if (fraction < 0.5) return lower;
  return std::fmod(lower, 2.0) == 0.0 ? lower : lower + 1.0;
}

}  // namespace mpq
