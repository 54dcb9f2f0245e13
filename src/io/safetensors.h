// Safetensors reader (memory-mapped) and writer.
//
// File layout (https://github.com/huggingface/safetensors, "Format"):
//   u64 N (little endian)            size of the header in bytes
//   N bytes of UTF-8 JSON            must start with '{'; may be padded at the end with spaces
//   data section                     everything after the header, to the end of the file
// The header is one JSON object:
//   { "__metadata__": { "<key>": "<string>", ... },          (optional, strings only)
//     "<tensor name>": { "dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end] },
//     ... }
// where [begin, end) is a byte range relative to the start of the data section, `shape` is
// outermost first (row-major, as PyTorch), and values are little endian. The spec requires the
// ranges to tile the data section exactly: no overlap, no hole, nothing left over; names are
// unique. The reader enforces all of it, and checks every number before it is used, so a
// malformed or hostile file gives a one-line mpq::Error "<path>: <problem>", never a read out of
// bounds.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/mapped_file.h"
#include "io/tensor_record.h"

namespace mpq {

// Bytes per element of a safetensors dtype name ("F32" -> 4, "F8_E4M3" -> 1, ...); nullopt for a
// name the format does not define. Known names: BOOL, U8, I8, F8_E4M3, F8_E5M2, U16, I16, F16,
// BF16, U32, I32, F32, U64, I64, F64.
std::optional<uint64_t> safetensors_dtype_size(std::string_view dtype);

// The mpq storage type of a safetensors dtype name, when mpq has one (F32, F16, BF16, F64, I8,
// I16, I32, I64); nullopt otherwise (U8, F8_E4M3, BOOL, ...).
std::optional<DType> safetensors_dtype_to_mpq(std::string_view dtype);

// The safetensors name of an mpq storage type; nullptr for types safetensors cannot hold (the GGUF
// block types).
const char* safetensors_dtype_name(DType type);

// One tensor of a safetensors file, as its header describes it.
struct SafetensorsTensor {
  std::string name;
  std::string dtype;              // safetensors name as written: "F32", "U8", "F8_E4M3", ...
  std::optional<DType> type;      // the mpq DType when there is one (see safetensors_dtype_to_mpq)
  std::vector<int64_t> shape;     // outermost first; {} is a scalar
  const uint8_t* data = nullptr;  // first byte inside the mapping (not aligned unless the writer
                                  // padded the header: SafetensorsWriter does)
  uint64_t nbytes = 0;            // == numel * element size, checked
};

class SafetensorsFile {
 public:
  // Maps and validates `path`. Throws mpq::Error "<path>: <problem>" on any violation.
  explicit SafetensorsFile(const std::string& path);
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return file_.path(); }
  // "__metadata__" (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // All tensors, in data-section order.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  // The tensor named `name`, or nullptr.
  const SafetensorsTensor* find(const std::string& name) const;
  // A TensorRecord view of `tensor` (which must belong to this file). Throws mpq::Error
  // "<path>: tensor '<name>' has unsupported dtype '<dtype>'" when mpq has no DType for it.
  TensorRecord record(const SafetensorsTensor& tensor) const;

 private:
  MappedFile file_;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsTensor> tensors_;  // sorted by data offset
  std::map<std::string, size_t> index_;     // name -> position in tensors_
};

// Collects tensors and metadata, then writes one safetensors file.
//
// Layout written: the header JSON (keys in name order, "__metadata__" when any metadata was set)
// padded with spaces to a multiple of 8 bytes, then the tensor data ordered by element size,
// largest first, then by name. With the data section starting 8-byte aligned, that order puts
// every tensor at an offset that is a multiple of its element size, so a reader can use the
// mapped bytes in place. The file is written to "<path>.tmp" and renamed over `path` only once
// complete: a reader never sees a half-written file.
class SafetensorsWriter {
 public:
  // Adds a tensor of an mpq storage type (F32, F16, BF16, F64, I8, I16, I32, I64), copying
  // `nbytes` bytes from `data`. Throws mpq::Error when the type has no safetensors name, the name
  // is already used or empty, or nbytes != numel * element size.
  void add(const std::string& name, DType type, const std::vector<int64_t>& shape, const void* data,
           uint64_t nbytes);
  // Same with a safetensors dtype name, for types mpq does not read as weights: "U8", "I8",
  // "I32", "F8_E4M3", "F8_E5M2", "BOOL", ... (the list of safetensors_dtype_size).
  void add(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
           const void* data, uint64_t nbytes);
  // Like add(), but without a copy: `data` must stay valid until write() returns.
  void add_view(const std::string& name, const std::string& dtype,
                const std::vector<int64_t>& shape, const void* data, uint64_t nbytes);

  // Sets a "__metadata__" entry (the format allows string values only).
  void set_metadata(const std::string& key, const std::string& value);

  size_t size() const { return tensors_.size(); }

  // Writes the file (atomically, see above). Throws mpq::Error naming `path` on I/O errors.
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> owned;     // the copy, when add() made one
    const uint8_t* data = nullptr;  // owned.data() or the caller's buffer
    uint64_t nbytes = 0;
    uint64_t element_size = 0;
  };
  void add_entry(const std::string& name, const std::string& dtype,
                 const std::vector<int64_t>& shape, const void* data, uint64_t nbytes, bool copy);

  std::map<std::string, Entry> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace mpq
