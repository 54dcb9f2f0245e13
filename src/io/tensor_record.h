// A tensor as stored in a model file: a typed view into mapped memory, not a copy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/dtype.h"

namespace mpq {

struct TensorRecord {
  std::string name;            // name inside its file (GGUF: "blk.0.attn_q.weight")
  DType dtype = DType::F32;    // storage type
  std::vector<int64_t> shape;  // outermost first, as PyTorch and safetensors write it: a Linear
                               // weight is {out_features, in_features}. (GGUF stores ne[] innermost
                               // first; its reader reverses them.)
  const uint8_t* data = nullptr;  // first byte, inside a mapped file that outlives this record
  uint64_t nbytes = 0;            // bytes from `data`
  std::string file;               // path of the file holding it, for error messages

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

}  // namespace mpq
