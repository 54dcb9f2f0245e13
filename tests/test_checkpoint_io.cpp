// Hugging Face directories (single file and sharded) and llama2.c checkpoints: synthetic files for
// the layouts and the errors, and the real stories260K model in both layouts (../shared).
#include "test_util.h"
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "mpq/error.h"

namespace mpq {
using mpq::test::TempDir;

namespace {

namespace fs = std::filesystem;
using nlohmann::json;


void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// Runs `open` and expects an mpq::Error whose message contains every one of `phrases`.
template <class Fn>
void expect_error(Fn open, const std::vector<std::string>& phrases) {
  try {
    open();
    ADD_FAILURE() << "opened, expected an error containing '" << phrases.front() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : phrases)
      EXPECT_NE(msg.find(p), std::string::npos) << "expected '" << p << "' in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

std::vector<float> floats_of(const TensorRecord& r) {
  std::vector<float> v(static_cast<size_t>(r.numel()));
  EXPECT_EQ(r.dtype, DType::F32);
  EXPECT_EQ(r.nbytes, v.size() * sizeof(float));
  std::memcpy(v.data(), r.data, r.nbytes);
  return v;
}

// --- llama2.c, synthetic -------------------------------------------------------------------------

// Writes a llama2.c file whose i-th float (counting from the first after the header) is i.
// Returns the number of floats.
size_t write_llama2c(const std::string& path, const std::vector<int32_t>& header, size_t n_floats) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(header.data()), header.size() * 4);
  for (size_t i = 0; i < n_floats; ++i) {
    const float f = static_cast<float>(i);
    out.write(reinterpret_cast<const char*>(&f), 4);
  }
  return n_floats;
}

// dim 8, hidden 12, 2 layers, 2 heads (head_size 4), 1 kv head, vocab 10 unshared, seq_len 4.
const std::vector<int32_t> kTinyHeader = {8, 12, 2, 2, 1, -10, 4};
// emb 80 + rms_att 16 + wq 128 + wk 64 + wv 64 + wo 128 + rms_ffn 16 + w1/w2/w3 3*192
// + rms_final 8 + freq_cis 2*8 + wcls 80
constexpr size_t kTinyFloats = 80 + 16 + 128 + 64 + 64 + 128 + 16 + 576 + 8 + 16 + 80;

TEST(Llama2c, SyntheticLayoutNamesShapesAndOffsets) {
  TempDir dir;
  const std::string path = dir.file("tiny.bin");
  write_llama2c(path, kTinyHeader, kTinyFloats);
  Checkpoint ck = open_llama2c_checkpoint(path);
  EXPECT_EQ(ck.layout, "llama2c");
  EXPECT_EQ(ck.path, path);
  EXPECT_TRUE(ck.qk_rope_interleaved);
  EXPECT_EQ(ck.tensors.size(), 1u + 2 * 9 + 1 + 1);
  EXPECT_FALSE(ck.owners.empty());

  // First float of each tensor == its float offset in the file.
  auto first = [&](const std::string& name, std::vector<int64_t> shape) {
    SCOPED_TRACE(name);
    auto it = ck.tensors.find(name);
    EXPECT_NE(it, ck.tensors.end());
    if (it == ck.tensors.end()) return -1.f;
    EXPECT_EQ(it->second.shape, shape);
    EXPECT_EQ(it->second.name, name);
    EXPECT_EQ(it->second.file, path);
    return floats_of(it->second)[0];
  };
  EXPECT_EQ(first("model.embed_tokens.weight", {10, 8}), 0.f);
  EXPECT_EQ(first("model.layers.0.input_layernorm.weight", {8}), 80.f);
  EXPECT_EQ(first("model.layers.1.input_layernorm.weight", {8}), 88.f);
  EXPECT_EQ(first("model.layers.0.self_attn.q_proj.weight", {8, 8}), 96.f);
  EXPECT_EQ(first("model.layers.1.self_attn.q_proj.weight", {8, 8}), 160.f);
  EXPECT_EQ(first("model.layers.0.self_attn.k_proj.weight", {4, 8}), 224.f);
  EXPECT_EQ(first("model.layers.1.self_attn.k_proj.weight", {4, 8}), 256.f);
  EXPECT_EQ(first("model.layers.0.self_attn.v_proj.weight", {4, 8}), 288.f);
  EXPECT_EQ(first("model.layers.0.self_attn.o_proj.weight", {8, 8}), 352.f);
  EXPECT_EQ(first("model.layers.0.post_attention_layernorm.weight", {8}), 480.f);
  EXPECT_EQ(first("model.layers.0.mlp.gate_proj.weight", {12, 8}), 496.f);
  EXPECT_EQ(first("model.layers.0.mlp.down_proj.weight", {8, 12}), 688.f);
  EXPECT_EQ(first("model.layers.0.mlp.up_proj.weight", {12, 8}), 880.f);
  EXPECT_EQ(first("model.layers.1.mlp.up_proj.weight", {12, 8}), 976.f);
  EXPECT_EQ(first("model.norm.weight", {8}), 1072.f);
  EXPECT_EQ(first("lm_head.weight", {10, 8}), 1096.f);  // after 16 floats of freq_cis

  EXPECT_EQ(ck.config["model_type"], "llama");
  EXPECT_EQ(ck.config["architectures"], json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(ck.config["hidden_size"], 8);
  EXPECT_EQ(ck.config["intermediate_size"], 12);
  EXPECT_EQ(ck.config["num_hidden_layers"], 2);
  EXPECT_EQ(ck.config["num_attention_heads"], 2);
  EXPECT_EQ(ck.config["num_key_value_heads"], 1);
  EXPECT_EQ(ck.config["head_dim"], 4);
  EXPECT_EQ(ck.config["vocab_size"], 10);
  EXPECT_EQ(ck.config["max_position_embeddings"], 4);
  EXPECT_EQ(ck.config["tie_word_embeddings"], false);
  EXPECT_DOUBLE_EQ(ck.config["rms_norm_eps"].get<double>(), 1e-5);
  EXPECT_DOUBLE_EQ(ck.config["rope_theta"].get<double>(), 10000.0);

  // Shared classifier: no lm_head, tied embeddings.
  std::vector<int32_t> shared = kTinyHeader;
  shared[5] = 10;
  write_llama2c(path, shared, kTinyFloats - 80);
  Checkpoint ck2 = open_llama2c_checkpoint(path);
  EXPECT_EQ(ck2.tensors.count("lm_head.weight"), 0u);
  EXPECT_EQ(ck2.config["tie_word_embeddings"], true);
}

TEST(Llama2c, InvalidFilesGiveErrorsNamingThePath) {
  TempDir dir;
  const std::string path = dir.file("bad.bin");
  auto open = [&] { open_llama2c_checkpoint(path); };

  write_llama2c(path, kTinyHeader, kTinyFloats - 1);
  expect_error(open, {path + ": size ", "does not match a llama2.c checkpoint with dim=8",
                      "expected " + std::to_string(28 + kTinyFloats * 4) + " bytes"});
  write_llama2c(path, kTinyHeader, kTinyFloats + 1);
  expect_error(open, {path + ": size ", "expected"});
  write_text(path, "short");
  expect_error(open, {path + ": ", "too short"});
  write_llama2c(path, {0, 12, 2, 2, 1, 10, 4}, 100);
  expect_error(open, {path + ": ", "positive"});
  write_llama2c(path, {8, 12, 2, 2, 1, 0, 4}, 100);
  expect_error(open, {path + ": ", "positive"});
  write_llama2c(path, {8, 12, 2, 3, 1, 10, 4}, 100);
  expect_error(open, {path + ": ", "n_heads does not divide dim"});
  write_llama2c(path, {8, 12, 2, 2, 3, 10, 4}, 100);
  expect_error(open, {path + ": ", "n_kv_heads does not divide n_heads"});
  write_llama2c(path, {0x616b3432, 2, 0, 0, 0, 0, 0}, 100);
  expect_error(open, {path + ": ", "ak42"});
  // Huge dimensions: the expected size is computed without overflow.
  write_llama2c(path, {1 << 30, 1 << 30, 1 << 30, 1 << 20, 1 << 20, -(1 << 30), 1 << 30}, 10);
  expect_error(open, {path + ": size ", "expected"});
  expect_error([&] { open_llama2c_checkpoint(dir.file("missing.bin")); }, {"missing.bin"});
}

// --- Hugging Face, synthetic ---------------------------------------------------------------------

void write_shard(const std::string& path, const std::vector<std::string>& names) {
  SafetensorsWriter w;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::vector<float> v = {static_cast<float>(i), 1.f};
    w.add(names[i], DType::F32, {2}, v.data(), 8);
  }
  w.write(path);
}

TEST(HfCheckpoint, ShardedErrorsNameTheFile) {
  TempDir dir;
  auto open = [&] { open_hf_checkpoint(dir.str()); };
  const std::string config = dir.file("config.json");
  const std::string index = dir.file("model.safetensors.index.json");
  const std::string s1 = dir.file("model-00001-of-00002.safetensors");
  const std::string s2 = dir.file("model-00002-of-00002.safetensors");

  expect_error(open, {config, "missing"});
  write_text(config, "{\"model_type\": ");
  expect_error(open, {config, "invalid JSON"});
  write_text(config, R"({"model_type": "llama", "tie_word_embeddings": true})");
  expect_error(open, {dir.str(), "no model.safetensors"});
  expect_error([&] { open_hf_checkpoint(dir.file("nope")); }, {"nope", "not a directory"});

  write_text(index, "[");
  expect_error(open, {index, "invalid JSON"});
  write_text(index, R"({"weight_map": {"a": "../x.safetensors"}})");
  expect_error(open, {index, "invalid shard"});

  const json map = {{"weight_map",
                     {{"a", "model-00001-of-00002.safetensors"},
                      {"b", "model-00001-of-00002.safetensors"},
                      {"c", "model-00002-of-00002.safetensors"}}}};
  write_text(index, map.dump());
  write_shard(s1, {"a", "b"});
  expect_error(open, {s2, "shard is missing", "'c'"});

  write_shard(s2, {"d"});
  expect_error(open, {s2, "has no tensor 'c'"});

  write_shard(s2, {"c", "a"});
  expect_error(open, {index, "tensor 'a' is in two shards", s1, s2});

  write_shard(s2, {"c"});
  Checkpoint ck = open_hf_checkpoint(dir.str());
  EXPECT_EQ(ck.layout, "hf");
  EXPECT_FALSE(ck.qk_rope_interleaved);
  EXPECT_EQ(ck.tensors.size(), 3u);
  EXPECT_EQ(ck.tensors.at("c").file, s2);
  EXPECT_EQ(ck.config, json::parse(R"({"model_type": "llama", "tie_word_embeddings": true})"));
  EXPECT_EQ(ck.tensors.count("lm_head.weight"), 0u);  // tied: fine

  // A dtype mpq does not read as weights (parts of quantized modules) is kept as a raw view only;
  // the model builder refuses it unless a quantized module uses it.
  SafetensorsWriter w;
  const uint8_t bytes[2] = {1, 2};
  w.add("q", "U8", {2}, bytes, 2);
  w.write(dir.file("model.safetensors"));
  const Checkpoint single = open_hf_checkpoint(dir.str());
  EXPECT_EQ(single.tensors.count("q"), 0u);
  ASSERT_EQ(single.raw.count("q"), 1u);
  EXPECT_EQ(single.raw.at("q").dtype, "U8");
  EXPECT_EQ(single.raw.at("q").nbytes, 2u);
}

// --- the real stories260K model --------------------------------------------------------------

std::string shared_model_dir() { return std::string(MPQ_SHARED_DIR) + "/models/stories260K"; }

#define SKIP_WITHOUT_SHARED()                                          \
  if (!fs::exists(shared_model_dir() + "/hf/model.safetensors") ||     \
      !fs::exists(shared_model_dir() + "/llama2c/stories260K.bin"))    \
  GTEST_SKIP() << "stories260K not found under " << shared_model_dir() \
               << " (MPQ_SHARED_DIR): skipping the real-checkpoint test"

TEST(RealCheckpoint, HfAndLlama2cHoldTheSameTensors) {
  SKIP_WITHOUT_SHARED();
  Checkpoint hf = open_hf_checkpoint(shared_model_dir() + "/hf");
  Checkpoint l2 = open_llama2c_checkpoint(shared_model_dir() + "/llama2c/stories260K.bin");
  EXPECT_EQ(hf.layout, "hf");
  EXPECT_FALSE(hf.qk_rope_interleaved);
  EXPECT_TRUE(l2.qk_rope_interleaved);
  EXPECT_EQ(hf.tensors.size(), 1u + 5 * 9 + 1);  // tied embeddings: no lm_head
  EXPECT_EQ(hf.config["hidden_size"], 64);

  // Same names, shapes and dtypes.
  ASSERT_EQ(hf.tensors.size(), l2.tensors.size());
  for (const auto& [name, r] : hf.tensors) {
    SCOPED_TRACE(name);
    ASSERT_EQ(l2.tensors.count(name), 1u);
    EXPECT_EQ(r.shape, l2.tensors.at(name).shape);
    EXPECT_EQ(r.dtype, DType::F32);
    EXPECT_EQ(l2.tensors.at(name).dtype, DType::F32);
  }
  // The translated header agrees with config.json.
  for (const char* key : {"model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
                          "max_position_embeddings", "tie_word_embeddings", "architectures",
                          "rms_norm_eps", "rope_theta"})
    EXPECT_EQ(l2.config[key], hf.config[key]) << key;

  const int64_t hd = hf.config["head_dim"];
  int permuted = 0;
  for (const auto& [name, r] : hf.tensors) {
    SCOPED_TRACE(name);
    const std::vector<float> a = floats_of(r);
    const std::vector<float> b = floats_of(l2.tensors.at(name));
    const bool qk =
        name.find("q_proj") != std::string::npos || name.find("k_proj") != std::string::npos;
    if (!qk) {
      EXPECT_EQ(a, b);  // bit-identical (memcmp-equal floats)
      continue;
    }
    // q/k: HF row (h*hd + i*hd/2 + j) is llama2.c row (h*hd + 2*j + i), i in {0,1}, j < hd/2.
    ++permuted;
    EXPECT_NE(a, b);
    const int64_t rows = r.shape[0], cols = r.shape[1];
    ASSERT_EQ(rows % hd, 0);
    for (int64_t h = 0; h < rows / hd; ++h)
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < hd / 2; ++j) {
          const int64_t hf_row = h * hd + i * hd / 2 + j, l2_row = h * hd + 2 * j + i;
          ASSERT_EQ(std::memcmp(&a[hf_row * cols], &b[l2_row * cols], cols * sizeof(float)), 0)
              << "head " << h << " i " << i << " j " << j;
        }
  }
  EXPECT_EQ(permuted, 10);
}

TEST(RealCheckpoint, ShardedCopyOpensWithTheSameTensors) {
  SKIP_WITHOUT_SHARED();
  Checkpoint hf = open_hf_checkpoint(shared_model_dir() + "/hf");
  TempDir dir;
  fs::copy_file(shared_model_dir() + "/hf/config.json", dir.file("config.json"));

  // First half of the names in shard 1, the rest in shard 2 (views into the original mapping).
  SafetensorsWriter shard[2];
  json weight_map = json::object();
  uint64_t total = 0;
  size_t i = 0;
  for (const auto& [name, r] : hf.tensors) {
    const int s = i++ < hf.tensors.size() / 2 ? 0 : 1;
    shard[s].add_view(name, "F32", r.shape, r.data, r.nbytes);
    weight_map[name] = "model-0000" + std::to_string(s + 1) + "-of-00002.safetensors";
    total += r.nbytes;
  }
  shard[0].write(dir.file("model-00001-of-00002.safetensors"));
  shard[1].write(dir.file("model-00002-of-00002.safetensors"));
  write_text(dir.file("model.safetensors.index.json"),
             json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}}.dump(2));

  Checkpoint sharded = open_hf_checkpoint(dir.str());
  EXPECT_EQ(sharded.layout, "hf");
  EXPECT_EQ(sharded.owners.size(), 2u);
  EXPECT_EQ(sharded.config, hf.config);
  ASSERT_EQ(sharded.tensors.size(), hf.tensors.size());
  for (const auto& [name, r] : hf.tensors) {
    SCOPED_TRACE(name);
    ASSERT_EQ(sharded.tensors.count(name), 1u);
    const TensorRecord& s = sharded.tensors.at(name);
    EXPECT_EQ(s.shape, r.shape);
    ASSERT_EQ(s.nbytes, r.nbytes);
    EXPECT_EQ(std::memcmp(s.data, r.data, r.nbytes), 0);
    EXPECT_EQ(s.file, weight_map[name].get<std::string>() == "model-00001-of-00002.safetensors"
                          ? dir.file("model-00001-of-00002.safetensors")
                          : dir.file("model-00002-of-00002.safetensors"));
  }
}

}  // namespace
}  // namespace mpq
