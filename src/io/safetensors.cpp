#include "io/safetensors.h"

#include "io/output.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "mpq/error.h"

namespace mpq {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian values; mpq maps them in place");

namespace {

using nlohmann::json;

// Largest header accepted. Real headers are at most a few MB; the reference implementation uses
// the same limit. A larger N is a corrupt (or hostile) file, not a big model.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// A valid header nests 3 levels (object > tensor object > shape array). Deeper nesting is refused
// while parsing, before a pathological header can build a huge tree.
constexpr int kMaxJsonDepth = 8;
constexpr const char* kMetadataKey = "__metadata__";

struct DTypeRow {
  const char* name;
  uint64_t size;              // bytes per element
  std::optional<DType> type;  // mpq storage type, when there is one
};

// Every dtype name the safetensors format defines.
const DTypeRow kDTypes[] = {
    {"BOOL", 1, std::nullopt},    {"U8", 1, std::nullopt},      {"I8", 1, DType::I8},
    {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt}, {"U16", 2, std::nullopt},
    {"I16", 2, DType::I16},       {"F16", 2, DType::F16},       {"BF16", 2, DType::BF16},
    {"U32", 4, std::nullopt},     {"I32", 4, DType::I32},       {"F32", 4, DType::F32},
    {"U64", 8, std::nullopt},     {"I64", 8, DType::I64},       {"F64", 8, DType::F64},
};

const DTypeRow* find_dtype(std::string_view name) {
  for (const DTypeRow& row : kDTypes)
    if (name == row.name) return &row;
  return nullptr;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// numel * element_size in bytes, or nullopt on overflow. numel itself must fit in int64
// (TensorRecord::numel).
std::optional<uint64_t> checked_nbytes(const std::vector<int64_t>& shape, uint64_t element_size) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
  }
  if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  if (__builtin_mul_overflow(n, element_size, &n)) return std::nullopt;
  return n;
}

// A JSON integer >= 0 that fits in `max`, or nullopt (negative, fractional, too big, not a number).
std::optional<uint64_t> as_count(const json& v, uint64_t max) {
  if (!v.is_number_unsigned()) return std::nullopt;  // nlohmann stores non-negative ints unsigned
  uint64_t x = v.get<uint64_t>();
  if (x > max) return std::nullopt;
  return x;
}

const char* json_kind(const json& v) {
  if (v.is_number_unsigned()) return "too large";
  if (v.is_number_integer()) return "a negative integer";
  if (v.is_number_float()) return "a non-integer number";
  return v.type_name();
}

// Parses one tensor entry of the header. `data_size` is the length of the data section.
SafetensorsTensor parse_entry(const std::string& path, const std::string& name, const json& e,
                              const uint8_t* data, uint64_t data_size) {
  const std::string where = "tensor '" + name + "': ";
  if (!e.is_object())
    fail(path, where + "header entry is " + e.type_name() + ", expected an object");
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!e.contains(field)) fail(path, where + "missing field '" + field + "'");

  SafetensorsTensor t;
  t.name = name;
  const json& dtype = e["dtype"];
  if (!dtype.is_string())
    fail(path, where + "'dtype' is " + dtype.type_name() + ", expected a string");
  t.dtype = dtype.get<std::string>();
  const DTypeRow* row = find_dtype(t.dtype);
  if (row == nullptr) fail(path, where + "unsupported dtype '" + t.dtype + "'");
  t.type = row->type;

  const json& shape = e["shape"];
  if (!shape.is_array())
    fail(path, where + "'shape' is " + shape.type_name() + ", expected an array");
  for (size_t i = 0; i < shape.size(); ++i) {
    auto d = as_count(shape[i], std::numeric_limits<int64_t>::max());
    if (!d)
      fail(path, where + "shape[" + std::to_string(i) + "] is " + json_kind(shape[i]) +
                     ", expected a non-negative integer");
    t.shape.push_back(static_cast<int64_t>(*d));
  }

  const json& offsets = e["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2)
    fail(path, where + "'data_offsets' must be an array [begin, end]");
  auto begin = as_count(offsets[0], std::numeric_limits<uint64_t>::max());
  auto end = as_count(offsets[1], std::numeric_limits<uint64_t>::max());
  if (!begin || !end) fail(path, where + "'data_offsets' must hold two non-negative integers");
  if (*begin > *end)
    fail(path, where + "data_offsets [" + std::to_string(*begin) + ", " + std::to_string(*end) +
                   "] begin after end");
  if (*end > data_size)
    fail(path, where + "data_offsets [" + std::to_string(*begin) + ", " + std::to_string(*end) +
                   "] out of range: the data section has " + std::to_string(data_size) + " bytes");

  auto nbytes = checked_nbytes(t.shape, row->size);
  if (!nbytes)
    fail(path, where + "shape " + shape_string(t.shape) + " overflows (element count too large)");
  if (*nbytes != *end - *begin)
    fail(path, where + "dtype " + t.dtype + " and shape " + shape_string(t.shape) + " need " +
                   std::to_string(*nbytes) + " bytes but data_offsets span " +
                   std::to_string(*end - *begin));
  t.data = data + *begin;
  t.nbytes = *nbytes;
  return t;
}

}  // namespace

std::optional<uint64_t> safetensors_dtype_size(std::string_view dtype) {
  const DTypeRow* row = find_dtype(dtype);
  return row ? std::optional<uint64_t>(row->size) : std::nullopt;
}

std::optional<DType> safetensors_dtype_to_mpq(std::string_view dtype) {
  const DTypeRow* row = find_dtype(dtype);
  return row ? row->type : std::nullopt;
}

const char* safetensors_dtype_name(DType type) {
  for (const DTypeRow& row : kDTypes)
    if (row.type == type) return row.name;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Reader

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  const uint64_t size = file_.size();
  if (size < 8)
    fail(path, "file is " + std::to_string(size) +
                   " bytes, too short for a safetensors header length (8 bytes)");
  uint64_t n = 0;
  std::memcpy(&n, file_.data(), 8);
  if (n > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(n) + " is absurd (limit " +
                   std::to_string(kMaxHeaderBytes) + " bytes): not a safetensors file?");
  if (n > size - 8)
    fail(path, "header length " + std::to_string(n) + " runs past the end of the file (" +
                   std::to_string(size) + " bytes)");
  const char* header = reinterpret_cast<const char*>(file_.data()) + 8;
  if (n == 0 || header[0] != '{')
    fail(path, "header does not start with '{': not a safetensors file?");
  const uint8_t* data = file_.data() + 8 + n;
  const uint64_t data_size = size - 8 - n;

  // The callback sees every top-level key (depth 1), which catches duplicate tensor names: the
  // JSON object itself would silently keep only the last one. It also bounds the nesting depth.
  std::set<std::string> keys;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxJsonDepth) fail(path, "header JSON is nested too deeply");
    if (event == json::parse_event_t::key && depth == 1) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!keys.insert(key).second) fail(path, "duplicate tensor name '" + key + "' in the header");
    }
    return true;
  };
  json root;
  try {
    // Trailing spaces (the padding the format allows) are whitespace to the parser.
    root = json::parse(header, header + n, callback);
  } catch (const json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!root.is_object()) fail(path, "header is not a JSON object");

  for (const auto& [name, entry] : root.items()) {
    if (name == kMetadataKey) {
      if (!entry.is_object())
        fail(path, "__metadata__ is " + std::string(entry.type_name()) + ", expected an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string())
          fail(path,
               "__metadata__ entry '" + key + "' is " + value.type_name() + ", expected a string");
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    tensors_.push_back(parse_entry(path, name, entry, data, data_size));
  }

  // The ranges must tile the data section: sorted by offset, each starts where the previous one
  // ended (zero-size tensors sit between), and the last one ends at the end of the file.
  std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) {
    return std::pair(a.data, a.data + a.nbytes) < std::pair(b.data, b.data + b.nbytes);
  });
  uint64_t covered = 0;
  const SafetensorsTensor* prev = nullptr;
  for (const SafetensorsTensor& t : tensors_) {
    const uint64_t begin = static_cast<uint64_t>(t.data - data);
    if (begin < covered)
      fail(path, "tensors '" + prev->name + "' and '" + t.name + "' overlap in the data section");
    if (begin > covered)
      fail(path, "data section bytes [" + std::to_string(covered) + ", " + std::to_string(begin) +
                     ") belong to no tensor (the format allows no holes)");
    covered = begin + t.nbytes;
    prev = &t;
  }
  if (covered != data_size)
    fail(path, "data section has " + std::to_string(data_size) + " bytes but the tensors cover " +
                   std::to_string(covered) + " (trailing bytes belong to no tensor)");
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

TensorRecord SafetensorsFile::record(const SafetensorsTensor& tensor) const {
  if (!tensor.type)
    fail(path(), "tensor '" + tensor.name + "' has unsupported dtype '" + tensor.dtype +
                     "' (mpq reads F32, F16, BF16, F64, I8, I16, I32, I64)");
  TensorRecord r;
  r.name = tensor.name;
  r.dtype = *tensor.type;
  r.shape = tensor.shape;
  r.data = tensor.data;
  r.nbytes = tensor.nbytes;
  r.file = path();
  return r;
}

// ---------------------------------------------------------------------------------------------
// Writer

void SafetensorsWriter::add(const std::string& name, DType type, const std::vector<int64_t>& shape,
                            const void* data, uint64_t nbytes) {
  const char* dtype = safetensors_dtype_name(type);
  if (dtype == nullptr)
    fail("safetensors writer", "tensor '" + name + "': storage type #" +
                                   std::to_string(static_cast<int>(type)) +
                                   " (a GGUF block type) cannot be stored in safetensors");
  add_entry(name, dtype, shape, data, nbytes, /*copy=*/true);
}

void SafetensorsWriter::add(const std::string& name, const std::string& dtype,
                            const std::vector<int64_t>& shape, const void* data, uint64_t nbytes) {
  add_entry(name, dtype, shape, data, nbytes, /*copy=*/true);
}

void SafetensorsWriter::add_view(const std::string& name, const std::string& dtype,
                                 const std::vector<int64_t>& shape, const void* data,
                                 uint64_t nbytes) {
  add_entry(name, dtype, shape, data, nbytes, /*copy=*/false);
}

void SafetensorsWriter::add_entry(const std::string& name, const std::string& dtype,
                                  const std::vector<int64_t>& shape, const void* data,
                                  uint64_t nbytes, bool copy) {
  const std::string where = "safetensors writer";
  if (name.empty() || name == kMetadataKey) fail(where, "invalid tensor name '" + name + "'");
  if (tensors_.count(name)) fail(where, "tensor '" + name + "' added twice");
  auto size = safetensors_dtype_size(dtype);
  if (!size) fail(where, "tensor '" + name + "': unsupported dtype '" + dtype + "'");
  auto need = checked_nbytes(shape, *size);
  if (!need) fail(where, "tensor '" + name + "': invalid shape " + shape_string(shape));
  if (*need != nbytes)
    fail(where, "tensor '" + name + "': dtype " + dtype + " and shape " + shape_string(shape) +
                    " need " + std::to_string(*need) + " bytes, got " + std::to_string(nbytes));
  if (nbytes > 0 && data == nullptr) fail(where, "tensor '" + name + "': no data");

  Entry e;
  e.dtype = dtype;
  e.shape = shape;
  e.nbytes = nbytes;
  e.element_size = *size;
  if (copy && nbytes > 0) {
    const auto* bytes = static_cast<const uint8_t*>(data);
    e.owned.assign(bytes, bytes + nbytes);
    e.data = e.owned.data();  // a vector's buffer does not move when the vector is moved
  } else {
    e.data = static_cast<const uint8_t*>(data);
  }
  tensors_.emplace(name, std::move(e));
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

namespace {

// Writes all of [data, data + n) to `fd`, retrying short writes. Returns errno, or 0.
int write_all(int fd, const uint8_t* data, uint64_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, std::min<uint64_t>(n, 1u << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += w;
    n -= static_cast<uint64_t>(w);
  }
  return 0;
}

}  // namespace

void SafetensorsWriter::write(const std::string& path) const {
  // Data order: element size descending, then name (std::map order; stable_sort keeps it).
  std::vector<std::pair<const std::string*, const Entry*>> order;
  for (const auto& [name, e] : tensors_) order.emplace_back(&name, &e);
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.second->element_size > b.second->element_size;
  });

  json header = json::object();
  if (!metadata_.empty()) header[kMetadataKey] = metadata_;
  uint64_t offset = 0;
  for (const auto& [name, e] : order) {
    header[*name] = {
        {"dtype", e->dtype}, {"shape", e->shape}, {"data_offsets", {offset, offset + e->nbytes}}};
    offset += e->nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data section starts 8-byte aligned
  const uint64_t n = text.size();

  const std::string tmp = temp_path_beside(path);  // io/output.h: never a user's file
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(tmp, std::string("cannot create: ") + std::strerror(errno));
  int err = write_all(fd, reinterpret_cast<const uint8_t*>(&n), 8);
  if (!err) err = write_all(fd, reinterpret_cast<const uint8_t*>(text.data()), n);
  for (size_t i = 0; i < order.size() && !err; ++i)
    err = write_all(fd, order[i].second->data, order[i].second->nbytes);
  if (!err && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && !err) err = errno;
  if (!err && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err) {
    ::unlink(tmp.c_str());
    fail(path, std::string("cannot write: ") + std::strerror(err) + (err == ENOSPC || err == EFBIG ? " (disk full?)" : ""));
  }
}

}  // namespace mpq
