#include "io/compressed_tensors.h"

#include <cmath>
#include <cstring>

#include "mpq/error.h"

namespace mpq {
namespace {

enum class Family { Half, IntPacked, Int8, Fp8, Fp4Packed };

// ggml block formats have no compressed-tensors form: refused with one line naming the format
// (a GGUF writer stores them).
void require_compressed_tensors_form(const WeightFormatTraits& f, const std::string& where) {
  if (is_ggml_format(f)) {
    fail(where, std::string("weight format ") + f.name +
                    " is a ggml block type with no compressed-tensors form: write it as GGUF");
  }
}

Family family_of(const WeightFormatTraits& f) {
  switch (f.value_kind) {
    case ValueKind::Half: return Family::Half;
    case ValueKind::FP8_E4M3: return Family::Fp8;
    case ValueKind::FP4_E2M1: return Family::Fp4Packed;
    case ValueKind::Int: return f.bits == 8 ? Family::Int8 : Family::IntPacked;
    case ValueKind::GgmlBlock: require_compressed_tensors_form(f, "compressed-tensors"); break;
  }
  return Family::Half;
}

const char* scale_dtype(ScaleType type) {
  switch (type) {
    case ScaleType::F32: return "F32";
    case ScaleType::F16: return "F16";
    case ScaleType::BF16: return "BF16";
    case ScaleType::E4M3: return "F8_E4M3";
    case ScaleType::E8M0: return "U8";
    case ScaleType::None: break;
  }
  return "";
}

template <class T>
void append(std::vector<uint8_t>& out, T value) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

// Packs `count` offset-binary codes, fetched by index, into little-endian int32 words of
// 32/bits values each (first value in the low bits).
std::vector<uint8_t> pack_words(int64_t count, int bits, const std::function<uint32_t(int64_t)>& code) {
  const int per_word = 32 / bits;
  std::vector<uint8_t> out;
  for (int64_t start = 0; start < count; start += per_word) {
    uint32_t word = 0;
    for (int j = 0; j < per_word && start + j < count; ++j) word |= code(start + j) << (bits * j);
    append(out, word);
  }
  return out;
}

uint32_t unpack_word_value(const uint8_t* words, int64_t index, int bits) {
  const int per_word = 32 / bits;
  uint32_t word;
  std::memcpy(&word, words + 4 * (index / per_word), 4);
  return (word >> (bits * (index % per_word))) & ((1u << bits) - 1);
}

}  // namespace

const char* compressed_tensors_format(WeightFormatId format) {
  const WeightFormatTraits& f = weight_format(format);
  require_compressed_tensors_form(f, "compressed-tensors");
  switch (family_of(f)) {
    case Family::Half: return "dense";
    case Family::IntPacked: return "pack-quantized";
    case Family::Int8: return "int-quantized";
    case Family::Fp8: return "float-quantized";
    case Family::Fp4Packed: return format == WeightFormatId::NVFP4 ? "nvfp4-pack-quantized" : "mxfp4-pack-quantized";
  }
  return "dense";
}

nlohmann::json compressed_tensors_weight_args(WeightFormatId format) {
  const WeightFormatTraits& f = weight_format(format);
  require_compressed_tensors_form(f, "compressed-tensors");
  if (f.value_kind == ValueKind::Half) return nullptr;
  const bool fp = f.value_kind != ValueKind::Int;
  std::string strategy = f.group_size == 0 ? "channel" : "group";
  if (format == WeightFormatId::NVFP4) strategy = "tensor_group";
  nlohmann::json args = {{"num_bits", f.bits},        {"type", fp ? "float" : "int"},
                         {"symmetric", f.symmetric}, {"strategy", strategy},
                         {"group_size", f.group_size == 0 ? nlohmann::json(nullptr) : nlohmann::json(f.group_size)},
                         {"dynamic", false},          {"actorder", nullptr},
                         {"observer", "minmax"}};
  return args;
}

std::vector<StoredTensor> encode_module(const std::string& module, const QuantizedMatrix& q) {
  const WeightFormatTraits& f = q.traits();
  require_compressed_tensors_form(f, module);
  const int64_t rows = q.rows, cols = q.cols, groups = q.groups;
  std::vector<StoredTensor> out;
  auto add = [&](const std::string& suffix, const char* dtype, std::vector<int64_t> shape,
                 std::vector<uint8_t> bytes) {
    out.push_back({module + "." + suffix, dtype, std::move(shape), std::move(bytes)});
  };
  auto scales = [&]() {
    add("weight_scale", scale_dtype(f.scale_type), {rows, groups}, q.scales);
  };
  switch (family_of(f)) {
    case Family::Half:
      add("weight", f.bits == 16 && f.id == WeightFormatId::BF16 ? "BF16" : "F16", {rows, cols}, q.codes);
      break;
    case Family::Int8: {
      // Offset-binary codes -> the signed integers compressed-tensors stores.
      std::vector<uint8_t> values(q.codes.size());
      for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<uint8_t>(q.codes[i] - 128);
      add("weight", "I8", {rows, cols}, std::move(values));
      scales();
      break;
    }
    case Family::Fp8:
      add("weight", "F8_E4M3", {rows, cols}, q.codes);
      scales();
      break;
    case Family::Fp4Packed: {
      const int64_t packed_cols = (cols + 1) / 2;
      std::vector<uint8_t> packed(rows * packed_cols, 0);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          packed[r * packed_cols + c / 2] |= static_cast<uint8_t>((q.codes[r * cols + c] & 0xF) << (4 * (c % 2)));
        }
      }
      add("weight_packed", "U8", {rows, packed_cols}, std::move(packed));
      scales();
      if (f.has_tensor_scale) {
        std::vector<uint8_t> bytes;
        append(bytes, q.tensor_scale);
        add("weight_global_scale", "F32", {1}, std::move(bytes));
      }
      break;
    }
    case Family::IntPacked: {
      const int per_word = 32 / f.bits;
      const int64_t words_per_row = (cols + per_word - 1) / per_word;
      std::vector<uint8_t> packed;
      for (int64_t r = 0; r < rows; ++r) {
        auto row = pack_words(cols, f.bits, [&](int64_t c) { return q.codes[r * cols + c]; });
        packed.insert(packed.end(), row.begin(), row.end());
      }
      add("weight_packed", "I32", {rows, words_per_row}, std::move(packed));
      scales();
      if (!f.symmetric) {
        // Zero points packed along the rows: word (w, g) holds rows w*per_word .. of group g.
        const int64_t row_words = (rows + per_word - 1) / per_word;
        std::vector<uint8_t> packed_zero;
        const uint32_t offset = 1u << (f.bits - 1);
        for (int64_t w = 0; w < row_words; ++w) {
          for (int64_t g = 0; g < groups; ++g) {
            uint32_t word = 0;
            for (int j = 0; j < per_word && w * per_word + j < rows; ++j) {
              word |= (static_cast<uint32_t>(q.zeros[(w * per_word + j) * groups + g] + static_cast<int32_t>(offset)) &
                       ((1u << f.bits) - 1)) << (f.bits * j);
            }
            append(packed_zero, word);
          }
        }
        add("weight_zero_point", "I32", {row_words, groups}, std::move(packed_zero));
      }
      std::vector<uint8_t> shape;
      append(shape, static_cast<int32_t>(rows));
      append(shape, static_cast<int32_t>(cols));
      add("weight_shape", "I32", {2}, std::move(shape));
      break;
    }
  }
  return out;
}

QuantizedMatrix decode_module(const std::string& module, WeightFormatId format, int64_t rows,
                              int64_t cols,
                              const std::function<const StoredTensor*(const std::string&)>& find,
                              const std::string& where) {
  require_compressed_tensors_form(weight_format(format), where + ": " + module);
  QuantizedMatrix q = make_quantized_matrix(format, rows, cols);
  const WeightFormatTraits& f = q.traits();
  const int64_t groups = q.groups;
  auto need = [&](const std::string& suffix, const char* dtype,
                  const std::vector<int64_t>& shape) -> const StoredTensor& {
    const std::string name = module + "." + suffix;
    const StoredTensor* t = find(name);
    if (t == nullptr) fail(where, "missing tensor '" + name + "' (format " + f.name + ")");
    if (t->dtype != dtype) {
      fail(where, "tensor '" + name + "' has dtype " + t->dtype + ", expected " + dtype + " for " + f.name);
    }
    if (t->shape != shape) {
      std::string got, want;
      for (int64_t d : t->shape) got += (got.empty() ? "" : ", ") + std::to_string(d);
      for (int64_t d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
      fail(where, "tensor '" + name + "' has shape [" + got + "], expected [" + want + "] for " + f.name);
    }
    return *t;
  };
  auto read_scales = [&]() {
    const StoredTensor& s = need("weight_scale", scale_dtype(f.scale_type), {rows, groups});
    q.scales = s.bytes;
  };
  switch (family_of(f)) {
    case Family::Half:
      q.codes = need("weight", f.id == WeightFormatId::BF16 ? "BF16" : "F16", {rows, cols}).bytes;
      break;
    case Family::Int8: {
      const StoredTensor& w = need("weight", "I8", {rows, cols});
      for (size_t i = 0; i < q.codes.size(); ++i) q.codes[i] = static_cast<uint8_t>(w.bytes[i] + 128);
      read_scales();
      break;
    }
    case Family::Fp8:
      q.codes = need("weight", "F8_E4M3", {rows, cols}).bytes;
      read_scales();
      break;
    case Family::Fp4Packed: {
      const int64_t packed_cols = (cols + 1) / 2;
      const StoredTensor& w = need("weight_packed", "U8", {rows, packed_cols});
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          q.codes[r * cols + c] = (w.bytes[r * packed_cols + c / 2] >> (4 * (c % 2))) & 0xF;
        }
      }
      read_scales();
      if (f.has_tensor_scale) {
        std::memcpy(&q.tensor_scale, need("weight_global_scale", "F32", {1}).bytes.data(), 4);
        if (!(q.tensor_scale > 0) || !std::isfinite(q.tensor_scale)) {
          fail(where, "tensor '" + module + ".weight_global_scale' is not a positive finite number");
        }
      }
      break;
    }
    case Family::IntPacked: {
      const int per_word = 32 / f.bits;
      const int64_t words_per_row = (cols + per_word - 1) / per_word;
      const StoredTensor& w = need("weight_packed", "I32", {rows, words_per_row});
      for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* row = w.bytes.data() + 4 * r * words_per_row;
        for (int64_t c = 0; c < cols; ++c) q.codes[r * cols + c] = static_cast<uint8_t>(unpack_word_value(row, c, f.bits));
      }
      read_scales();
      const StoredTensor& shape = need("weight_shape", "I32", {2});
      int32_t dims[2];
      std::memcpy(dims, shape.bytes.data(), 8);
      if (dims[0] != rows || dims[1] != cols) {
        fail(where, "tensor '" + module + ".weight_shape' says [" + std::to_string(dims[0]) + ", " +
                        std::to_string(dims[1]) + "], expected [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
      }
      if (!f.symmetric) {
        const int64_t row_words = (rows + per_word - 1) / per_word;
        const StoredTensor& z = need("weight_zero_point", "I32", {row_words, groups});
        const int32_t offset = 1 << (f.bits - 1);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t g = 0; g < groups; ++g) {
            uint32_t word;
            std::memcpy(&word, z.bytes.data() + 4 * ((r / per_word) * groups + g), 4);
            const uint32_t code = (word >> (f.bits * (r % per_word))) & ((1u << f.bits) - 1);
            q.zeros[r * groups + g] = static_cast<int8_t>(static_cast<int32_t>(code) - offset);
          }
        }
      }
      break;
    }
  }
  return q;
}

}  // namespace mpq
