// GGUF reader/writer: round trips, every malformed-file case (built with GgufWriter, then
// corrupted byte-wise), block decoders against gguf-py, and the real model files.
#include "test_util.h"
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/dtype.h"
#include "io/gguf.h"
#include "mpq/error.h"

namespace mpq {
using mpq::test::TempDir;

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;


Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Offset of the first occurrence of `needle` (a key or tensor name) in the file.
size_t find(const Bytes& bytes, const std::string& needle) {
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  EXPECT_NE(it, bytes.end()) << needle;
  return static_cast<size_t>(it - bytes.begin());
}

template <typename T>
void patch(Bytes& bytes, size_t at, T value) {
  std::memcpy(bytes.data() + at, &value, sizeof(T));
}

// Writes the reference file: keys "k.a", "k.b", "arr.tokens", ... and two tensors: "w.a" F32
// {2, 8} at data offset 0 and "w.b" Q4_0 {2, 32} at offset 64.
Bytes write_valid_file(const std::string& path, uint64_t alignment = 32) {
  GgufWriter w(path, alignment);
  w.set("general.architecture", gguf_string("llama"));
  w.set("k.a", gguf_u32(7));
  w.set("k.b", gguf_u32(8));
  w.set("arr.tokens", gguf_string_array({"a", "bb", "ccc"}));
  w.set("arr.f", gguf_f32_array({0.5f, -1.25f}));
  w.set("flag", gguf_bool(true));
  std::vector<float> a(16);
  for (int i = 0; i < 16; ++i) a[i] = static_cast<float>(i) - 3.5f;
  w.add_tensor("w.a", DType::F32, {2, 8}, a.data(), a.size() * sizeof(float));
  Bytes q4(2 * 18);
  for (size_t i = 0; i < q4.size(); ++i) q4[i] = static_cast<uint8_t>(i * 37);
  patch<uint16_t>(q4, 0, f32_to_f16(0.5f));
  patch<uint16_t>(q4, 18, f32_to_f16(-2.0f));
  w.add_tensor("w.b", DType::Q4_0, {2, 32}, q4.data(), q4.size());
  w.finish();
  return read_bytes(path);
}

// Offsets of the fields of the tensor info of a 2-D tensor named `name` (3 characters).
struct InfoAt {
  size_t n_dims, ne0, ne1, type, offset;
};
InfoAt tensor_info_at(const Bytes& bytes, const std::string& name) {
  const size_t p = find(bytes, name) + name.size();
  return {p, p + 4, p + 12, p + 20, p + 24};
}

// Opening `path` must throw an mpq::Error whose one-line message names the path and contains
// `word`.
void expect_error(const std::string& path, const std::string& word) {
  try {
    GgufFile f(path);
    ADD_FAILURE() << "opened without error; expected '" << word << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(word), std::string::npos) << "expected '" << word << "' in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// Writes the valid file, applies `corrupt` to its bytes and expects `word` in the error.
template <typename Corrupt>
void expect_corruption_error(const std::string& word, Corrupt corrupt) {
  TempDir dir;
  const std::string path = dir.file("bad.gguf");
  Bytes bytes = write_valid_file(path);
  corrupt(bytes);
  write_bytes(path, bytes);
  expect_error(path, word);
}

TEST(GgufWriter, RoundTripsMetadataAndTensors) {
  TempDir dir;
  const std::string path = dir.file("rt.gguf");
  GgufWriter w(path, 64);
  w.set("s", gguf_string("héllo"));
  w.set("u8", {GgufType::UINT8, GgufType::UINT32, uint64_t{200}});
  w.set("i8", {GgufType::INT8, GgufType::UINT32, int64_t{-100}});
  w.set("u16", {GgufType::UINT16, GgufType::UINT32, uint64_t{60000}});
  w.set("i16", {GgufType::INT16, GgufType::UINT32, int64_t{-30000}});
  w.set("u32", gguf_u32(4000000000u));
  w.set("i32", gguf_i32(-5));
  w.set("u64", {GgufType::UINT64, GgufType::UINT32, uint64_t{1} << 40});
  w.set("i64", {GgufType::INT64, GgufType::UINT32, int64_t{-(int64_t{1} << 40)}});
  w.set("f32", gguf_f32(0.1f));
  w.set("f64", {GgufType::FLOAT64, GgufType::UINT32, 0.1});
  w.set("b", gguf_bool(false));
  w.set("sa", gguf_string_array({"x", "", "zz"}));
  w.set("fa", gguf_f32_array({1.5f, 2.5f}));
  w.set("ia", gguf_i32_array({-1, 2, 3}));
  w.set("ba", {GgufType::ARRAY, GgufType::BOOL, std::vector<int64_t>{1, 0}});
  w.set("ea", {GgufType::ARRAY, GgufType::UINT8, std::vector<int64_t>{}});
  w.set("i32", gguf_i32(-6));  // setting again replaces
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  w.add_tensor("a", DType::F32, {2, 3}, a.data(), 24);
  const std::vector<uint16_t> h = {0x3C00, 0xC000};
  w.add_tensor("h", DType::F16, {2}, h.data(), 4);
  w.finish();
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.get_int("general.alignment"), 64);
  EXPECT_EQ(f.get_string("s"), "héllo");
  EXPECT_EQ(f.get_int("u8"), 200);
  EXPECT_EQ(f.get_int("i8"), -100);
  EXPECT_EQ(f.get_int("u16"), 60000);
  EXPECT_EQ(f.get_int("i16"), -30000);
  EXPECT_EQ(f.get_int("u32"), 4000000000LL);
  EXPECT_EQ(f.get_int("i32"), -6);
  EXPECT_EQ(f.get_int("u64"), int64_t{1} << 40);
  EXPECT_EQ(f.get_int("i64"), -(int64_t{1} << 40));
  EXPECT_EQ(f.get_float("f32"), static_cast<double>(0.1f));
  EXPECT_EQ(f.get_float("f64"), 0.1);
  EXPECT_EQ(f.get_float("i32"), -6.0);  // float getters accept integers
  EXPECT_FALSE(f.get_bool("b"));
  EXPECT_EQ(f.get_string_array("sa"), (std::vector<std::string>{"x", "", "zz"}));
  EXPECT_EQ(f.get_float_array("fa"), (std::vector<double>{1.5, 2.5}));
  EXPECT_EQ(f.get_int_array("ia"), (std::vector<int64_t>{-1, 2, 3}));
  EXPECT_EQ(f.get_float_array("ia"), (std::vector<double>{-1, 2, 3}));
  EXPECT_EQ(f.metadata().at("ba").array_type, GgufType::BOOL);
  EXPECT_TRUE(f.get_int_array("ea").empty());
  EXPECT_EQ(f.metadata().at("u16").type, GgufType::UINT16);

  ASSERT_EQ(f.tensors().size(), 2u);
  const TensorRecord* ta = f.find_tensor("a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(ta->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ta->dtype, DType::F32);
  EXPECT_EQ(ta->nbytes, 24u);
  EXPECT_EQ(ta->file, path);
  EXPECT_EQ(std::memcmp(ta->data, a.data(), 24), 0);
  const TensorRecord* th = f.find_tensor("h");
  ASSERT_NE(th, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(th->data) % 64, 0u);  // mmap base is page aligned
  EXPECT_EQ(std::memcmp(th->data, h.data(), 4), 0);
  EXPECT_EQ(f.find_tensor("nope"), nullptr);
}

TEST(GgufFile, GettersNameTheKeyAndKind) {
  TempDir dir;
  const std::string path = dir.file("g.gguf");
  write_valid_file(path);
  GgufFile f(path);
  EXPECT_EQ(f.get_int("k.a"), 7);
  EXPECT_EQ(f.get_int("missing", 3), 3);
  EXPECT_EQ(f.get_string("missing", "x"), "x");
  EXPECT_EQ(f.get_float("missing", 1.5), 1.5);
  EXPECT_TRUE(f.get_bool("flag", false));
  EXPECT_EQ(f.get_int("k.a", 3), 7);
  try {
    f.get_string("k.a");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ": key 'k.a' holds a UINT32, expected a string");
  }
  try {
    f.get_int("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ": key 'nope' is missing");
  }
  EXPECT_THROW(f.get_string("k.a", "fallback"), Error);  // present with the wrong kind
  EXPECT_THROW(f.get_bool("k.a"), Error);
  EXPECT_THROW(f.get_int_array("arr.tokens"), Error);
  EXPECT_THROW(f.get_string_array("arr.f"), Error);
  EXPECT_THROW(f.get_float("arr.f"), Error);
}

TEST(GgufFile, ReadsTheReferenceFileAndVersion2) {
  TempDir dir;
  const std::string path = dir.file("v2.gguf");
  Bytes bytes = write_valid_file(path);
  patch<uint32_t>(bytes, 4, 2);
  write_bytes(path, bytes);
  GgufFile f(path);
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.alignment(), 32u);
  const TensorRecord* b = f.find_tensor("w.b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->shape, (std::vector<int64_t>{2, 32}));  // outermost first
  EXPECT_EQ(b->nbytes, 36u);
  std::vector<float> out(64);
  dequantize_to_f32(b->dtype, b->data, out.data(), 64, path);
  // qs[0] of the first block is byte 2 of the data, 2 * 37 = 0x4A: codes 0xA (value 0) and 0x4
  // (value 16); the second block has scale -2.
  EXPECT_EQ(out[0], 0.5f * (0xA - 8));
  EXPECT_EQ(out[16], 0.5f * (0x4 - 8));
  EXPECT_EQ(out[32], -2.0f * static_cast<float>(((20 * 37) & 0x0F) - 8));
  EXPECT_EQ(f.get_string_array("arr.tokens"), (std::vector<std::string>{"a", "bb", "ccc"}));
}

TEST(GgufFile, RefusesBadMagicAndVersions) {
  expect_corruption_error("magic", [](Bytes& b) { b[0] = 'X'; });
  expect_corruption_error("version 1 is not supported", [](Bytes& b) { patch<uint32_t>(b, 4, 1); });
  expect_corruption_error("version 7", [](Bytes& b) { patch<uint32_t>(b, 4, 7); });
  expect_corruption_error("big-endian", [](Bytes& b) { patch<uint32_t>(b, 4, 0x03000000u); });
  TempDir dir;
  write_bytes(dir.file("empty.gguf"), {});
  expect_error(dir.file("empty.gguf"), "truncated");
  expect_error(dir.file("absent.gguf"), "cannot open");
}

// Every prefix of a valid file is refused with an error (never a crash or a partial success).
TEST(GgufFile, RefusesEveryTruncation) {
  TempDir dir;
  const std::string path = dir.file("t.gguf");
  const Bytes full = write_valid_file(path);
  for (size_t n = 0; n < full.size(); ++n) {
    write_bytes(path, Bytes(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n)));
    expect_error(path, "");
  }
  write_bytes(path, Bytes(full.begin(), full.begin() + 20));
  expect_error(path, "truncated");
  write_bytes(path, Bytes(full.begin(), full.end() - 1));
  expect_error(path, "runs past the end of the file");
}

TEST(GgufFile, RefusesLengthsAndCountsPastTheEnd) {
  expect_corruption_error("string length", [](Bytes& b) {
    patch<uint64_t>(b, find(b, "k.a") - 8, uint64_t{1} << 40);
  });
  expect_corruption_error("string length", [](Bytes& b) {  // an element of a string array
    patch<uint64_t>(b, find(b, "ccc") - 8, 1000);
  });
  expect_corruption_error("array of 1099511627776 STRING", [](Bytes& b) {
    patch<uint64_t>(b, find(b, "arr.tokens") + 10 + 4 + 4, uint64_t{1} << 40);
  });
  expect_corruption_error("array of", [](Bytes& b) {
    patch<uint64_t>(b, find(b, "arr.f") + 5 + 4 + 4, ~uint64_t{0});
  });
  expect_corruption_error("tensor count", [](Bytes& b) { patch<uint64_t>(b, 8, uint64_t{1} << 50); });
  expect_corruption_error("key/value count", [](Bytes& b) { patch<uint64_t>(b, 16, ~uint64_t{0}); });
}

TEST(GgufFile, RefusesBadValueTypes) {
  expect_corruption_error("unknown value type 13", [](Bytes& b) {
    patch<uint32_t>(b, find(b, "k.a") + 3, 13);
  });
  expect_corruption_error("nested arrays", [](Bytes& b) {
    patch<uint32_t>(b, find(b, "arr.tokens") + 10 + 4, 9);
  });
  expect_corruption_error("unknown array element value type", [](Bytes& b) {
    patch<uint32_t>(b, find(b, "arr.tokens") + 10 + 4, 77);
  });
}

TEST(GgufFile, RefusesBadTensorTypes) {
  expect_corruption_error("tensor 'w.b': unknown ggml type 99", [](Bytes& b) {
    patch<uint32_t>(b, tensor_info_at(b, "w.b").type, 99);
  });
  expect_corruption_error("ggml type 16 (IQ2_XXS) is not supported", [](Bytes& b) {
    patch<uint32_t>(b, tensor_info_at(b, "w.b").type, 16);
  });
}

TEST(GgufFile, RefusesBadDims) {
  expect_corruption_error("n_dims 0", [](Bytes& b) { patch<uint32_t>(b, tensor_info_at(b, "w.b").n_dims, 0); });
  expect_corruption_error("n_dims 5", [](Bytes& b) { patch<uint32_t>(b, tensor_info_at(b, "w.b").n_dims, 5); });
  expect_corruption_error("dimension 1 is 0", [](Bytes& b) {
    patch<uint64_t>(b, tensor_info_at(b, "w.b").ne1, 0);
  });
  expect_corruption_error("dimension 0 is negative", [](Bytes& b) {
    patch<int64_t>(b, tensor_info_at(b, "w.a").ne0, -8);
  });
  expect_corruption_error("element count overflows", [](Bytes& b) {
    patch<uint64_t>(b, tensor_info_at(b, "w.b").ne1, uint64_t{1} << 62);
  });
  expect_corruption_error("byte size overflows", [](Bytes& b) {  // numel fits, bytes do not
    patch<uint64_t>(b, tensor_info_at(b, "w.a").ne1, uint64_t{1} << 59);
  });
  expect_corruption_error("row length 48 is not a multiple of the Q4_0 block size 32", [](Bytes& b) {
    patch<uint64_t>(b, tensor_info_at(b, "w.b").ne0, 48);
  });
}

TEST(GgufFile, RefusesBadOffsets) {
  expect_corruption_error("offset 68 is not aligned to 32", [](Bytes& b) {
    patch<uint64_t>(b, tensor_info_at(b, "w.b").offset, 68);
  });
  expect_corruption_error("runs past the end of the file", [](Bytes& b) {
    patch<uint64_t>(b, tensor_info_at(b, "w.b").offset, 1 << 20);
  });
  expect_corruption_error("runs past the end of the file", [](Bytes& b) {  // no wrap-around
    patch<uint64_t>(b, tensor_info_at(b, "w.b").offset, ~uint64_t{31});
  });
  expect_corruption_error("tensors 'w.a' and 'w.b' overlap", [](Bytes& b) {
    patch<uint64_t>(b, tensor_info_at(b, "w.b").offset, 32);  // w.a is 64 bytes at offset 0
  });
}

TEST(GgufFile, RefusesDuplicates) {
  expect_corruption_error("duplicate tensor name 'w.a'", [](Bytes& b) { b[find(b, "w.b") + 2] = 'a'; });
  expect_corruption_error("duplicate key 'k.a'", [](Bytes& b) { b[find(b, "k.b") + 2] = 'a'; });
}

TEST(GgufFile, RefusesBadAlignment) {
  for (const uint32_t bad : {0u, 48u, 1u << 30}) {
    TempDir dir;
    const std::string path = dir.file("align.gguf");
    Bytes bytes = write_valid_file(path, 64);
    patch<uint32_t>(bytes, find(bytes, "general.alignment") + 17 + 4, bad);
    write_bytes(path, bytes);
    expect_error(path, "general.alignment must be a power of two");
  }
}

// Names from the file are escaped in messages, so a message is always a single line.
TEST(GgufFile, ErrorMessageIsOneLine) {
  TempDir dir;
  const std::string path = dir.file("nl.gguf");
  Bytes bytes = write_valid_file(path);
  patch<uint32_t>(bytes, tensor_info_at(bytes, "w.b").type, 99);
  bytes[find(bytes, "w.b") + 1] = '\n';
  write_bytes(path, bytes);
  try {
    GgufFile f(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ": tensor 'w\\x0ab': unknown ggml type 99");
  }
}

// Random corruption of the header region: the reader either refuses the file with an mpq::Error
// or yields tensors whose bytes lie inside the file (decoding them must not fault).
TEST(GgufFile, SurvivesRandomCorruption) {
  TempDir dir;
  const std::string path = dir.file("fuzz.gguf");
  const Bytes good = write_valid_file(path);
  const size_t header_end = good.size() - 100;  // the data section: 64 + 36 tensor bytes
  std::mt19937 rng(1234);
  int opened = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    Bytes bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) bytes[rng() % header_end] = static_cast<uint8_t>(rng());
    write_bytes(path, bytes);
    try {
      GgufFile f(path);
      ++opened;
      for (const TensorRecord& t : f.tensors()) {
        if (!dtype_traits(t.dtype).is_float_input) continue;
        std::vector<float> out(static_cast<size_t>(t.numel()));
        dequantize_to_f32(t.dtype, t.data, out.data(), t.numel(), t.name);
      }
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
    }
  }
  EXPECT_GT(opened, 0);  // some flips only touch string bytes or values
}

TEST(GgufWriter, RefusesInconsistentInput) {
  TempDir dir;
  const std::string path = dir.file("w.gguf");
  GgufWriter w(path);
  const std::vector<float> a(4);
  EXPECT_THROW(w.add_tensor("a", DType::F32, {2, 2}, a.data(), 12), Error);  // wrong byte count
  EXPECT_THROW(w.add_tensor("a", DType::Q4_0, {16}, a.data(), 9), Error);    // partial block
  EXPECT_THROW(w.add_tensor("a", DType::F32, {}, a.data(), 4), Error);
  EXPECT_THROW(w.add_tensor("a", DType::F32, {1, 1, 1, 1, 1}, a.data(), 4), Error);
  EXPECT_THROW(w.add_tensor("a", DType::F32, {0, 4}, a.data(), 0), Error);
  w.add_tensor("a", DType::F32, {4}, a.data(), 16);
  EXPECT_THROW(w.add_tensor("a", DType::F32, {4}, a.data(), 16), Error);  // duplicate
  EXPECT_THROW(w.set("x", {GgufType::UINT8, GgufType::UINT32, uint64_t{256}}), Error);
  EXPECT_THROW(w.set("x", {GgufType::UINT32, GgufType::UINT32, int64_t{-1}}), Error);
  EXPECT_THROW(w.set("x", {GgufType::STRING, GgufType::UINT32, 1.0}), Error);
  EXPECT_THROW(w.set("x", {GgufType::ARRAY, GgufType::ARRAY, std::vector<int64_t>{}}), Error);
  EXPECT_THROW(GgufWriter(path, 48), Error);
  w.finish();
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_THROW(GgufWriter(dir.file("no/such/dir.gguf")).finish(), Error);
}

TEST(GgufTypes, GgmlIdsFollowTheSpecification) {
  const std::pair<uint32_t, DType> ids[] = {
      {0, DType::F32},   {1, DType::F16},   {2, DType::Q4_0},  {3, DType::Q4_1},
      {6, DType::Q5_0},  {7, DType::Q5_1},  {8, DType::Q8_0},  {10, DType::Q2_K},
      {11, DType::Q3_K}, {12, DType::Q4_K}, {13, DType::Q5_K}, {14, DType::Q6_K},
      {24, DType::I8},   {25, DType::I16},  {26, DType::I32},  {27, DType::I64},
      {28, DType::F64},  {30, DType::BF16},  {20, DType::IQ4_NL}, {23, DType::IQ4_XS},
      {39, DType::MXFP4},
  };
  for (const auto& [id, type] : ids) {
    EXPECT_EQ(dtype_from_ggml(id), type) << id;
    EXPECT_EQ(ggml_type_of(type), id) << dtype_name(type);
  }
  // 40 = NVFP4: its blocks need the tensor's ".scale" factor (format/ggml_fp4.h), so it is not
  // read as a plain storage type.
  for (const uint32_t unsupported : {4u, 5u, 9u, 15u, 16u, 29u, 31u, 40u, 1000u}) {
    EXPECT_EQ(dtype_from_ggml(unsupported), std::nullopt) << unsupported;
  }
}

// ---- Decoders against gguf-py (tests/data/gguf_blocks.gguf, see tools/make_gguf_block_fixtures.py)

class GgufBlocksVsGgufPy : public ::testing::TestWithParam<DType> {};

TEST_P(GgufBlocksVsGgufPy, BitExact) {
  const GgufFile f(std::string(MPQ_TEST_DATA_DIR) + "/gguf_blocks.gguf");
  std::string name = dtype_name(GetParam());
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const TensorRecord* raw = f.find_tensor(name + ".raw");
  const TensorRecord* expected = f.find_tensor(name + ".expected");
  ASSERT_NE(raw, nullptr);
  ASSERT_NE(expected, nullptr);
  EXPECT_EQ(raw->dtype, GetParam());
  EXPECT_EQ(expected->dtype, DType::F32);
  ASSERT_EQ(raw->shape, expected->shape);
  std::vector<float> got(static_cast<size_t>(raw->numel()));
  dequantize_to_f32(raw->dtype, raw->data, got.data(), raw->numel(), raw->name);
  int mismatches = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    float want;
    std::memcpy(&want, expected->data + 4 * i, sizeof want);
    if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want) && ++mismatches <= 5) {
      ADD_FAILURE() << name << " value " << i << ": got " << got[i] << ", gguf-py " << want;
    }
  }
  EXPECT_EQ(mismatches, 0);
}

INSTANTIATE_TEST_SUITE_P(AllBlockTypes, GgufBlocksVsGgufPy,
                         ::testing::Values(DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                                           DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K,
                                           DType::Q5_K, DType::Q6_K, DType::IQ4_NL, DType::IQ4_XS,
                                           DType::MXFP4),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// ---- Real files

std::vector<float> tensor_values(const TensorRecord& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  dequantize_to_f32(t.dtype, t.data, out.data(), t.numel(), t.name);
  return out;
}

TEST(GgufModels, Stories260KMatchesItsSafetensors) {
  const std::string dir = std::string(MPQ_SHARED_DIR) + "/models/stories260K";
  if (!fs::exists(dir + "/gguf/stories260K.gguf")) GTEST_SKIP() << "no " << dir;
  const GgufFile f(dir + "/gguf/stories260K.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 5);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 64);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 512u);
  EXPECT_EQ(f.get_float_array("tokenizer.ggml.scores").size(), 512u);
  EXPECT_EQ(f.get_int("tokenizer.ggml.padding_token_id"), 4294967295LL);
  EXPECT_EQ(f.tensors().size(), 48u);
  for (const TensorRecord& t : f.tensors()) EXPECT_EQ(t.dtype, DType::F32) << t.name;

  // The same weights as the Hugging Face export (attn_q/attn_k differ: llama.cpp permutes them
  // for its rope layout, so they are not compared).
  const Bytes st = read_bytes(dir + "/hf/model.safetensors");
  ASSERT_GT(st.size(), 8u);
  uint64_t header_len;
  std::memcpy(&header_len, st.data(), 8);
  const auto header = nlohmann::json::parse(st.begin() + 8, st.begin() + 8 + header_len);
  const std::pair<const char*, const char*> pairs[] = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output.weight", "model.embed_tokens.weight"},
      {"blk.0.ffn_gate.weight", "model.layers.0.mlp.gate_proj.weight"},
      {"blk.4.ffn_down.weight", "model.layers.4.mlp.down_proj.weight"},
      {"blk.2.attn_v.weight", "model.layers.2.self_attn.v_proj.weight"},
  };
  for (const auto& [gguf_name, hf_name] : pairs) {
    const TensorRecord* t = f.find_tensor(gguf_name);
    ASSERT_NE(t, nullptr) << gguf_name;
    const auto& entry = header.at(hf_name);
    EXPECT_EQ(t->shape, entry.at("shape").get<std::vector<int64_t>>()) << gguf_name;
    const auto begin = entry.at("data_offsets")[0].get<uint64_t>();
    const auto end = entry.at("data_offsets")[1].get<uint64_t>();
    ASSERT_EQ(end - begin, t->nbytes) << gguf_name;
    EXPECT_EQ(std::memcmp(t->data, st.data() + 8 + header_len + begin, t->nbytes), 0) << gguf_name;
  }
}

TEST(GgufModels, SmolLM2Q4_1MatchesGgufPy) {
  const std::string model = std::string(MPQ_TEST_DATA_DIR) + "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(model)) GTEST_SKIP() << "model file absent: " << model;
  const GgufFile f(model);
  const GgufFile expected(std::string(MPQ_TEST_DATA_DIR) + "/smollm2_q4_1_expected.gguf");
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 30);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
  EXPECT_EQ(f.tensors().size(), 272u);
  EXPECT_EQ(f.find_tensor("output.weight"), nullptr);  // tied to token_embd.weight
  int q4_1 = 0, q8_0 = 0, f32 = 0;
  for (const TensorRecord& t : f.tensors()) {
    q4_1 += t.dtype == DType::Q4_1;
    q8_0 += t.dtype == DType::Q8_0;
    f32 += t.dtype == DType::F32;
  }
  EXPECT_EQ(q4_1, 210);
  EXPECT_EQ(q8_0, 1);
  EXPECT_EQ(f32, 61);

  for (const char* name : {"blk.0.attn_q.weight", "token_embd.weight"}) {
    SCOPED_TRACE(name);
    const TensorRecord* t = f.find_tensor(name);
    ASSERT_NE(t, nullptr);
    const int64_t row_len = t->shape.back();
    const uint64_t row_bytes = *dtype_nbytes(t->dtype, row_len);
    const TensorRecord* rows = expected.find_tensor(std::string(name) + ".rows");
    const TensorRecord* values = expected.find_tensor(std::string(name) + ".values");
    ASSERT_TRUE(rows && values);
    ASSERT_EQ(rows->dtype, DType::I32);
    std::vector<float> want = tensor_values(*values);
    std::vector<float> got(static_cast<size_t>(row_len));
    for (int64_t r = 0; r < rows->numel(); ++r) {
      int32_t row;
      std::memcpy(&row, rows->data + 4 * r, 4);
      ASSERT_LT(row, t->shape[0]);
      dequantize_to_f32(t->dtype, t->data + row * row_bytes, got.data(), row_len, name);
      for (int64_t i = 0; i < row_len; ++i) {
        ASSERT_EQ(got[i], want[r * row_len + i]) << "row " << row << " col " << i;
      }
    }
    // The float64 sum of the whole tensor, row by row.
    double sum = 0;
    for (int64_t r = 0; r < t->shape[0]; ++r) {
      dequantize_to_f32(t->dtype, t->data + r * row_bytes, got.data(), row_len, name);
      for (float v : got) sum += v;
    }
    EXPECT_NEAR(sum, expected.get_float(std::string(name) + ".sum"), 1e-6);
  }
}

}  // namespace
}  // namespace mpq
