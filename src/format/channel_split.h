// A channel-split weight matrix (MixLLM): the output channels (rows) of W [rows, cols] in two
// sets, each quantized in its own format and stored as its own matrix, so that a kernel runs the
// two as two matrix products and scatters their outputs into place.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/weight_format.h"

namespace mpq {

struct ChannelSplit {
  int64_t rows = 0;                  // output channels of the whole layer
  int64_t cols = 0;                  // input features
  std::vector<int32_t> high_rows;    // ascending: the rows held by `high`, in its row order
  std::vector<int32_t> low_rows;     // ascending: the complement, the rows held by `low`
  QuantizedMatrix high;              // [high_rows.size(), cols] (may have 0 rows)
  QuantizedMatrix low;               // [low_rows.size(), cols] (may have 0 rows)
};

// The complement of `high_rows` (ascending, unique, in [0, rows)) in [0, rows). Throws
// mpq::Error naming `where` when high_rows is not ascending, unique and in range.
std::vector<int32_t> complement_rows(const std::vector<int32_t>& high_rows, int64_t rows,
                                     const std::string& where);

// Checks sizes and row sets (throws mpq::Error naming `where`).
void check_channel_split(const ChannelSplit& split, const std::string& where);

// Exact storage bits of a [rows, cols] tensor split into n_high rows of `high` and rows − n_high
// of `low` (a set with no rows costs nothing, not even a tensor scale).
uint64_t split_storage_bits(WeightFormatId high, WeightFormatId low, int64_t n_high, int64_t rows,
                            int64_t cols);
// The same for a split matrix.
uint64_t channel_split_storage_bits(const ChannelSplit& split);

// Decodes the whole layer to fp32 [rows, cols] (scalar reference; rows in original order).
void dequantize(const ChannelSplit& split, float* out);

}  // namespace mpq
