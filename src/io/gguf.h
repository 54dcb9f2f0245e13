// GGUF v2/v3 reader (memory-mapped) and writer.
//
// File layout (all little endian):
//   u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//   n_kv x { string key | u32 value_type | value }
//   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] (innermost first) | u32 ggml_type |
//                 u64 offset (relative to the data section) }
//   padding to `general.alignment` (default 32) | data section
// where string = u64 length + bytes, and arrays = u32 element type + u64 count + elements.
// Version 1 (u32 counts) is refused.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "io/mapped_file.h"
#include "io/tensor_record.h"

namespace mpq {

// GGUF metadata value types, numbered as in the specification.
enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// One metadata value. Integers are widened (signed to int64, unsigned to uint64), floats to
// double; `type` keeps the stored type. Arrays hold their elements in the vector that matches
// their element type (strings, integers or floats) and `array_type` says which.
struct GgufValue {
  GgufType type = GgufType::UINT32;
  GgufType array_type = GgufType::UINT32;  // element type when type == ARRAY
  std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<std::string>,
               std::vector<int64_t>, std::vector<double>>
      value;
};

class GgufFile {
 public:
  // Opens and validates the file: header, every key/value, every tensor's dims, type, offset,
  // size and alignment, overlapping tensors and the data section past the end of the file.
  // Throws mpq::Error("<path>: <problem>") on any inconsistency.
  explicit GgufFile(const std::string& path);

  const std::string& path() const { return file_.path(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }

  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  bool has(const std::string& key) const { return metadata_.count(key) != 0; }

  // Typed getters: throw mpq::Error naming the file and key when the key is missing or holds a
  // value of another kind. Integer getters accept any integer type; float getters also accept
  // integers.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const std::vector<std::string>& get_string_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;
  std::vector<double> get_float_array(const std::string& key) const;
  // With a default when the key is absent (still throws when present with a wrong kind).
  std::string get_string(const std::string& key, const std::string& fallback) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;

  const std::vector<TensorRecord>& tensors() const { return tensors_; }
  const TensorRecord* find_tensor(const std::string& name) const;  // nullptr when absent

 private:
  MappedFile file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> metadata_;
  std::vector<TensorRecord> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Writes a GGUF v3 file. Tensors are written in the order added, each aligned. The output is
// written to "<path>.tmp" and renamed into place by finish(), so a crash never leaves a partial
// file under `path`.
class GgufWriter {
 public:
  explicit GgufWriter(std::string path, uint64_t alignment = 32);
  void set(const std::string& key, GgufValue value);
  // `shape` outermost first (as TensorRecord); `data` must hold dtype_nbytes(dtype, numel) bytes.
  void add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                  const void* data, uint64_t nbytes);
  // A tensor of any ggml type given by id and block geometry (`block_values` values in
  // `block_bytes` bytes; the innermost dimension must be whole blocks), for types mpq writes
  // without reading them back as a DType (ggml NVFP4).
  void add_tensor(const std::string& name, uint32_t ggml_type, int block_values, int block_bytes,
                  const std::vector<int64_t>& shape, const void* data, uint64_t nbytes);
  // A tensor's name and shape without data, for file_bytes(): its info counts in the header, its
  // data counts zero bytes. A writer holding one cannot finish().
  void add_tensor_info(const std::string& name, const std::vector<int64_t>& shape);
  // Bytes finish() would write now (header, padding, data).
  uint64_t file_bytes() const;
  // Writes the file (temporary name, then rename). `max_bytes` > 0: refuses, before writing
  // anything, a file that would be larger (a whole-file budget).
  void finish(uint64_t max_bytes = 0);

 private:
  struct PendingTensor {
    std::string name;
    uint32_t ggml_type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
    bool info_only;  // add_tensor_info
  };
  struct Layout {
    std::vector<uint8_t> header;    // padded to the alignment
    std::vector<uint64_t> offsets;  // of each tensor in the data section
    uint64_t data_size = 0;
  };
  Layout layout() const;
  std::string path_;
  uint64_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<PendingTensor> tensors_;
};

// Convenience constructors for GgufWriter::set.
GgufValue gguf_string(std::string s);
GgufValue gguf_u32(uint32_t v);
GgufValue gguf_i32(int32_t v);
GgufValue gguf_f32(float v);
GgufValue gguf_bool(bool v);
GgufValue gguf_string_array(std::vector<std::string> v);
GgufValue gguf_f32_array(const std::vector<float>& v);
GgufValue gguf_i32_array(const std::vector<int32_t>& v);

// ggml type id <-> DType (nullopt for ids mpq does not read).
std::optional<DType> dtype_from_ggml(uint32_t ggml_type);
uint32_t ggml_type_of(DType type);

}  // namespace mpq
