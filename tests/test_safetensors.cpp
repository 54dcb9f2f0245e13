// SafetensorsWriter -> SafetensorsFile round trips, and every malformed-file case the reader must
// refuse with a one-line mpq::Error naming the file.
#include "test_util.h"
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "mpq/error.h"

namespace mpq {
using mpq::test::TempDir;

namespace {

namespace fs = std::filesystem;


void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string u64_le(uint64_t n) {
  std::string s(8, '\0');
  std::memcpy(s.data(), &n, 8);
  return s;
}

// A safetensors file from a header text and `data_bytes` zero bytes of data.
std::string make_file(const std::string& header, size_t data_bytes) {
  return u64_le(header.size()) + header + std::string(data_bytes, '\0');
}

// Opening `path` must throw mpq::Error whose message starts with the path, contains `phrase`
// and fits on one line.
void expect_error(const std::string& path, const std::string& phrase) {
  try {
    SafetensorsFile f(path);
    ADD_FAILURE() << path << " opened, expected an error containing '" << phrase << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(phrase), std::string::npos) << "expected '" << phrase << "' in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Safetensors, WriterReaderRoundTrip) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");

  const std::vector<float> w = {1.5f, -2.f, 3.25f, 0.f, 1e-3f, -7.f};
  const std::vector<uint16_t> half = {0x3c00, 0xc000, 0x7bff, 0x0001};  // raw F16 bits
  const int64_t scalar = -42;
  const std::vector<uint8_t> packed = {0x12, 0x34, 0x56, 0x78, 0x9a};
  const std::vector<uint8_t> fp8 = {0x38, 0xb8, 0x7e};  // F8_E4M3 bytes
  const std::vector<int32_t> ints = {1, -2, 3, 1 << 30};
  const std::vector<double> f64 = {3.141592653589793};

  SafetensorsWriter writer;
  writer.add("layer.weight", DType::F32, {2, 3}, w.data(), w.size() * 4);
  writer.add("layer.half", DType::F16, {4}, half.data(), half.size() * 2);
  writer.add("count", DType::I64, {}, &scalar, 8);
  writer.add("weight_packed", "U8", {5}, packed.data(), packed.size());
  writer.add_view("weight_scale", "F8_E4M3", {3}, fp8.data(), fp8.size());
  writer.add("g_idx", "I32", {2, 2}, ints.data(), ints.size() * 4);
  writer.add("double", DType::F64, {1, 1}, f64.data(), 8);
  writer.add("empty", DType::F32, {0, 4}, nullptr, 0);
  writer.set_metadata("format", "pt");
  writer.set_metadata("quant", "{\"bits\": 4}");
  EXPECT_EQ(writer.size(), 8u);
  writer.write(path);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  // The header is padded so that the data section starts 8-byte aligned.
  const std::string bytes = read_bytes(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes[8], '{');

  SafetensorsFile f(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("quant"), "{\"bits\": 4}");
  ASSERT_EQ(f.tensors().size(), 8u);

  auto check = [&](const std::string& name, const std::string& dtype,
                   const std::vector<int64_t>& shape, const void* data, uint64_t nbytes) {
    SCOPED_TRACE(name);
    const SafetensorsTensor* t = f.find(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dtype, dtype);
    EXPECT_EQ(t->shape, shape);
    ASSERT_EQ(t->nbytes, nbytes);
    if (nbytes > 0) EXPECT_EQ(std::memcmp(t->data, data, nbytes), 0);
    // Writer order (element size descending) keeps every tensor aligned to its element size.
    const uint64_t size = *safetensors_dtype_size(dtype);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % size, 0u);
  };
  check("layer.weight", "F32", {2, 3}, w.data(), 24);
  check("layer.half", "F16", {4}, half.data(), 8);
  check("count", "I64", {}, &scalar, 8);
  check("weight_packed", "U8", {5}, packed.data(), 5);
  check("weight_scale", "F8_E4M3", {3}, fp8.data(), 3);
  check("g_idx", "I32", {2, 2}, ints.data(), 16);
  check("double", "F64", {1, 1}, f64.data(), 8);
  check("empty", "F32", {0, 4}, nullptr, 0);
  EXPECT_EQ(f.find("missing"), nullptr);

  // Records for mpq types; a clear error for the others.
  TensorRecord r = f.record(*f.find("layer.weight"));
  EXPECT_EQ(r.name, "layer.weight");
  EXPECT_EQ(r.dtype, DType::F32);
  EXPECT_EQ(r.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(r.numel(), 6);
  EXPECT_EQ(r.file, path);
  EXPECT_EQ(f.record(*f.find("layer.half")).dtype, DType::F16);
  EXPECT_EQ(f.record(*f.find("count")).dtype, DType::I64);
  try {
    f.record(*f.find("weight_packed"));
    ADD_FAILURE() << "U8 record should fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported dtype 'U8'"), std::string::npos) << e.what();
  }

  // Rewriting over an existing file replaces it.
  SafetensorsWriter small;
  small.add("x", DType::F32, {1}, w.data(), 4);
  small.write(path);
  SafetensorsFile g(path);
  EXPECT_EQ(g.tensors().size(), 1u);
  EXPECT_TRUE(g.metadata().empty());
}

TEST(Safetensors, EmptyFileWithNoTensors) {
  TempDir dir;
  const std::string path = dir.file("empty.safetensors");
  SafetensorsWriter().write(path);
  SafetensorsFile f(path);
  EXPECT_TRUE(f.tensors().empty());
}

TEST(Safetensors, DTypeTables) {
  EXPECT_EQ(safetensors_dtype_size("F32"), 4u);
  EXPECT_EQ(safetensors_dtype_size("BF16"), 2u);
  EXPECT_EQ(safetensors_dtype_size("F8_E4M3"), 1u);
  EXPECT_EQ(safetensors_dtype_size("U8"), 1u);
  EXPECT_EQ(safetensors_dtype_size("I64"), 8u);
  EXPECT_FALSE(safetensors_dtype_size("Q4_K").has_value());
  EXPECT_EQ(safetensors_dtype_to_mpq("BF16"), DType::BF16);
  EXPECT_FALSE(safetensors_dtype_to_mpq("U8").has_value());
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I8, DType::I16,
                  DType::I32, DType::I64})
    EXPECT_EQ(safetensors_dtype_to_mpq(safetensors_dtype_name(t)), t);
  EXPECT_EQ(safetensors_dtype_name(DType::Q4_K), nullptr);
}

TEST(Safetensors, WriterRejectsBadInput) {
  std::vector<float> v(6);
  SafetensorsWriter w;
  w.add("a", DType::F32, {2, 3}, v.data(), 24);
  EXPECT_THROW(w.add("a", DType::F32, {2, 3}, v.data(), 24), Error);         // duplicate
  EXPECT_THROW(w.add("b", DType::F32, {2, 3}, v.data(), 20), Error);         // size mismatch
  EXPECT_THROW(w.add("c", "F4_FOO", {6}, v.data(), 6), Error);               // unknown dtype
  EXPECT_THROW(w.add("d", DType::Q4_0, {32}, v.data(), 18), Error);          // GGUF block type
  EXPECT_THROW(w.add("e", DType::F32, {-1}, v.data(), 0), Error);            // negative dim
  EXPECT_THROW(w.add("__metadata__", DType::F32, {1}, v.data(), 4), Error);  // reserved name
  EXPECT_THROW(w.add("", DType::F32, {1}, v.data(), 4), Error);
  EXPECT_EQ(w.size(), 1u);
  TempDir dir;
  EXPECT_THROW(w.write(dir.file("no/such/dir/x.safetensors")), Error);
}

// --- malformed files ---------------------------------------------------------------------------

struct BadCase {
  const char* name;
  std::string bytes;
  const char* phrase;
};

TEST(Safetensors, MalformedFilesGiveErrorsNamingThePath) {
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  // clang-format off
  const std::vector<BadCase> cases = {
      {"empty", "", "too short"},
      {"truncated", "abc", "too short"},
      {"header_past_eof", u64_le(100) + "{}", "runs past the end"},
      {"absurd_header", u64_le(1ull << 62) + "{}", "absurd"},
      {"no_brace", make_file(R"( {"a":1})", 0), "does not start with '{'"},
      {"zero_header", u64_le(0), "does not start with '{'"},
      {"invalid_json", make_file(R"({"a": {"dtype": )", 0), "not valid JSON"},
      {"trailing_garbage", make_file(R"({} x)", 0), "not valid JSON"},
      {"bad_utf8", make_file("{\"\xff\":1}", 0), "not valid JSON"},
      {"entry_not_object", make_file(R"({"a": 5})", 0), "expected an object"},
      {"missing_dtype", make_file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8), "missing field 'dtype'"},
      {"missing_shape", make_file(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", 8), "missing field 'shape'"},
      {"missing_offsets", make_file(R"({"a":{"dtype":"F32","shape":[2]}})", 8), "missing field 'data_offsets'"},
      {"dtype_not_string", make_file(R"({"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", 4), "'dtype'"},
      {"unknown_dtype", make_file(R"({"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", 1), "unsupported dtype 'F4'"},
      {"shape_not_array", make_file(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8), "'shape'"},
      {"negative_dim", make_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "negative"},
      {"fractional_dim", make_file(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8), "non-integer"},
      {"string_dim", make_file(R"({"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", 8), "shape[0]"},
      {"numel_overflow", make_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8), "overflow"},
      {"bytes_overflow", make_file(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8), "overflow"},
      {"huge_dim", make_file(R"({"a":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,8]}})", 8), "shape[0] is too large"},
      {"offsets_out_of_range", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4), "out of range"},
      {"offsets_huge", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551615]}})", 8), "out of range"},
      {"begin_after_end", make_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8), "begin after end"},
      {"offsets_three", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", 8), "data_offsets"},
      {"offsets_negative", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8), "non-negative"},
      {"size_mismatch", make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "need 12 bytes but data_offsets span 8"},
      {"overlap", make_file("{" + ok_entry + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "overlap"},
      {"overlap_same", make_file("{" + ok_entry + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8), "overlap"},
      {"hole", make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "belong to no tensor"},
      {"trailing_data", make_file("{" + ok_entry + "}", 12), "trailing bytes"},
      {"duplicate_name", make_file("{" + ok_entry + "," + ok_entry + "}", 8), "duplicate tensor name 'a'"},
      {"metadata_not_object", make_file(R"({"__metadata__":[1]})", 0), "__metadata__"},
      {"metadata_not_string", make_file(R"({"__metadata__":{"k":1}})", 0), "__metadata__ entry 'k'"},
      {"deep_nesting", make_file("{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}", 0), "nested too deeply"},
  };
  // clang-format on
  TempDir dir;
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = dir.file(std::string(c.name) + ".safetensors");
    write_bytes(path, c.bytes);
    expect_error(path, c.phrase);
  }
}

TEST(Safetensors, HeaderPaddedWithSpacesIsAccepted) {
  TempDir dir;
  const std::string path = dir.file("padded.safetensors");
  write_bytes(path, make_file(R"({"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]}})" +
                                  std::string(13, ' '),
                              6));
  SafetensorsFile f(path);
  ASSERT_NE(f.find("a"), nullptr);
  EXPECT_EQ(f.find("a")->nbytes, 6u);
}

TEST(Safetensors, MissingFileAndDirectory) {
  TempDir dir;
  EXPECT_THROW(SafetensorsFile(dir.file("nope.safetensors")), Error);
  fs::create_directories(dir.file("sub"));
  EXPECT_THROW(SafetensorsFile(dir.file("sub")), Error);
}

// Every truncation and random byte corruption of a valid file either opens or throws mpq::Error:
// never a crash, a hang or an out-of-bounds read (run under ASan to see the last).
TEST(Safetensors, TruncatedAndCorruptedFilesNeverCrash) {
  TempDir dir;
  const std::string good = dir.file("good.safetensors");
  std::vector<float> v(12, 1.f);
  SafetensorsWriter w;
  w.add("a", DType::F32, {3, 4}, v.data(), 48);
  w.add("b", DType::F16, {2, 2}, v.data(), 8);
  w.add("c", "U8", {4}, v.data(), 4);
  w.set_metadata("format", "pt");
  w.write(good);
  const std::string bytes = read_bytes(good);
  const std::string path = dir.file("bad.safetensors");

  // Files are shrunk and overwritten in place: truncating to zero and rewriting makes ext4 flush
  // on close, which would make this test take seconds.
  int opened = 0;
  write_bytes(path, bytes);
  for (size_t len = bytes.size(); len-- > 0;) {
    fs::resize_file(path, len);
    try {
      SafetensorsFile f(path);
      ++opened;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
    }
  }
  EXPECT_EQ(opened, 0) << "a truncated file opened";

  write_bytes(path, bytes);
  std::mt19937 rng(1234);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string corrupt = bytes;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) {
      // Mostly the length and the header, where the checks are.
      const size_t pos = rng() % (8 + header_len);
      corrupt[pos] = static_cast<char>(rng() % 4 == 0 ? rng() : corrupt[pos] ^ (1 << (rng() % 8)));
    }
    std::fstream out(path, std::ios::binary | std::ios::in | std::ios::out);
    out.write(corrupt.data(), static_cast<std::streamsize>(corrupt.size()));
    out.close();
    try {
      SafetensorsFile f(path);
      uint64_t total = 0;
      for (const SafetensorsTensor& t : f.tensors()) total += t.nbytes;
      ASSERT_LE(total, bytes.size());
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace mpq
