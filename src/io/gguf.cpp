// GGUF v2/v3 reader and v3 writer. Format summary in io/gguf.h; reference: the GGUF specification
// (ggml docs/gguf.md). Every length and count read from the file is checked against the bytes
// that remain before anything is allocated, so malformed files fail with an mpq::Error instead
// of crashing, hanging or exhausting memory.
#include "io/gguf.h"

#include "io/output.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>

#include "mpq/error.h"

namespace mpq {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint64_t kMaxAlignment = uint64_t{1} << 20;  // anything larger is treated as corrupt
constexpr uint32_t kMaxDims = 4;
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;              // empty key, type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // empty name, 1 dim, type, offset
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

static_assert(std::endian::native == std::endian::little, "GGUF I/O assumes a little-endian host");

// ggml type ids, with the ones mpq cannot decode named for clearer errors.
struct GgmlTypeRow {
  uint32_t id;                // ggml_type value
  const char* name;           // ggml's name for it
  std::optional<DType> dtype;  // nullopt when mpq does not read the type
};
constexpr GgmlTypeRow kGgmlTypes[] = {
    {0, "F32", DType::F32},     {1, "F16", DType::F16},         {2, "Q4_0", DType::Q4_0},
    {3, "Q4_1", DType::Q4_1},   {6, "Q5_0", DType::Q5_0},       {7, "Q5_1", DType::Q5_1},
    {8, "Q8_0", DType::Q8_0},   {9, "Q8_1", std::nullopt},      {10, "Q2_K", DType::Q2_K},
    {11, "Q3_K", DType::Q3_K},  {12, "Q4_K", DType::Q4_K},      {13, "Q5_K", DType::Q5_K},
    {14, "Q6_K", DType::Q6_K},  {15, "Q8_K", std::nullopt},     {16, "IQ2_XXS", std::nullopt},
    {17, "IQ2_XS", std::nullopt}, {18, "IQ3_XXS", std::nullopt}, {19, "IQ1_S", std::nullopt},
    {20, "IQ4_NL", DType::IQ4_NL}, {21, "IQ3_S", std::nullopt},  {22, "IQ2_S", std::nullopt},
    {23, "IQ4_XS", DType::IQ4_XS}, {24, "I8", DType::I8},        {25, "I16", DType::I16},
    {26, "I32", DType::I32},    {27, "I64", DType::I64},        {28, "F64", DType::F64},
    {29, "IQ1_M", std::nullopt}, {30, "BF16", DType::BF16},     {34, "TQ1_0", std::nullopt},
    {35, "TQ2_0", std::nullopt}, {39, "MXFP4", DType::MXFP4}, {40, "NVFP4", std::nullopt},
};

const GgmlTypeRow* find_ggml_type(uint32_t id) {
  for (const GgmlTypeRow& row : kGgmlTypes) {
    if (row.id == id) return &row;
  }
  return nullptr;
}

const char* type_name(GgufType t) {
  static constexpr const char* kNames[] = {"UINT8", "INT8",  "UINT16", "INT16", "UINT32",
                                           "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY",
                                           "UINT64", "INT64", "FLOAT64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

bool is_valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::FLOAT64); }
bool is_unsigned(GgufType t) {
  return t == GgufType::UINT8 || t == GgufType::UINT16 || t == GgufType::UINT32 ||
         t == GgufType::UINT64;
}
bool is_signed(GgufType t) {
  return t == GgufType::INT8 || t == GgufType::INT16 || t == GgufType::INT32 ||
         t == GgufType::INT64;
}
bool is_integer(GgufType t) { return is_unsigned(t) || is_signed(t); }
bool is_float(GgufType t) { return t == GgufType::FLOAT32 || t == GgufType::FLOAT64; }

// Bytes taken by one stored value of a fixed-size type (strings: the minimum, an empty one).
uint64_t stored_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    default: return 8;  // UINT64, INT64, FLOAT64, STRING length prefix
  }
}

// A name from the file, quoted for an error message: control bytes escaped (the message stays on
// one line) and long names shortened.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < 96; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > 96) out += "...";
  return out + "'";
}

uint64_t align_up(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

// Bounds-checked little-endian reads from the mapped file.
class Reader {
 public:
  Reader(const uint8_t* data, uint64_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  template <typename T>
  T read(const char* what) {
    if (remaining() < sizeof(T)) {
      fail(path_, "truncated file: " + std::to_string(size_) + " bytes, ends while reading " +
                      what + " at offset " + std::to_string(pos_));
    }
    T value;
    std::memcpy(&value, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  std::string string(const std::string& what) {
    const uint64_t at = pos_;
    const auto length = read<uint64_t>(what.c_str());
    if (length > remaining()) {
      fail(path_, what + ": string length " + std::to_string(length) + " at offset " +
                      std::to_string(at) + " runs past the end of the file (" +
                      std::to_string(size_) + " bytes)");
    }
    std::string s(reinterpret_cast<const char*>(data_ + pos_), length);
    pos_ += length;
    return s;
  }

 private:
  const uint8_t* data_;      // first byte of the file
  uint64_t size_;            // file size
  uint64_t pos_ = 0;         // next byte to read
  const std::string& path_;  // for error messages
};

// Reads one scalar of type `t` into `out`.
void read_scalar(Reader& r, GgufType t, const std::string& where, GgufValue& out) {
  const char* w = where.c_str();
  switch (t) {
    case GgufType::UINT8: out.value = uint64_t{r.read<uint8_t>(w)}; break;
    case GgufType::UINT16: out.value = uint64_t{r.read<uint16_t>(w)}; break;
    case GgufType::UINT32: out.value = uint64_t{r.read<uint32_t>(w)}; break;
    case GgufType::UINT64: out.value = r.read<uint64_t>(w); break;
    case GgufType::INT8: out.value = int64_t{r.read<int8_t>(w)}; break;
    case GgufType::INT16: out.value = int64_t{r.read<int16_t>(w)}; break;
    case GgufType::INT32: out.value = int64_t{r.read<int32_t>(w)}; break;
    case GgufType::INT64: out.value = r.read<int64_t>(w); break;
    case GgufType::FLOAT32: out.value = double{r.read<float>(w)}; break;
    case GgufType::FLOAT64: out.value = r.read<double>(w); break;
    case GgufType::BOOL: out.value = r.read<uint8_t>(w) != 0; break;
    case GgufType::STRING: out.value = r.string(where); break;
    case GgufType::ARRAY: break;  // handled by read_value
  }
}

GgufValue read_value(Reader& r, GgufType type, const std::string& where,
                     const std::string& path) {
  GgufValue v;
  v.type = type;
  if (type != GgufType::ARRAY) {
    read_scalar(r, type, where, v);
    return v;
  }
  const auto element_type = r.read<uint32_t>(where.c_str());
  if (!is_valid_type(element_type)) {
    fail(path, where + ": unknown array element value type " + std::to_string(element_type));
  }
  v.array_type = static_cast<GgufType>(element_type);
  if (v.array_type == GgufType::ARRAY) {
    fail(path, where + ": nested arrays (arrays of arrays) are not supported");
  }
  const uint64_t at = r.pos();
  const auto count = r.read<uint64_t>(where.c_str());
  if (count > r.remaining() / stored_size(v.array_type)) {
    fail(path, where + ": array of " + std::to_string(count) + " " + type_name(v.array_type) +
                   " at offset " + std::to_string(at) + " runs past the end of the file");
  }
  GgufValue element;
  if (v.array_type == GgufType::STRING) {
    std::vector<std::string> items;
    items.reserve(count);
    for (uint64_t i = 0; i < count; ++i) items.push_back(r.string(where));
    v.value = std::move(items);
  } else if (is_float(v.array_type)) {
    std::vector<double> items(count);
    for (uint64_t i = 0; i < count; ++i) {
      read_scalar(r, v.array_type, where, element);
      items[i] = std::get<double>(element.value);
    }
    v.value = std::move(items);
  } else {
    // Integers and bools. UINT64 elements keep their bit pattern (see get_int_array).
    std::vector<int64_t> items(count);
    for (uint64_t i = 0; i < count; ++i) {
      read_scalar(r, v.array_type, where, element);
      if (auto* u = std::get_if<uint64_t>(&element.value)) items[i] = static_cast<int64_t>(*u);
      else if (auto* s = std::get_if<int64_t>(&element.value)) items[i] = *s;
      else items[i] = std::get<bool>(element.value) ? 1 : 0;
    }
    v.value = std::move(items);
  }
  return v;
}

// Reads and checks one tensor info: name, dims (returned outermost first), type and size, and
// the offset into the data section (checked for alignment only; the caller checks the bounds).
TensorRecord read_tensor_info(Reader& r, const std::string& path, uint64_t alignment,
                              uint64_t& offset) {
  TensorRecord t;
  t.name = r.string("tensor info");
  t.file = path;
  const std::string where = "tensor " + quoted(t.name);
  const auto n_dims = r.read<uint32_t>(where.c_str());
  if (n_dims == 0 || n_dims > kMaxDims) {
    fail(path, where + ": n_dims " + std::to_string(n_dims) + " is out of range (1.." +
                   std::to_string(kMaxDims) + ")");
  }
  std::vector<int64_t> ne(n_dims);  // innermost first, as stored
  int64_t numel = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    const auto dim = r.read<uint64_t>(where.c_str());
    if (dim == 0) fail(path, where + ": dimension " + std::to_string(d) + " is 0");
    if (dim > static_cast<uint64_t>(kInt64Max)) {
      fail(path, where + ": dimension " + std::to_string(d) + " is negative (" +
                     std::to_string(static_cast<int64_t>(dim)) + ")");
    }
    ne[d] = static_cast<int64_t>(dim);
    if (__builtin_mul_overflow(numel, ne[d], &numel)) {
      fail(path, where + ": element count overflows int64");
    }
  }
  const auto ggml_type = r.read<uint32_t>(where.c_str());
  const std::optional<DType> dtype = dtype_from_ggml(ggml_type);
  if (!dtype) {
    if (const GgmlTypeRow* row = find_ggml_type(ggml_type)) {
      fail(path, where + ": ggml type " + std::to_string(ggml_type) + " (" + row->name +
                     ") is not supported");
    }
    fail(path, where + ": unknown ggml type " + std::to_string(ggml_type));
  }
  t.dtype = *dtype;
  offset = r.read<uint64_t>(where.c_str());

  const DTypeTraits& traits = dtype_traits(t.dtype);
  if (ne[0] % traits.block_size != 0) {
    fail(path, where + ": row length " + std::to_string(ne[0]) + " is not a multiple of the " +
                   traits.name + " block size " + std::to_string(traits.block_size));
  }
  const std::optional<uint64_t> nbytes = dtype_nbytes(t.dtype, numel);
  if (!nbytes) fail(path, where + ": byte size overflows int64");
  t.nbytes = *nbytes;
  if (offset % alignment != 0) {
    fail(path, where + ": offset " + std::to_string(offset) + " is not aligned to " +
                   std::to_string(alignment));
  }
  t.shape.assign(ne.rbegin(), ne.rend());
  return t;
}

// The value as an int64 when it is an integer that fits.
std::optional<int64_t> as_int(const GgufValue& v) {
  if (auto* u = std::get_if<uint64_t>(&v.value)) {
    if (*u > static_cast<uint64_t>(kInt64Max)) return std::nullopt;
    return static_cast<int64_t>(*u);
  }
  if (auto* s = std::get_if<int64_t>(&v.value)) return *s;
  return std::nullopt;
}

std::string kind_of(const GgufValue& v) {
  if (v.type == GgufType::ARRAY) return std::string("an array of ") + type_name(v.array_type);
  return std::string("a ") + type_name(v.type);
}

[[noreturn]] void wrong_kind(const std::string& path, const std::string& key,
                             const GgufValue& v, const char* expected) {
  fail(path, "key " + quoted(key) + " holds " + kind_of(v) + ", expected " + expected);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reader

GgufFile::GgufFile(const std::string& path) : file_(path) {
  Reader r(file_.data(), file_.size(), path);
  const auto magic = r.read<uint32_t>("the magic");
  if (magic != kMagic) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", magic);
    fail(path, std::string("not a GGUF file (bad magic ") + buf + ", expected \"GGUF\")");
  }
  version_ = r.read<uint32_t>("the version");
  if (version_ == 1) fail(path, "GGUF version 1 is not supported (only versions 2 and 3)");
  if (version_ == 0x02000000u || version_ == 0x03000000u) {
    fail(path, "big-endian GGUF files are not supported (version field byte-swapped)");
  }
  if (version_ != 2 && version_ != 3) {
    fail(path, "unsupported GGUF version " + std::to_string(version_) + " (only 2 and 3)");
  }
  const auto n_tensors = r.read<uint64_t>("the tensor count");
  const auto n_kv = r.read<uint64_t>("the key/value count");
  if (n_tensors > r.remaining() / kMinTensorInfoBytes) {
    fail(path, "tensor count " + std::to_string(n_tensors) + " is absurd for a file of " +
                   std::to_string(file_.size()) + " bytes");
  }
  if (n_kv > r.remaining() / kMinKvBytes) {
    fail(path, "key/value count " + std::to_string(n_kv) + " is absurd for a file of " +
                   std::to_string(file_.size()) + " bytes");
  }

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.string("key " + std::to_string(i));
    const std::string where = "key " + quoted(key);
    const auto type = r.read<uint32_t>(where.c_str());
    if (!is_valid_type(type)) fail(path, where + ": unknown value type " + std::to_string(type));
    GgufValue value = read_value(r, static_cast<GgufType>(type), where, path);
    if (!metadata_.try_emplace(std::move(key), std::move(value)).second) {
      fail(path, "duplicate key " + quoted(key));
    }
  }

  if (has("general.alignment")) {
    const std::optional<int64_t> a = as_int(metadata_.at("general.alignment"));
    if (!a || *a <= 0 || !std::has_single_bit(static_cast<uint64_t>(*a)) ||
        static_cast<uint64_t>(*a) > kMaxAlignment) {
      fail(path, "general.alignment must be a power of two integer up to " +
                     std::to_string(kMaxAlignment));
    }
    alignment_ = static_cast<uint64_t>(*a);
  }

  std::vector<uint64_t> offsets;  // per tensor, relative to the data section
  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    uint64_t offset = 0;
    TensorRecord t = read_tensor_info(r, path, alignment_, offset);
    if (tensor_index_.count(t.name)) fail(path, "duplicate tensor name " + quoted(t.name));
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
    offsets.push_back(offset);
  }

  // The data section starts at the next multiple of the alignment after the tensor infos.
  const uint64_t data_start = align_up(r.pos(), alignment_);
  const uint64_t data_size = data_start <= file_.size() ? file_.size() - data_start : 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    TensorRecord& t = tensors_[i];
    if (offsets[i] > data_size || t.nbytes > data_size - offsets[i]) {
      fail(path, "tensor " + quoted(t.name) + ": data at offset " + std::to_string(offsets[i]) +
                     " (" + std::to_string(t.nbytes) + " bytes) runs past the end of the file");
    }
    t.data = file_.data() + data_start + offsets[i];
  }

  // Overlap check: in offset order, each tensor must start at or after the previous one's end.
  std::vector<size_t> order(tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return offsets[a] < offsets[b]; });
  for (size_t k = 1; k < order.size(); ++k) {
    const size_t prev = order[k - 1], cur = order[k];
    if (offsets[cur] < offsets[prev] + tensors_[prev].nbytes) {
      fail(path, "tensors " + quoted(tensors_[prev].name) + " and " + quoted(tensors_[cur].name) +
                     " overlap in the data section");
    }
  }
}

const TensorRecord* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

const GgufValue& lookup(const std::map<std::string, GgufValue>& metadata,
                        const std::string& path, const std::string& key) {
  auto it = metadata.find(key);
  if (it == metadata.end()) fail(path, "key " + quoted(key) + " is missing");
  return it->second;
}

}  // namespace

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = lookup(metadata_, path(), key);
  if (v.type != GgufType::STRING) wrong_kind(path(), key, v, "a string");
  return std::get<std::string>(v.value);
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = lookup(metadata_, path(), key);
  if (!is_integer(v.type)) wrong_kind(path(), key, v, "an integer");
  const std::optional<int64_t> i = as_int(v);
  if (!i) fail(path(), "key " + quoted(key) + " holds a UINT64 too large for int64");
  return *i;
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = lookup(metadata_, path(), key);
  if (is_float(v.type)) return std::get<double>(v.value);
  if (auto* u = std::get_if<uint64_t>(&v.value)) return static_cast<double>(*u);
  if (auto* s = std::get_if<int64_t>(&v.value)) return static_cast<double>(*s);
  wrong_kind(path(), key, v, "a number");
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = lookup(metadata_, path(), key);
  if (v.type != GgufType::BOOL) wrong_kind(path(), key, v, "a bool");
  return std::get<bool>(v.value);
}

const std::vector<std::string>& GgufFile::get_string_array(const std::string& key) const {
  const GgufValue& v = lookup(metadata_, path(), key);
  if (v.type != GgufType::ARRAY || v.array_type != GgufType::STRING) {
    wrong_kind(path(), key, v, "an array of strings");
  }
  return std::get<std::vector<std::string>>(v.value);
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  const GgufValue& v = lookup(metadata_, path(), key);
  if (v.type != GgufType::ARRAY || !is_integer(v.array_type)) {
    wrong_kind(path(), key, v, "an array of integers");
  }
  const auto& items = std::get<std::vector<int64_t>>(v.value);
  if (v.array_type == GgufType::UINT64) {
    for (int64_t x : items) {
      if (x < 0) fail(path(), "key " + quoted(key) + " holds a UINT64 too large for int64");
    }
  }
  return items;
}

std::vector<double> GgufFile::get_float_array(const std::string& key) const {
  const GgufValue& v = lookup(metadata_, path(), key);
  if (v.type == GgufType::ARRAY && is_float(v.array_type)) {
    return std::get<std::vector<double>>(v.value);
  }
  if (v.type == GgufType::ARRAY && is_integer(v.array_type)) {
    const auto& items = std::get<std::vector<int64_t>>(v.value);
    std::vector<double> out(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      out[i] = v.array_type == GgufType::UINT64 ? static_cast<double>(static_cast<uint64_t>(items[i]))
                                                : static_cast<double>(items[i]);
    }
    return out;
  }
  wrong_kind(path(), key, v, "an array of numbers");
}

std::string GgufFile::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}
int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}
double GgufFile::get_float(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}
bool GgufFile::get_bool(const std::string& key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

// Little-endian byte buffer for the header, metadata and tensor infos.
struct ByteSink {
  std::vector<uint8_t> bytes;  // everything written so far
  template <typename T>
  void put(T value) {
    const auto* p = reinterpret_cast<const uint8_t*>(&value);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
};

// Range-checks an integer held as int64 (or uint64 bit pattern when `from_unsigned`) against the
// stored type `t` and writes it with that type's width.
void put_integer(ByteSink& out, GgufType t, uint64_t bits, bool from_unsigned,
                 const std::string& path, const std::string& key) {
  const auto as_signed = static_cast<int64_t>(bits);
  auto fits = [&](int64_t lo, uint64_t hi) {
    if (from_unsigned) return bits <= hi;
    return as_signed >= lo && (as_signed < 0 || static_cast<uint64_t>(as_signed) <= hi);
  };
  bool ok = true;
  switch (t) {
    case GgufType::UINT8: ok = fits(0, UINT8_MAX); out.put<uint8_t>(bits); break;
    case GgufType::UINT16: ok = fits(0, UINT16_MAX); out.put<uint16_t>(bits); break;
    case GgufType::UINT32: ok = fits(0, UINT32_MAX); out.put<uint32_t>(bits); break;
    case GgufType::UINT64: ok = true; out.put<uint64_t>(bits); break;  // bit pattern kept
    case GgufType::INT8: ok = fits(INT8_MIN, INT8_MAX); out.put<int8_t>(as_signed); break;
    case GgufType::INT16: ok = fits(INT16_MIN, INT16_MAX); out.put<int16_t>(as_signed); break;
    case GgufType::INT32: ok = fits(INT32_MIN, INT32_MAX); out.put<int32_t>(as_signed); break;
    case GgufType::INT64: ok = fits(INT64_MIN, INT64_MAX); out.put<int64_t>(as_signed); break;
    case GgufType::BOOL: ok = bits <= 1; out.put<uint8_t>(bits); break;
    default: ok = false;
  }
  if (!ok) fail(path, "key " + quoted(key) + ": value out of range for " + type_name(t));
}

// The alternative of `v.value` that the declared type needs; fails when the caller stored another.
template <typename T>
const T& held(const GgufValue& v, const std::string& path, const std::string& where) {
  if (const T* p = std::get_if<T>(&v.value)) return *p;
  fail(path, where + ": the C++ value does not match the declared type " + type_name(v.type));
}

void put_value(ByteSink& out, const GgufValue& v, const std::string& path, const std::string& key) {
  const std::string where = "key " + quoted(key);
  out.put<uint32_t>(static_cast<uint32_t>(v.type));
  if (is_integer(v.type)) {
    if (auto* u = std::get_if<uint64_t>(&v.value)) {
      put_integer(out, v.type, *u, true, path, key);
    } else {
      const int64_t s = held<int64_t>(v, path, where);
      put_integer(out, v.type, static_cast<uint64_t>(s), false, path, key);
    }
  } else if (v.type == GgufType::FLOAT32) {
    out.put<float>(static_cast<float>(held<double>(v, path, where)));
  } else if (v.type == GgufType::FLOAT64) {
    out.put<double>(held<double>(v, path, where));
  } else if (v.type == GgufType::BOOL) {
    out.put<uint8_t>(held<bool>(v, path, where) ? 1 : 0);
  } else if (v.type == GgufType::STRING) {
    out.put_string(held<std::string>(v, path, where));
  } else if (v.type == GgufType::ARRAY) {
    const GgufType et = v.array_type;
    out.put<uint32_t>(static_cast<uint32_t>(et));
    if (et == GgufType::STRING) {
      const auto& items = held<std::vector<std::string>>(v, path, where);
      out.put<uint64_t>(items.size());
      for (const std::string& s : items) out.put_string(s);
    } else if (is_float(et)) {
      const auto& items = held<std::vector<double>>(v, path, where);
      out.put<uint64_t>(items.size());
      for (double d : items) {
        if (et == GgufType::FLOAT32) out.put<float>(static_cast<float>(d));
        else out.put<double>(d);
      }
    } else if (is_integer(et) || et == GgufType::BOOL) {
      const auto& items = held<std::vector<int64_t>>(v, path, where);
      out.put<uint64_t>(items.size());
      for (int64_t x : items) put_integer(out, et, static_cast<uint64_t>(x), false, path, key);
    } else {
      fail(path, where + ": nested arrays (arrays of arrays) are not supported");
    }
  } else {
    fail(path, where + ": unknown value type " + std::to_string(static_cast<uint32_t>(v.type)));
  }
}

}  // namespace

GgufWriter::GgufWriter(std::string path, uint64_t alignment)
    : path_(std::move(path)), alignment_(alignment) {
  if (alignment_ == 0 || !std::has_single_bit(alignment_) || alignment_ > kMaxAlignment) {
    fail(path_, "GGUF alignment " + std::to_string(alignment_) + " must be a power of two up to " +
                    std::to_string(kMaxAlignment));
  }
}

void GgufWriter::set(const std::string& key, GgufValue value) {
  ByteSink probe;  // validates the value now, so errors point at the caller's set()
  put_value(probe, value, path_, key);
  for (auto& [k, v] : kv_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  kv_.emplace_back(key, std::move(value));
}

void GgufWriter::add_tensor(const std::string& name, DType dtype,
                            const std::vector<int64_t>& shape, const void* data, uint64_t nbytes) {
  const DTypeTraits& traits = dtype_traits(dtype);
  const std::optional<uint64_t> block = dtype_nbytes(dtype, traits.block_size);
  if (!block) fail(path_, "tensor " + quoted(name) + ": type " + traits.name + " cannot be written");
  add_tensor(name, ggml_type_of(dtype), traits.block_size, static_cast<int>(*block), shape, data, nbytes);
}

void GgufWriter::add_tensor(const std::string& name, uint32_t ggml_type, int block_values, int block_bytes,
                            const std::vector<int64_t>& shape, const void* data, uint64_t nbytes) {
  const std::string where = "tensor " + quoted(name);
  if (shape.empty() || shape.size() > kMaxDims) {
    fail(path_, where + ": needs 1.." + std::to_string(kMaxDims) + " dimensions");
  }
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d <= 0) fail(path_, where + ": dimension " + std::to_string(d) + " is not positive");
    if (__builtin_mul_overflow(numel, d, &numel)) fail(path_, where + ": element count overflows");
  }
  if (block_values <= 0 || block_bytes <= 0 || shape.back() % block_values != 0) {
    fail(path_, where + ": row length " + std::to_string(shape.back()) + " is not a multiple of the type's block of " +
                    std::to_string(block_values));
  }
  const uint64_t expected = static_cast<uint64_t>(numel / block_values) * static_cast<uint64_t>(block_bytes);
  if (expected != nbytes) {
    fail(path_, where + ": got " + std::to_string(nbytes) + " bytes for " + std::to_string(numel) +
                    " values of ggml type " + std::to_string(ggml_type));
  }
  for (const PendingTensor& t : tensors_) {
    if (t.name == name) fail(path_, "duplicate tensor name " + quoted(name));
  }
  const auto* bytes = static_cast<const uint8_t*>(data);
  tensors_.push_back({name, ggml_type, shape, std::vector<uint8_t>(bytes, bytes + nbytes), false});
}

// The header (magic, counts, key/values, tensor infos, padded to the alignment) and every
// tensor's offset in the data section: what finish() writes and file_bytes() counts.
GgufWriter::Layout GgufWriter::layout() const {
  auto kv = kv_;
  auto align_kv = std::find_if(kv.begin(), kv.end(),
                               [](const auto& p) { return p.first == "general.alignment"; });
  if (align_kv == kv.end()) {
    if (alignment_ != kDefaultAlignment) {
      kv.emplace_back("general.alignment", gguf_u32(static_cast<uint32_t>(alignment_)));
    }
  } else if (as_int(align_kv->second) != static_cast<int64_t>(alignment_)) {
    fail(path_, "general.alignment does not match the writer's alignment " +
                    std::to_string(alignment_));
  }

  ByteSink head;
  head.put<uint32_t>(kMagic);
  head.put<uint32_t>(3);
  head.put<uint64_t>(tensors_.size());
  head.put<uint64_t>(kv.size());
  for (const auto& [key, value] : kv) {
    head.put_string(key);
    put_value(head, value, path_, key);
  }
  Layout out;
  for (const PendingTensor& t : tensors_) {
    head.put_string(t.name);
    head.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) head.put<uint64_t>(*it);
    head.put<uint32_t>(t.ggml_type);
    out.data_size = align_up(out.data_size, alignment_);
    out.offsets.push_back(out.data_size);
    head.put<uint64_t>(out.data_size);
    out.data_size += t.bytes.size();
  }
  head.bytes.resize(align_up(head.bytes.size(), alignment_), 0);
  out.header = std::move(head.bytes);
  return out;
}

void GgufWriter::add_tensor_info(const std::string& name, const std::vector<int64_t>& shape) {
  for (const PendingTensor& t : tensors_) {
    if (t.name == name) fail(path_, "duplicate tensor name " + quoted(name));
  }
  tensors_.push_back({name, ggml_type_of(DType::F32), shape, {}, true});
}

uint64_t GgufWriter::file_bytes() const {
  const Layout l = layout();
  return l.header.size() + l.data_size;
}

void GgufWriter::finish(uint64_t max_bytes) {
  for (const PendingTensor& t : tensors_) {
    if (t.info_only) fail(path_, "tensor " + quoted(t.name) + " has no data (a size estimate cannot be written)");
  }
  const Layout l = layout();
  const uint64_t total = l.header.size() + l.data_size;
  if (max_bytes > 0 && total > max_bytes) {
    fail(path_, "would be " + std::to_string(total) + " bytes, over the plan's file budget of " +
                    std::to_string(max_bytes) + " bytes: nothing written");
  }
  const std::vector<uint64_t>& offsets = l.offsets;

  const std::string tmp = temp_path_beside(path_);  // io/output.h: never a user's file
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(tmp, std::string("cannot create: ") + std::strerror(errno));
  bool ok = std::fwrite(l.header.data(), 1, l.header.size(), f) == l.header.size();
  uint64_t written = 0;  // bytes of the data section so far
  const std::vector<uint8_t> zeros(alignment_, 0);
  for (size_t i = 0; ok && i < tensors_.size(); ++i) {
    const uint64_t pad = offsets[i] - written;
    ok = std::fwrite(zeros.data(), 1, pad, f) == pad &&
         std::fwrite(tensors_[i].bytes.data(), 1, tensors_[i].bytes.size(), f) ==
             tensors_[i].bytes.size();
    written = offsets[i] + tensors_[i].bytes.size();
  }
  const int saved_errno = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail(path_, std::string("cannot write: ") + std::strerror(saved_errno) +
                    (saved_errno == ENOSPC || saved_errno == EFBIG ? " (disk full?)" : ""));
  }
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    fail(path_, std::string("cannot rename from ") + tmp + ": " + std::strerror(err));
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

GgufValue gguf_string(std::string s) { return {GgufType::STRING, GgufType::UINT32, std::move(s)}; }
GgufValue gguf_u32(uint32_t v) { return {GgufType::UINT32, GgufType::UINT32, uint64_t{v}}; }
GgufValue gguf_i32(int32_t v) { return {GgufType::INT32, GgufType::UINT32, int64_t{v}}; }
GgufValue gguf_f32(float v) { return {GgufType::FLOAT32, GgufType::UINT32, double{v}}; }
GgufValue gguf_bool(bool v) { return {GgufType::BOOL, GgufType::UINT32, v}; }
GgufValue gguf_string_array(std::vector<std::string> v) {
  return {GgufType::ARRAY, GgufType::STRING, std::move(v)};
}
GgufValue gguf_f32_array(const std::vector<float>& v) {
  return {GgufType::ARRAY, GgufType::FLOAT32, std::vector<double>(v.begin(), v.end())};
}
GgufValue gguf_i32_array(const std::vector<int32_t>& v) {
  return {GgufType::ARRAY, GgufType::INT32, std::vector<int64_t>(v.begin(), v.end())};
}

std::optional<DType> dtype_from_ggml(uint32_t ggml_type) {
  const GgmlTypeRow* row = find_ggml_type(ggml_type);
  return row ? row->dtype : std::nullopt;
}

uint32_t ggml_type_of(DType type) {
  for (const GgmlTypeRow& row : kGgmlTypes) {
    if (row.dtype == type) return row.id;
  }
  fail("gguf", std::string("no ggml type for ") + dtype_name(type));
}

}  // namespace mpq
