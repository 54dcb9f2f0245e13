// By-hand check behind scripts/ggml_vs_llama_quantize.sh (not part of the build): compares
// every ggml-typed 2-D tensor a llama-quantize run wrote with what mpq's encoders write for the
// same fp32 tensor.
//
//   ggml_vs_llama_quantize REF_F32.gguf QUANTIZED.gguf [IMATRIX.gguf]
//
// Without an imatrix: the codec's encode (= mpq's rtn). With one (importance = in_sum2 / counts,
// as llama-quantize reads it): the codec's encode_weighted, which should be llama.cpp's bytes,
// and rtn_clip (the same search with the never-worse guard), whose blocks may differ where the
// guard kept the plain encoder's; plus both searches' errors Σ w (x − x̂)² under the search
// weights and Σ imatrix (x − x̂)². One line per type found in the file.
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "format/ggml_codec.h"
#include "format/weight_format.h"
#include "io/gguf.h"
#include "quant/rtn.h"

using namespace mpq;

namespace {

struct Totals {
  int64_t tensors = 0, blocks = 0, differ = 0, guard_differ = 0;
  double search_error[2] = {0, 0}, imatrix_error[2] = {0, 0};  // [llama's search, rtn_clip]
};

const WeightFormatTraits* format_of(DType dtype) {
  const uint32_t id = ggml_type_of(dtype);
  for (const WeightFormatTraits& f : weight_formats()) {
    if (is_ggml_format(f) && f.ggml->ggml_type == id) return &f;
  }
  return nullptr;
}

int64_t differing_blocks(const uint8_t* a, const uint8_t* b, int64_t blocks, int block_bytes) {
  int64_t n = 0;
  for (int64_t i = 0; i < blocks; ++i) n += std::memcmp(a + i * block_bytes, b + i * block_bytes, block_bytes) != 0;
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s REF_F32.gguf QUANTIZED.gguf [IMATRIX.gguf]\n", argv[0]);
    return 2;
  }
  const GgufFile ref(argv[1]), quantized(argv[2]);
  std::unique_ptr<GgufFile> imatrix;
  if (argc > 3) imatrix = std::make_unique<GgufFile>(argv[3]);
  std::map<std::string, Totals> totals;
  for (const TensorRecord& t : quantized.tensors()) {
    const WeightFormatTraits* f = format_of(t.dtype);
    const TensorRecord* r = ref.find_tensor(t.name);
    if (f == nullptr || t.shape.size() != 2 || r == nullptr || r->dtype != DType::F32) continue;
    const GgmlBlockCodec& c = *f->ggml;
    const int64_t rows = t.shape[0], cols = t.shape[1], per_row = cols / c.block_values;
    const auto* x = reinterpret_cast<const float*>(r->data);
    std::vector<float> imp;
    if (imatrix) {
      const TensorRecord* sums = imatrix->find_tensor(t.name + ".in_sum2");
      const TensorRecord* counts = imatrix->find_tensor(t.name + ".counts");
      if (sums != nullptr && counts != nullptr) {
        float count;
        std::memcpy(&count, counts->data, sizeof count);
        imp.resize(static_cast<size_t>(cols));
        for (int64_t i = 0; i < cols; ++i) {
          imp[i] = count > 0.f ? reinterpret_cast<const float*>(sums->data)[i] / count : 1.f;
        }
      }
    }
    const bool weighted = !imp.empty() && c.encode_weighted != nullptr;
    Totals& tot = totals[f->name];
    ++tot.tensors;
    tot.blocks += rows * per_row;
    QuantizedMatrix ours = make_quantized_matrix(f->id, rows, cols);
    for (int64_t row = 0; row < rows; ++row) {
      if (weighted) {
        c.encode_weighted(x + row * cols, imp.data(), ours.block_row(row), cols);
      } else {
        c.encode(x + row * cols, ours.block_row(row), cols);
      }
    }
    tot.differ += differing_blocks(ours.codes.data(), t.data, rows * per_row, c.block_bytes);
    if (!weighted) continue;
    RtnOptions clip;
    clip.clip_search = true;
    clip.importance = imp.data();
    const QuantizedMatrix guarded = quantize_rtn(f->id, x, rows, cols, clip);
    tot.guard_differ += differing_blocks(guarded.codes.data(), t.data, rows * per_row, c.block_bytes);
    std::vector<float> w(static_cast<size_t>(cols)), decoded(static_cast<size_t>(rows * cols));
    for (int k = 0; k < 2; ++k) {
      dequantize(k == 0 ? ours : guarded, decoded.data());
      for (int64_t row = 0; row < rows; ++row) {
        c.search_weights(x + row * cols, imp.data(), w.data(), cols);
        for (int64_t i = 0; i < cols; ++i) {
          const double e = static_cast<double>(x[row * cols + i]) - decoded[row * cols + i];
          tot.search_error[k] += w[i] * e * e;
          tot.imatrix_error[k] += imp[i] * e * e;
        }
      }
    }
  }
  for (const auto& [name, t] : totals) {
    std::printf("%s %s: %lld tensors, %lld blocks, %lld differ from llama-quantize", argv[2], name.c_str(),
                static_cast<long long>(t.tensors), static_cast<long long>(t.blocks), static_cast<long long>(t.differ));
    if (t.search_error[0] > 0) {
      std::printf("; rtn_clip: %lld blocks differ, search-weights error %.4g (llama %.4g), imatrix error %.4g (llama %.4g)",
                  static_cast<long long>(t.guard_differ), t.search_error[1], t.search_error[0], t.imatrix_error[1],
                  t.imatrix_error[0]);
    }
    std::printf("\n");
  }
  return 0;
}
