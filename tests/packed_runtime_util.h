// Test helper shared by the packed-runtime tests: re-run a quantized in-memory model from packed
// (or decoded) weights, as the loader does with a quantized file.
#pragma once

#include "format/channel_split.h"
#include "mpq/model.h"

namespace mpq::test {

// Rebuilds every decoder Linear of `model` from its stored form under `runtime`.
inline void set_runtime(Model& model, const RuntimeOptions& runtime) {
  for (DecoderLayer& layer : model.layers) {
    for (Linear& lin : layer.linear) {
      if (auto q = lin.weights->quantized()) {
        lin.weights = make_quantized_weights(std::move(*q), runtime);
      } else if (auto s = lin.weights->channel_split()) {
        lin.weights = make_split_weights(std::move(*s), runtime);
      }
    }
  }
}

}  // namespace mpq::test
