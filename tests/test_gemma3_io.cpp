// gemma3 models through mpq's writers and readers, on synthetic checkpoints
// (tests/synthetic_model.h): the Hugging Face directory keeps transformers' conventions (RMSNorm
// weights stored as w for a multiplier 1 + w, four norms per block, layer_types, per-type RoPE
// bases, query_pre_attn_scalar) and the GGUF file llama.cpp's (norms holding 1 + w, blk.N.
// post_attention_norm / ffn_norm / post_ffw_norm, attention.sliding_window with a per-layer
// pattern, rope.freq_base_swa); both read back to the model that was written, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "io/model_writer.h"
#include "io/safetensors.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "mpq/tokenizer.h"
#include "plan/llama_types.h"
#include "plan/plan.h"
#include "quant/quantize.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace fs = std::filesystem;
using mpq::test::TempDir;

namespace {

// Local layers 0, 2, 3 (pattern 3: every third layer global), window 4, tied head.
mpq::synth::Spec gemma_spec() {
  mpq::synth::Spec s;
  s.model_type = "gemma3_text";
  s.layers = 4;
  s.kv_heads = 1;
  s.sliding_window = 4;
  s.sliding_window_pattern = 3;
  s.theta = 1e6;
  s.local_theta = 20000;
  s.tied = true;
  return s;
}

std::vector<float> logits_of(mpq::Model& model) {
  const std::vector<int32_t> ids = mpq::test::random_ids(10, model.config.vocab_size, 3);
  mpq::KVCache cache = model.make_cache(static_cast<int>(ids.size()));
  return model.forward_all(ids, cache);
}

// Every norm of a layer, as the model keeps them (multipliers).
std::vector<std::vector<float>> norms_of(const mpq::Model& m) {
  std::vector<std::vector<float>> out = {m.final_norm};
  for (const mpq::DecoderLayer& l : m.layers) {
    for (const auto* v : {&l.attn_norm, &l.post_attn_norm, &l.ffn_norm, &l.post_ffn_norm, &l.q_norm, &l.k_norm}) {
      out.push_back(*v);
    }
  }
  return out;
}

std::vector<float> safetensors_f32(const mpq::SafetensorsFile& file, const std::string& name) {
  const mpq::SafetensorsTensor* t = file.find(name);
  EXPECT_NE(t, nullptr) << name;
  if (t == nullptr) return {};
  EXPECT_EQ(t->dtype, "F32") << name;
  std::vector<float> v(t->nbytes / 4);
  std::memcpy(v.data(), t->data, t->nbytes);
  return v;
}

}  // namespace

// Loading: the multipliers are 1 + the stored w (in float, as Gemma3RMSNorm computes them), all
// four norms of a block are where transformers puts them.
TEST(Gemma3Io, HfNormsAreOnePlusTheStoredWeights) {
  TempDir tmp;
  const mpq::synth::SynthModel synth = mpq::synth::make_model(gemma_spec());
  mpq::synth::write_model(synth, tmp.file("hf"));
  const mpq::Model model = mpq::load_model(tmp.file("hf"), {.need_tokenizer = false});
  auto plus_one = [&](const std::string& name) {
    std::vector<float> v = synth.at(name);
    for (float& x : v) x += 1.f;
    return v;
  };
  EXPECT_EQ(model.final_norm, plus_one("model.norm.weight"));
  const std::string p = "model.layers.1.";
  EXPECT_EQ(model.layers[1].attn_norm, plus_one(p + "input_layernorm.weight"));
  EXPECT_EQ(model.layers[1].post_attn_norm, plus_one(p + "post_attention_layernorm.weight"));
  EXPECT_EQ(model.layers[1].ffn_norm, plus_one(p + "pre_feedforward_layernorm.weight"));
  EXPECT_EQ(model.layers[1].post_ffn_norm, plus_one(p + "post_feedforward_layernorm.weight"));
  EXPECT_EQ(model.layers[1].q_norm, plus_one(p + "self_attn.q_norm.weight"));
  EXPECT_EQ(model.layers[1].k_norm, plus_one(p + "self_attn.k_norm.weight"));
  EXPECT_EQ(model.config.local_layers, (std::vector<uint8_t>{1, 1, 0, 1}));
  EXPECT_EQ(model.config.embed_scale, std::sqrt(32.f));
  EXPECT_EQ(model.config.attn_scale(), 1.f / std::sqrt(12.f));
}

// HF directory out and back in: the same model bit for bit (Linear weights quantized to int8 per
// channel), norms written as multiplier - 1 (within half an ulp of 1 of the source's w: 1 + w was
// rounded to float on loading), and a config.json in transformers' Gemma3TextConfig keys.
TEST(Gemma3Io, HfDirectoryRoundTrip) {
  TempDir tmp;
  const mpq::synth::SynthModel synth = mpq::synth::make_model(gemma_spec());
  mpq::synth::write_model(synth, tmp.file("hf"));
  mpq::Model model = mpq::load_model(tmp.file("hf"), {.need_tokenizer = false});
  mpq::QuantizeOptions options;
  options.progress = false;
  mpq::quantize(model, mpq::uniform_plan(model, mpq::parse_scheme("int8_channel:rtn")), options);
  const std::vector<float> written_logits = logits_of(model);
  mpq::write_model(model, tmp.file("out"), {});

  std::ifstream config_file(tmp.file("out/config.json"));
  const nlohmann::json config = nlohmann::json::parse(config_file);
  EXPECT_EQ(config["model_type"], "gemma3_text");
  EXPECT_EQ(config["architectures"][0], "Gemma3ForCausalLM");
  EXPECT_EQ(config["hidden_activation"], "gelu_pytorch_tanh");
  EXPECT_FALSE(config.contains("hidden_act"));
  EXPECT_EQ(config["query_pre_attn_scalar"], 12);
  EXPECT_TRUE(config["query_pre_attn_scalar"].is_number_integer()) << "transformers' strict config wants an int";
  EXPECT_EQ(config["sliding_window"], 4);
  EXPECT_EQ(config["rope_local_base_freq"], 20000.0);
  EXPECT_EQ(config["rope_theta"], 1e6);
  EXPECT_EQ(config["layer_types"], nlohmann::json({"sliding_attention", "sliding_attention", "full_attention",
                                                   "sliding_attention"}));

  const mpq::SafetensorsFile st(tmp.file("out/model.safetensors"));
  for (const std::string name : {"model.norm.weight", "model.layers.2.post_feedforward_layernorm.weight",
                                 "model.layers.0.self_attn.k_norm.weight", "model.layers.3.pre_feedforward_layernorm.weight"}) {
    const std::vector<float> got = safetensors_f32(st, name), want = synth.at(name);
    ASSERT_EQ(got.size(), want.size()) << name;
    for (size_t i = 0; i < got.size(); ++i) EXPECT_LE(std::fabs(got[i] - want[i]), 0x1p-24) << name << " " << i;
  }

  mpq::Model back = mpq::load_model(tmp.file("out"), {.need_tokenizer = false});
  EXPECT_EQ(norms_of(back), norms_of(model));
  EXPECT_EQ(back.config.local_layers, model.config.local_layers);
  EXPECT_EQ(back.config.rope_local_theta, 20000.f);
  EXPECT_EQ(back.layers[0].at(mpq::LinearKind::Q).weights->format_name(), "int8_channel");
  EXPECT_EQ(logits_of(back), written_logits);
}

// GGUF out and back in (llama.cpp's types: q8_0 where rows are whole blocks, its f16 fallback
// elsewhere), with a tokenizer borrowed from the tiny shared model (needed by the GGUF writer).
TEST(Gemma3Io, GgufRoundTripInLlamaCppConventions) {
  const std::string tok = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
  if (!fs::exists(tok)) GTEST_SKIP() << "shared data not found: " << tok;
  TempDir tmp;
  mpq::synth::Spec spec = gemma_spec();
  spec.vocab = 512;                 // the tokenizer's
  spec.query_pre_attn_scalar = 8;   // head_dim: what llama.cpp derives (see the refusal test below)
  const mpq::synth::SynthModel synth = mpq::synth::make_model(spec);
  mpq::synth::write_model(synth, tmp.file("hf"));
  mpq::Model model = mpq::load_model(tmp.file("hf"), {.need_tokenizer = false});
  model.tokenizer = mpq::load_tokenizer(tok);
  const mpq::Plan plan = mpq::uniform_plan(model, mpq::parse_scheme("q8_0"), mpq::parse_scheme("q8_0"),
                                           mpq::parse_target("llama.cpp"));
  mpq::QuantizeOptions options;
  options.progress = false;
  mpq::quantize(model, plan, options);
  const std::vector<float> written_logits = logits_of(model);
  const std::string out = tmp.file("g.gguf");
  mpq::write_model(model, out, {});

  const mpq::GgufFile file(out);
  EXPECT_EQ(file.get_string("general.architecture"), "gemma3");
  EXPECT_EQ(file.get_int("gemma3.attention.sliding_window"), 4);
  EXPECT_EQ(file.get_float("gemma3.rope.freq_base_swa"), 20000.0);
  EXPECT_EQ(file.get_float("gemma3.rope.freq_base"), 1e6);
  const mpq::GgufValue& pattern = file.metadata().at("gemma3.attention.sliding_window_pattern");
  EXPECT_EQ(pattern.array_type, mpq::GgufType::BOOL);
  EXPECT_EQ(std::get<std::vector<int64_t>>(pattern.value), (std::vector<int64_t>{1, 1, 0, 1}));
  for (const char* name : {"blk.1.attn_norm.weight", "blk.1.post_attention_norm.weight", "blk.1.ffn_norm.weight",
                           "blk.1.post_ffw_norm.weight", "blk.1.attn_q_norm.weight", "blk.1.attn_k_norm.weight",
                           "output_norm.weight"}) {
    EXPECT_NE(file.find_tensor(name), nullptr) << name;
  }
  EXPECT_EQ(file.find_tensor("output.weight"), nullptr);  // tied
  // llama.cpp's norms hold 1 + w: the model's multipliers as they are.
  const mpq::TensorRecord* post_ffw = file.find_tensor("blk.1.post_ffw_norm.weight");
  ASSERT_NE(post_ffw, nullptr);
  std::vector<float> stored(post_ffw->nbytes / 4);
  std::memcpy(stored.data(), post_ffw->data, post_ffw->nbytes);
  EXPECT_EQ(stored, model.layers[1].post_ffn_norm);

  mpq::Model back = mpq::load_model(out);
  EXPECT_EQ(back.config.arch, "gemma3");
  EXPECT_EQ(back.config.local_layers, model.config.local_layers);
  EXPECT_EQ(back.config.rope_local_theta, 20000.f);
  EXPECT_EQ(back.config.attn_scale(), 1.f / std::sqrt(8.f));  // llama.cpp's rule: 1/sqrt(head_dim)
  EXPECT_EQ(norms_of(back), norms_of(model));
  EXPECT_EQ(logits_of(back), written_logits);
}

// llama.cpp derives the attention scale from the shape; a model whose query_pre_attn_scalar
// differs would run differently there: refused by name, nothing written.
TEST(Gemma3Io, GgufRefusesAnAttentionScaleLlamaCppWouldNotUse) {
  const std::string tok = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
  if (!fs::exists(tok)) GTEST_SKIP() << "shared data not found: " << tok;
  TempDir tmp;
  mpq::synth::Spec spec = gemma_spec();
  spec.vocab = 512;
  mpq::synth::write_model(mpq::synth::make_model(spec), tmp.file("hf"));
  mpq::Model model = mpq::load_model(tmp.file("hf"), {.need_tokenizer = false});
  model.tokenizer = mpq::load_tokenizer(tok);
  try {
    mpq::write_model(model, tmp.file("g.gguf"), {});
    FAIL() << "written";
  } catch (const mpq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("query_pre_attn_scalar"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(tmp.file("g.gguf")));
}

namespace {

// A copy of GGUF `from` at `to` with metadata changed by `edit` (tensors as they are).
void rewrite_gguf(const std::string& from, const std::string& to,
                  const std::function<void(std::map<std::string, mpq::GgufValue>&)>& edit) {
  const mpq::GgufFile src(from);
  std::map<std::string, mpq::GgufValue> metadata = src.metadata();
  metadata.erase("general.alignment");
  edit(metadata);
  mpq::GgufWriter w(to);
  for (const auto& [key, value] : metadata) w.set(key, value);
  for (const mpq::TensorRecord& t : src.tensors()) w.add_tensor(t.name, t.dtype, t.shape, t.data, t.nbytes);
  w.finish();
}

}  // namespace

// The GGUF reader's rule for local layers is llama.cpp's (src/models/gemma3.cpp, load_swa_pattern):
// attention.sliding_window_pattern as a per-layer bool array (what mpq writes), or P with layer l
// local when l % P < P − 1 (default P = 6), no local layers without attention.sliding_window;
// soft-capping keys are refused by name.
TEST(Gemma3Io, GgufLocalLayersFollowLlamaCppsRule) {
  const std::string tok = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
  if (!fs::exists(tok)) GTEST_SKIP() << "shared data not found: " << tok;
  TempDir tmp;
  mpq::synth::Spec spec = gemma_spec();
  spec.vocab = 512;
  spec.query_pre_attn_scalar = 8;
  mpq::synth::write_model(mpq::synth::make_model(spec), tmp.file("hf"));
  mpq::Model model = mpq::load_model(tmp.file("hf"), {.need_tokenizer = false});
  model.tokenizer = mpq::load_tokenizer(tok);
  mpq::write_model(model, tmp.file("g.gguf"), {});
  const std::string pattern_key = "gemma3.attention.sliding_window_pattern";
  struct Case {
    const char* name;
    std::function<void(std::map<std::string, mpq::GgufValue>&)> edit;
    std::vector<uint8_t> local;
    int window;
  };
  const std::vector<Case> cases = {
      {"no pattern: P = 6", [&](auto& m) { m.erase(pattern_key); }, {1, 1, 1, 1}, 4},
      {"P = 2", [&](auto& m) { m[pattern_key] = mpq::gguf_u32(2); }, {1, 0, 1, 0}, 4},
      {"P = 3", [&](auto& m) { m[pattern_key] = mpq::gguf_u32(3); }, {1, 1, 0, 1}, 4},
      {"P = 0: all local", [&](auto& m) { m[pattern_key] = mpq::gguf_u32(0); }, {1, 1, 1, 1}, 4},
      {"no window", [&](auto& m) { m.erase("gemma3.attention.sliding_window"); }, {0, 0, 0, 0}, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = tmp.file(std::string("case") + std::to_string(&c - cases.data()) + ".gguf");
    rewrite_gguf(tmp.file("g.gguf"), path, c.edit);
    const mpq::Model m = mpq::load_model(path);
    EXPECT_EQ(m.config.local_layers, c.local);
    EXPECT_EQ(m.config.sliding_window, c.window);
  }
  rewrite_gguf(tmp.file("g.gguf"), tmp.file("capped.gguf"),
               [](auto& m) { m["gemma3.final_logit_softcapping"] = mpq::gguf_f32(30.f); });
  try {
    mpq::load_model(tmp.file("capped.gguf"));
    FAIL() << "loaded";
  } catch (const mpq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("final_logit_softcapping"), std::string::npos) << e.what();
  }
}
