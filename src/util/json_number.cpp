#include "util/json_number.h"

#include <limits>

#include "mpq/error.h"

namespace mpq {

std::optional<int64_t> json_integer(const nlohmann::json& v, int64_t lo, int64_t hi) {
  // nlohmann keeps non-negative integers as unsigned: compare before converting.
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    const auto s = static_cast<int64_t>(u);
    if (s < lo || s > hi) return std::nullopt;
    return s;
  }
  if (v.is_number_integer()) {
    const int64_t s = v.get<int64_t>();
    if (s < lo || s > hi) return std::nullopt;
    return s;
  }
  return std::nullopt;
}

int64_t json_integer(const nlohmann::json& v, int64_t lo, int64_t hi, const std::string& where,
                     const std::string& what) {
  if (auto x = json_integer(v, lo, hi)) return *x;
  std::string shown = v.dump();
  if (shown.size() > 40) shown = shown.substr(0, 40) + "...";
  fail(where, what + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                  shown);
}

}  // namespace mpq
