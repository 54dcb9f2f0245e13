#include "format/channel_split.h"

#include <algorithm>
#include <string>

#include "mpq/error.h"

namespace mpq {

std::vector<int32_t> complement_rows(const std::vector<int32_t>& high_rows, int64_t rows,
                                     const std::string& where) {
  std::vector<int32_t> low;
  low.reserve(static_cast<size_t>(rows) - std::min<size_t>(high_rows.size(), static_cast<size_t>(rows)));
  size_t h = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (h < high_rows.size() && high_rows[h] == r) {
      ++h;
      continue;
    }
    low.push_back(static_cast<int32_t>(r));
  }
  if (h != high_rows.size()) {
    fail(where, "high-precision channels must be ascending, unique and below " + std::to_string(rows));
  }
  return low;
}

void check_channel_split(const ChannelSplit& s, const std::string& where) {
  check(s.rows > 0 && s.cols > 0, where, "channel split of an empty matrix");
  check(complement_rows(s.high_rows, s.rows, where) == s.low_rows, where,
        "low channels are not the complement of the high channels");
  auto check_part = [&](const QuantizedMatrix& q, size_t n, const char* part) {
    check(q.rows == static_cast<int64_t>(n) && (n == 0 || q.cols == s.cols), where,
          std::string(part) + " channel set has the wrong shape");
  };
  check_part(s.high, s.high_rows.size(), "high");
  check_part(s.low, s.low_rows.size(), "low");
}

uint64_t split_storage_bits(WeightFormatId high, WeightFormatId low, int64_t n_high, int64_t rows,
                            int64_t cols) {
  uint64_t bits = 0;
  if (n_high > 0) bits += storage_bits(high, n_high, cols);
  if (rows - n_high > 0) bits += storage_bits(low, rows - n_high, cols);
  return bits;
}

uint64_t channel_split_storage_bits(const ChannelSplit& s) {
  return split_storage_bits(s.high.format, s.low.format, s.high.rows, s.rows, s.cols);
}

void dequantize(const ChannelSplit& s, float* out) {
  std::vector<float> part;
  auto place = [&](const QuantizedMatrix& q, const std::vector<int32_t>& rows) {
    if (q.rows == 0) return;
    part.resize(static_cast<size_t>(q.rows * q.cols));
    dequantize(q, part.data());
    for (size_t i = 0; i < rows.size(); ++i) {
      std::copy_n(part.data() + static_cast<int64_t>(i) * s.cols, s.cols, out + static_cast<int64_t>(rows[i]) * s.cols);
    }
  };
  place(s.high, s.high_rows);
  place(s.low, s.low_rows);
}

}  // namespace mpq
