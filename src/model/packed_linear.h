// Internal to src/model: Linear weights that run straight from packed weights (kernel/packed.h).
// make_quantized_weights / make_split_weights (mpq/model.h) call these when
// RuntimeOptions::packed is set.
#pragma once

#include <memory>

#include "format/channel_split.h"
#include "mpq/model.h"

namespace mpq {

// One matrix, packed; the interchange form is dropped (quantized() unpacks a copy on demand).
std::unique_ptr<LinearWeights> make_packed_weights(QuantizedMatrix q, const RuntimeOptions& runtime);
// A channel-split layer as two packed matrices whose products write their rows into place.
std::unique_ptr<LinearWeights> make_packed_split_weights(ChannelSplit split, const RuntimeOptions& runtime);

}  // namespace mpq
