// The Llama-family model code (config.json -> ModelConfig, loader, fp32 forward pass, KV cache,
// batching, CLI) checked against synthetic Hugging Face checkpoints: small random models written
// to a temp dir, loaded with mpq::load_model, and compared with a plain double-precision
// reference forward pass written here from the Hugging Face definitions, independent of
// src/model.
#include "format/dtype.h"
#include "test_util.h"
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <numbers>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mpq/error.h"
#include "mpq/model.h"
#include "synthetic_model.h"

namespace mpq {
using mpq::test::TempDir;

namespace {

namespace fs = std::filesystem;
using nlohmann::json;


// ---------------------------------------------------------------------------------------------
// Synthetic checkpoints (tests/synthetic_model.h)

using namespace synth;

Model load(const std::string& dir) {
  return load_model(dir, {.tokenizer_path = {}, .need_tokenizer = false});
}

// Seeded token ids in [0, vocab), with the first and last ids included.
std::vector<int32_t> make_tokens(int n, int vocab, uint32_t seed = 7) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> pick(0, vocab - 1);
  std::vector<int32_t> t(n);
  for (int32_t& id : t) id = pick(rng);
  if (n > 2) t[1] = 0, t[n - 1] = vocab - 1;
  return t;
}

// ---------------------------------------------------------------------------------------------
// Reference forward pass: double precision, straight loops, one token at a time.

using Vec = std::vector<double>;

// W · x (+ bias) for W row-major [out, in] with in = x.size().
Vec matvec(const std::vector<float>& w, const Vec& x, const std::vector<float>* bias = nullptr) {
  const size_t in = x.size(), out = w.size() / in;
  Vec y(out);
  for (size_t o = 0; o < out; ++o) {
    double acc = bias ? (*bias)[o] : 0.0;
    for (size_t i = 0; i < in; ++i) acc += static_cast<double>(w[o * in + i]) * x[i];
    y[o] = acc;
  }
  return y;
}

// RMSNorm of x[0..n) in place: x / sqrt(mean(x^2) + eps) * weight.
void rms_norm(double* x, size_t n, const std::vector<float>& weight, double eps) {
  double ss = 0;
  for (size_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const double scale = 1.0 / std::sqrt(ss / n + eps);
  for (size_t i = 0; i < n; ++i) x[i] = x[i] * scale * weight[i];
}

// RoPE inverse frequencies theta^(-2i/hd), with Llama-3 scaling applied as in Hugging Face's
// _compute_llama3_parameters.
// "rope_type" (or "type" in older configs) of the spec's rope_scaling; "" when unscaled.
std::string rope_type(const Spec& s) {
  if (!s.rope_scaling.is_object()) return "";
  return s.rope_scaling.value("rope_type", s.rope_scaling.value("type", std::string()));
}

Vec inv_freqs(const Spec& s, double theta) {
  Vec f(s.head_dim / 2);
  for (int i = 0; i < s.head_dim / 2; ++i) f[i] = std::pow(theta, -2.0 * i / s.head_dim);
  if (rope_type(s) == "llama3") {
    auto param = [&](const char* key) { return s.rope_scaling.at(key).get<double>(); };
    const double factor = param("factor"), low = param("low_freq_factor"),
                 high = param("high_freq_factor"), orig = param("original_max_position_embeddings");
    for (double& freq : f) {
      const double wavelen = 2 * std::numbers::pi / freq;
      if (wavelen < orig / high) continue;                           // high frequency: kept
      if (wavelen > orig / low) { freq /= factor; continue; }        // low frequency: scaled
      const double smooth = (orig / wavelen - low) / (high - low);  // in between: blended
      freq = (1 - smooth) * freq / factor + smooth * freq;
    }
  }
  return f;
}

// Rotate-half RoPE on one head: element i pairs with i + hd/2.
void rope(double* head, int hd, double pos, const Vec& freq) {
  for (int i = 0; i < hd / 2; ++i) {
    const double c = std::cos(pos * freq[i]), sn = std::sin(pos * freq[i]);
    const double a = head[i], b = head[i + hd / 2];
    head[i] = a * c - b * sn;
    head[i + hd / 2] = a * sn + b * c;
  }
}

// Logits for every position of `tokens`: [n_tokens, vocab] row-major. gemma3_text as
// transformers' Gemma3ForCausalLM: embedding × sqrt(dim), every RMSNorm multiplying by 1 + w,
// norms on the attention and MLP outputs, gelu_tanh MLP, scores × query_pre_attn_scalar^-1/2,
// local layers with a window and their own (unscaled) RoPE base.
Vec reference_logits(const SynthModel& m, const std::vector<int32_t>& tokens) {
  const Spec& s = m.spec;
  const int hd = s.head_dim, group = s.heads / s.kv_heads;
  const Vec global_freq = inv_freqs(s, s.theta);
  Vec local_freq(hd / 2);
  for (int i = 0; i < hd / 2; ++i) local_freq[i] = std::pow(s.local_theta, -2.0 * i / hd);
  // RMSNorm weight as the multiplier (gemma3 stores multiplier - 1).
  std::map<std::string, std::vector<float>> multipliers;
  auto norm = [&](const std::string& name) -> const std::vector<float>& {
    if (!s.gemma()) return m.at(name);
    auto [it, added] = multipliers.try_emplace(name, m.at(name));
    if (added) {
      for (float& v : it->second) v += 1.f;  // in float, as Gemma3RMSNorm: 1.0 + weight.float()
    }
    return it->second;
  };
  // Linear scaling divides positions by the factor.
  const double pos_scale =
      rope_type(s) == "linear" ? 1.0 / s.rope_scaling.at("factor").get<double>() : 1.0;
  std::vector<std::vector<Vec>> keys(s.layers), values(s.layers);  // [layer][position]
  Vec logits;
  for (size_t t = 0; t < tokens.size(); ++t) {
    const std::vector<float>& emb = m.at("model.embed_tokens.weight");
    Vec x(emb.begin() + tokens[t] * s.dim, emb.begin() + (tokens[t] + 1) * s.dim);
    if (s.gemma()) {
      for (double& v : x) v *= std::sqrt(static_cast<double>(s.dim));
    }
    for (int l = 0; l < s.layers; ++l) {
      const bool local = s.local_layer(l);
      const Vec& freq = local ? local_freq : global_freq;
      const int window = s.gemma() ? (local ? s.sliding_window : 0) : s.sliding_window;
      const double score_scale = 1.0 / std::sqrt(s.gemma() ? s.query_pre_attn_scalar : static_cast<double>(hd));
      const std::string p = "model.layers." + std::to_string(l) + ".";
      auto w = [&](const std::string& name) -> const std::vector<float>& { return m.at(p + name); };
      // A bias applies wherever the checkpoint has one (the config flags decide which exist).
      auto bias = [&](const std::string& module) -> const std::vector<float>* {
        auto it = m.tensors.find(p + module + ".bias");
        return it == m.tensors.end() ? nullptr : &it->second.values;
      };
      // Attention
      Vec xn = x;
      rms_norm(xn.data(), s.dim, norm(p + "input_layernorm.weight"), s.eps);
      Vec q = matvec(w("self_attn.q_proj.weight"), xn, bias("self_attn.q_proj"));
      Vec k = matvec(w("self_attn.k_proj.weight"), xn, bias("self_attn.k_proj"));
      Vec v = matvec(w("self_attn.v_proj.weight"), xn, bias("self_attn.v_proj"));
      for (int h = 0; h < s.heads; ++h) {
        if (s.qk_norm()) rms_norm(&q[h * hd], hd, norm(p + "self_attn.q_norm.weight"), s.eps);
        rope(&q[h * hd], hd, local ? t : t * pos_scale, freq);
      }
      for (int h = 0; h < s.kv_heads; ++h) {
        if (s.qk_norm()) rms_norm(&k[h * hd], hd, norm(p + "self_attn.k_norm.weight"), s.eps);
        rope(&k[h * hd], hd, local ? t : t * pos_scale, freq);
      }
      keys[l].push_back(k);
      values[l].push_back(v);
      Vec att(s.q_dim(), 0.0);
      for (int h = 0; h < s.heads; ++h) {
        const int kvh = h / group;  // GQA: consecutive query heads share a KV head
        Vec score(t + 1, -1e300);
        double max_score = -1e300, sum = 0;
        // causal: positions 0..t; a sliding window keeps only the latest `window`
        const size_t oldest = window > 0 && t + 1 > static_cast<size_t>(window) ? t + 1 - window : 0;
        for (size_t j = oldest; j <= t; ++j) {
          double dot = 0;
          for (int i = 0; i < hd; ++i) dot += q[h * hd + i] * keys[l][j][kvh * hd + i];
          score[j] = dot * score_scale;
          max_score = std::max(max_score, score[j]);
        }
        for (double& sc : score) sum += (sc = std::exp(sc - max_score));
        for (size_t j = oldest; j <= t; ++j) {
          const double prob = score[j] / sum;
          for (int i = 0; i < hd; ++i) att[h * hd + i] += prob * values[l][j][kvh * hd + i];
        }
      }
      Vec o = matvec(w("self_attn.o_proj.weight"), att, bias("self_attn.o_proj"));
      if (s.gemma()) rms_norm(o.data(), s.dim, norm(p + "post_attention_layernorm.weight"), s.eps);
      for (int i = 0; i < s.dim; ++i) x[i] += o[i];
      // SwiGLU MLP (gemma3: GeGLU with tanh GELU)
      xn = x;
      rms_norm(xn.data(), s.dim, norm(p + (s.gemma() ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight")),
               s.eps);
      const Vec gate = matvec(w("mlp.gate_proj.weight"), xn, bias("mlp.gate_proj"));
      const Vec up = matvec(w("mlp.up_proj.weight"), xn, bias("mlp.up_proj"));
      Vec act(s.ffn);
      for (int i = 0; i < s.ffn; ++i) {
        const double g = gate[i];
        act[i] = s.gemma() ? 0.5 * g * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (g + 0.044715 * g * g * g))) * up[i]
                           : g / (1 + std::exp(-g)) * up[i];
      }
      Vec down = matvec(w("mlp.down_proj.weight"), act, bias("mlp.down_proj"));
      if (s.gemma()) rms_norm(down.data(), s.dim, norm(p + "post_feedforward_layernorm.weight"), s.eps);
      for (int i = 0; i < s.dim; ++i) x[i] += down[i];
    }
    rms_norm(x.data(), s.dim, norm("model.norm.weight"), s.eps);
    const Vec row = matvec(m.at(s.tied ? "model.embed_tokens.weight" : "lm_head.weight"), x);
    logits.insert(logits.end(), row.begin(), row.end());
  }
  return logits;
}

// max |got - want| / max |want| (float or double vectors of the same size).
template <class A, class B>
double rel_diff(const A& got, const B& want) {
  EXPECT_EQ(got.size(), want.size());
  if (got.size() != want.size() || want.empty()) return 1e9;
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(static_cast<double>(got[i]) - want[i]));
    max_ref = std::max(max_ref, std::abs(static_cast<double>(want[i])));
  }
  return max_diff / max_ref;
}

// Rows [first, first + count) of a [n, width] row-major matrix.
template <class T>
std::vector<T> slice_rows(const std::vector<T>& m, int first, int count, int width = 61) {
  return std::vector<T>(m.begin() + first * width, m.begin() + (first + count) * width);
}

// Bound for fp32 model vs double reference. fp32 rounds with u = 6e-8; every value here comes
// from short dot products (length <= 64) of O(1) terms (weights ~0.2, activations normalized by
// RMSNorm), so each op loses at most ~64u = 4e-6 relative in the worst case and ~sqrt(64)u = 5e-7
// typically; two layers of well-conditioned ops (softmax over <= 13 keys, smooth SiLU) add
// modest amplification. Observed errors are ~1e-6, so 1e-4 leaves ~100x headroom, while any real
// mistake (RoPE pairing or frequencies, GQA head mapping, a missing bias or norm) moves the
// logits by O(1e-2..1) relative.
constexpr double kRefTol = 1e-4;
// fp32 vs fp32 with a different summation order (sgemv vs sgemm, batched vs not): same analysis,
// without the double reference, so 10x tighter.
constexpr double kSameTol = 1e-5;

// Writes the model, loads it, runs forward_all on 13 tokens and compares with the reference.
// Returns the loaded model for extra checks.
Model check_against_reference(const SynthModel& m, int n_tokens = 13) {
  TempDir dir;
  write_model(m, dir.path());
  Model model = load(dir.path());
  const Spec& s = m.spec;
  EXPECT_EQ(model.config.n_layers, s.layers);
  EXPECT_EQ(model.config.n_heads, s.heads);
  EXPECT_EQ(model.config.n_kv_heads, s.kv_heads);
  EXPECT_EQ(model.config.head_dim, s.head_dim);
  EXPECT_EQ(model.config.vocab_size, s.vocab);
  EXPECT_EQ(model.config.tied_embeddings, s.tied);
  EXPECT_EQ(model.config.qkv_bias, s.qkv_bias());
  EXPECT_EQ(model.config.qk_norm, s.qk_norm());
  const std::vector<int32_t> tokens = make_tokens(n_tokens, s.vocab);
  KVCache cache = model.make_cache(n_tokens);
  const std::vector<float> got = model.forward_all(tokens, cache);
  EXPECT_EQ(cache.n_past, n_tokens);
  const double err = rel_diff(got, reference_logits(m, tokens));
  EXPECT_LT(err, kRefTol) << s.model_type;
  return model;
}

TEST(ModelArchReference, LlamaGqa) {
  Model model = check_against_reference(make_model(Spec{}));
  EXPECT_EQ(model.config.arch, "llama");
}

TEST(ModelArchReference, LlamaMultiQuery) {
  Spec s;
  s.kv_heads = 1;  // every query head reads the single KV head
  check_against_reference(make_model(s));
}

TEST(ModelArchReference, LlamaTiedEmbeddings) {
  Spec s;
  s.tied = true;
  Model model = check_against_reference(make_model(s));
  EXPECT_TRUE(model.config.tied_embeddings);
}

TEST(ModelArchReference, Llama3RopeScaling) {
  Spec s;
  s.theta = 100;  // low base: every frequency turns noticeably over 13 positions
  s.rope_scaling = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                    {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 16}};
  const SynthModel m = make_model(s);
  // Wavelengths 2*pi*theta^(2i/8) = 6.3 (blended band: 4..16), 19.9, 62.8, 199 (divided by 8).
  // The test is only meaningful if scaling changes the logits far beyond the tolerance.
  SynthModel unscaled = m;
  unscaled.spec.rope_scaling = nullptr;
  const auto tokens = make_tokens(13, s.vocab);
  EXPECT_GT(rel_diff(reference_logits(unscaled, tokens), reference_logits(m, tokens)),
            100 * kRefTol);
  Model model = check_against_reference(m);
  EXPECT_EQ(model.config.rope_freq_divisors.size(), 4u);
}

TEST(ModelArchReference, LinearRopeScaling) {
  Spec s;
  s.theta = 100;
  s.rope_scaling = {{"type", "linear"}, {"factor", 4.0}};  // older configs say "type"
  check_against_reference(make_model(s));
}

TEST(ModelArchReference, Qwen2QkvBias) {
  Spec s;
  s.model_type = "qwen2";
  s.theta = 1000000;
  s.eps = 1e-6;
  Model model = check_against_reference(make_model(s));
  EXPECT_EQ(model.config.arch, "qwen2");
}

TEST(ModelArchReference, Qwen3QkNormWideHeads) {
  Spec s;
  s.model_type = "qwen3";
  s.head_dim = 16;  // explicit head_dim != hidden_size / heads: q_dim 64 > dim 32
  s.tied = true;
  Model model = check_against_reference(make_model(s));
  EXPECT_EQ(model.config.arch, "qwen3");
  EXPECT_EQ(model.config.q_dim(), 64);
}

TEST(ModelArchReference, MistralModelType) {
  Spec s;
  s.model_type = "mistral";
  s.heads = 8;  // head_dim 4
  s.head_dim = 4;
  Model model = check_against_reference(make_model(s));
  EXPECT_EQ(model.config.arch, "llama");  // runs on the llama forward pass
}

TEST(ModelArchReference, LlamaAttentionAndMlpBiases) {
  // Hugging Face's attention_bias puts biases on q/k/v/o, mlp_bias on gate/up/down.
  Spec s;
  s.attention_bias = true;
  s.mlp_bias = true;
  Model model = check_against_reference(make_model(s));
  EXPECT_TRUE(model.config.o_bias);
  EXPECT_TRUE(model.config.mlp_bias);
}

TEST(ModelArchReference, MistralSlidingWindow) {
  // A window of 5 over 13 tokens: later positions must not see the oldest keys.
  Spec s;
  s.model_type = "mistral";
  s.sliding_window = 5;
  Model model = check_against_reference(make_model(s));
  EXPECT_EQ(model.config.sliding_window, 5);
}

// Gemma 3: local (sliding-window 5 over 13 tokens, RoPE base 10000) and global layers (base 1e6,
// linear scaling of the global layers only), scores × 12^-1/2 instead of 8^-1/2, four norms per
// block stored as multiplier - 1, gelu_tanh MLP, embedding × sqrt(dim), tied head.
TEST(ModelArchReference, Gemma3LocalAndGlobalLayers) {
  for (bool scaled : {false, true}) {
    SCOPED_TRACE(scaled ? "linear rope scaling" : "unscaled");
    Spec s;
    s.model_type = "gemma3_text";
    s.layers = 3;  // local, global, local
    s.sliding_window = 5;
    s.theta = 1e6;
    s.tied = true;
    if (scaled) s.rope_scaling = {{"rope_type", "linear"}, {"factor", 4.0}};
    Model model = check_against_reference(make_model(s));
    const ModelConfig& c = model.config;
    EXPECT_EQ(c.arch, "gemma3");
    EXPECT_EQ(c.local_layers, (std::vector<uint8_t>{1, 0, 1}));
    EXPECT_EQ(c.layer_window(0), 5);
    EXPECT_EQ(c.layer_window(1), 0);
    EXPECT_EQ(c.rope_local_theta, 10000.f);
    EXPECT_EQ(c.rope_theta, 1e6f);
  }
}

// The same model in BF16 and with the transformers 5 spelling of the RoPE keys.
TEST(ModelArchReference, Gemma3Bf16AndRopeParameters) {
  Spec s;
  s.model_type = "gemma3_text";
  s.layers = 3;
  s.sliding_window = 4;
  s.theta = 1e6;
  s.local_theta = 5000;
  s.dtype = DType::BF16;
  SynthModel m = make_model(s);
  m.config.erase("rope_theta");
  m.config.erase("rope_local_base_freq");
  m.config["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}, {"rope_theta", 1e6}}},
                                 {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 5000.0}}}};
  Model model = check_against_reference(m);
  EXPECT_EQ(model.config.rope_local_theta, 5000.f);
}

TEST(ModelArchReference, Bf16Checkpoint) {
  Spec s;
  s.model_type = "qwen2";
  s.dtype = DType::BF16;  // the reference uses the same bf16-rounded values
  Model model = check_against_reference(make_model(s));
  for (const SourceTensorInfo& t : model.source_tensors) EXPECT_EQ(t.dtype, "BF16") << t.name;
}

// ---------------------------------------------------------------------------------------------
// KV cache and batching

class ModelArchCache : public ::testing::Test {
 protected:
  void SetUp() override {
    synth_ = make_model(Spec{});
    write_model(synth_, dir_.path());
    model_ = load(dir_.path());
  }
  TempDir dir_;
  SynthModel synth_;
  Model model_;
};

TEST_F(ModelArchCache, TokenByTokenMatchesFullSequence) {
  const auto tokens = make_tokens(13, 61);
  KVCache full_cache = model_.make_cache(16);
  const std::vector<float> full = model_.forward_all(tokens, full_cache);

  KVCache cache = model_.make_cache(16);
  std::vector<float> stepwise;
  for (int32_t token : tokens) {  // one token per call: the sgemv path, attention over the cache
    const std::vector<float> row = model_.forward_all(std::span(&token, 1), cache);
    stepwise.insert(stepwise.end(), row.begin(), row.end());
  }
  EXPECT_EQ(cache.n_past, 13);
  EXPECT_LT(rel_diff(stepwise, full), kSameTol);
  // The cache holds the same keys/values either way (positions 13-15 of every head's block are
  // still zero in both).
  for (int l = 0; l < 2; ++l) {
    EXPECT_LT(rel_diff(cache.k[l], full_cache.k[l]), kSameTol);
    EXPECT_LT(rel_diff(cache.v[l], full_cache.v[l]), kSameTol);
  }
}

// An F16 cache: decoding token by token (the decode kernels read the halves) against one prompt
// pass (sgemm over the widened halves), and against an fp32 cache. Bound: each key and value is
// rounded by at most 2^-11 relative, which moves a score q·k/√d by at most 2^-11 of Σ|q_d k_d|
// (≤ |q|·|k|, O(1) here) and an output by 2^-11 of the values it averages; through the two layers
// and the head that stays within a few times 2^-11 of the logits' scale: 4 · 2^-11. The two F16
// runs' caches differ by less: their fp32 keys differ only by summation order (kSameTol of the
// largest value), and where that crosses a rounding boundary by one half ulp (2^-10 relative).
TEST_F(ModelArchCache, F16CacheTokenByTokenMatchesFullSequenceAndStaysNearF32) {
  constexpr double kHalfRounding = 1.0 / 2048;  // 2^-11
  const auto tokens = make_tokens(13, 61);
  KVCache f32_cache = model_.make_cache(16, KvCacheType::F32);
  const std::vector<float> f32_logits = model_.forward_all(tokens, f32_cache);
  KVCache full_cache = model_.make_cache(16, KvCacheType::F16);
  EXPECT_TRUE(full_cache.k.empty());
  const std::vector<float> full = model_.forward_all(tokens, full_cache);
  KVCache cache = model_.make_cache(16, KvCacheType::F16);
  std::vector<float> stepwise;
  for (int32_t token : tokens) {
    const std::vector<float> row = model_.forward_all(std::span(&token, 1), cache);
    stepwise.insert(stepwise.end(), row.begin(), row.end());
  }
  EXPECT_LT(rel_diff(stepwise, full), 4 * kHalfRounding);
  auto widen = [](const std::vector<uint16_t>& halves) {
    std::vector<float> out(halves.size());
    for (size_t i = 0; i < halves.size(); ++i) out[i] = mpq::f16_to_f32(halves[i]);
    return out;
  };
  for (int l = 0; l < 2; ++l) {  // relative to each layer's largest value
    EXPECT_LT(rel_diff(widen(cache.k16[l]), widen(full_cache.k16[l])), 2 * kHalfRounding + kSameTol);
    EXPECT_LT(rel_diff(widen(cache.v16[l]), widen(full_cache.v16[l])), 2 * kHalfRounding + kSameTol);
  }
  const double diff = rel_diff(full, f32_logits);
  EXPECT_LT(diff, 4 * kHalfRounding);
  EXPECT_GT(diff, 0.0);  // the halves did round something
}

TEST_F(ModelArchCache, ChunkedPrefillMatchesFullSequence) {
  const auto tokens = make_tokens(13, 61);
  KVCache cache = model_.make_cache(13);  // exactly large enough
  std::vector<float> got = model_.forward_all(std::span(tokens).first(5), cache);
  const std::vector<float> rest = model_.forward_all(std::span(tokens).subspan(5), cache);
  got.insert(got.end(), rest.begin(), rest.end());
  EXPECT_LT(rel_diff(got, reference_logits(synth_, tokens)), kRefTol);
  // forward_last is the last row.
  KVCache cache2 = model_.make_cache(13);
  const std::vector<float> last = model_.forward_last(tokens, cache2);
  EXPECT_LT(rel_diff(last, slice_rows(got, 12, 1)), kSameTol);
}

TEST_F(ModelArchCache, BatchOfTwoMatchesSeparateCalls) {
  const auto a = make_tokens(7, 61, 11), b = make_tokens(12, 61, 12);
  KVCache ca = model_.make_cache(16), cb = model_.make_cache(16);
  const std::vector<float> want_a = model_.forward_all(a, ca), want_b = model_.forward_all(b, cb);

  KVCache ba = model_.make_cache(16), bb = model_.make_cache(16);
  const SequenceInput batch[2] = {{a.data(), 7, &ba}, {b.data(), 12, &bb}};
  std::vector<int> rows(19);
  for (int i = 0; i < 19; ++i) rows[i] = i;
  const std::vector<float> got = model_.forward(batch, rows);
  ASSERT_EQ(got.size(), 19u * 61);
  EXPECT_LT(rel_diff(slice_rows(got, 0, 7), want_a), kSameTol);
  EXPECT_LT(rel_diff(slice_rows(got, 7, 12), want_b), kSameTol);
  EXPECT_EQ(ba.n_past, 7);
  EXPECT_EQ(bb.n_past, 12);

  // Output rows may be any subset, in any order: here the last row of each sequence, b first.
  KVCache ba2 = model_.make_cache(16), bb2 = model_.make_cache(16);
  const SequenceInput batch2[2] = {{a.data(), 7, &ba2}, {b.data(), 12, &bb2}};
  const int picked[2] = {18, 6};
  const std::vector<float> lasts = model_.forward(batch2, picked);
  EXPECT_LT(rel_diff(slice_rows(lasts, 0, 1), slice_rows(want_b, 11, 1)), kSameTol);
  EXPECT_LT(rel_diff(slice_rows(lasts, 1, 1), slice_rows(want_a, 6, 1)), kSameTol);
}

// A batch step where the sequences sit at different positions (n_past 4 and 9): each must get
// its own RoPE positions and attend to its own cache.
TEST_F(ModelArchCache, BatchContinuesFromCachesAtDifferentPositions) {
  const auto a = make_tokens(7, 61, 21), b = make_tokens(10, 61, 22);
  KVCache ca = model_.make_cache(10), cb = model_.make_cache(10);
  model_.forward_all(std::span(a).first(4), ca);
  model_.forward_all(std::span(b).first(9), cb);
  const SequenceInput batch[2] = {{a.data() + 4, 3, &ca}, {b.data() + 9, 1, &cb}};
  const int rows[4] = {0, 1, 2, 3};
  const std::vector<float> got = model_.forward(batch, rows);
  const auto ref_a = reference_logits(synth_, a), ref_b = reference_logits(synth_, b);
  EXPECT_LT(rel_diff(slice_rows(got, 0, 3), slice_rows(ref_a, 4, 3)), kRefTol);
  EXPECT_LT(rel_diff(slice_rows(got, 3, 1), slice_rows(ref_b, 9, 1)), kRefTol);
}

TEST_F(ModelArchCache, TooSmallCacheThrows) {
  const auto tokens = make_tokens(13, 61);
  KVCache cache = model_.make_cache(12);
  EXPECT_THROW(model_.forward_all(tokens, cache), Error);
  EXPECT_EQ(cache.n_past, 0);
  // A cache filled to capacity refuses one more token.
  KVCache full = model_.make_cache(4);
  model_.forward_all(std::span(tokens).first(4), full);
  EXPECT_THROW(model_.forward_all(std::span(tokens).subspan(4, 1), full), Error);
  EXPECT_EQ(full.n_past, 4);
}

TEST_F(ModelArchCache, TokenOutOfRangeThrows) {
  for (int32_t bad : {61, 1000, -1}) {
    std::vector<int32_t> tokens = {1, 2, bad, 3};
    KVCache cache = model_.make_cache(8);
    try {
      model_.forward_all(tokens, cache);
      ADD_FAILURE() << "token " << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::to_string(bad)), std::string::npos) << e.what();
    }
    EXPECT_EQ(cache.n_past, 0);  // nothing was appended: the cache is still usable
    const std::vector<int32_t> ok = {1, 2, 60, 3};
    EXPECT_LT(rel_diff(model_.forward_all(ok, cache), reference_logits(synth_, ok)), kRefTol);
  }
}

// ---------------------------------------------------------------------------------------------
// Malformed configs and checkpoints: one-line mpq::Error naming the file and the problem.

// Loading `m` must fail with an error that names `dir/<file>` (file empty: the directory) and
// contains every phrase.
void expect_load_error(const SynthModel& m, const std::string& file,
                       const std::vector<std::string>& phrases) {
  TempDir dir;
  write_model(m, dir.path());
  const std::string where = file.empty() ? dir.path() : dir.file(file);
  try {
    load(dir.path());
    ADD_FAILURE() << "loaded, expected an error containing '" << phrases.at(0) << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(where + ": ", 0), 0u) << "expected to start with " << where << ": " << msg;
    for (const std::string& phrase : phrases) {
      EXPECT_NE(msg.find(phrase), std::string::npos) << "expected '" << phrase << "' in: " << msg;
    }
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(ModelArchErrors, UnknownArchitecture) {
  SynthModel m = make_model(Spec{});
  m.config["model_type"] = "phi3";
  expect_load_error(m, "config.json", {"unsupported architecture 'phi3'", "llama", "gemma3_text"});
}

TEST(ModelArchErrors, Gemma3RefusesWhatItCannotRun) {
  Spec s;
  s.model_type = "gemma3_text";
  s.sliding_window = 4;
  const std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
      {[](json& c) { c["final_logit_softcapping"] = 30.0; }, "final_logit_softcapping"},
      {[](json& c) { c["attn_logit_softcapping"] = 50.0; }, "attn_logit_softcapping"},
      {[](json& c) { c["hidden_activation"] = "gelu"; }, "hidden_activation 'gelu'"},
      {[](json& c) { c["use_bidirectional_attention"] = true; }, "use_bidirectional_attention"},
      {[](json& c) { c["layer_types"] = {"sliding_attention", "chunked_attention"}; }, "layer_types[1]"},
      {[](json& c) { c["layer_types"] = {"sliding_attention"}; }, "layer_types"},
      {[](json& c) { c["rope_parameters"] = {{"sliding_attention", {{"rope_type", "linear"}, {"factor", 2.0}}}}; },
       "sliding-window layers"},
      {[](json& c) { c["rope_parameters"] = {{"global", {{"rope_type", "default"}}}}; }, "rope_parameters.global"},
  };
  for (const auto& [edit, phrase] : cases) {
    SCOPED_TRACE(phrase);
    SynthModel m = make_model(s);
    edit(m.config);
    expect_load_error(m, "config.json", {phrase});
  }
}

TEST(ModelArchErrors, MissingField) {
  for (const char* field : {"hidden_size", "num_hidden_layers", "vocab_size", "model_type"}) {
    SCOPED_TRACE(field);
    SynthModel m = make_model(Spec{});
    m.config.erase(field);
    expect_load_error(m, "config.json", {field, "missing"});
  }
}

TEST(ModelArchErrors, InvalidFieldValue) {
  SynthModel m = make_model(Spec{});
  m.config["intermediate_size"] = 0;
  expect_load_error(m, "config.json", {"intermediate_size", "0"});
  m.config["intermediate_size"] = "48";
  expect_load_error(m, "config.json", {"intermediate_size", "integer"});
}

TEST(ModelArchErrors, HeadsNotMultipleOfKvHeads) {
  Spec s;
  s.kv_heads = 3;
  expect_load_error(make_model(s), "config.json",
                    {"num_attention_heads (4)", "not a multiple of num_key_value_heads (3)"});
}

TEST(ModelArchErrors, MissingTensor) {
  SynthModel m = make_model(Spec{});
  m.tensors.erase("model.layers.1.mlp.down_proj.weight");
  expect_load_error(m, "", {"missing tensor 'model.layers.1.mlp.down_proj.weight'"});
}

TEST(ModelArchErrors, MissingQwen2Bias) {
  Spec s;
  s.model_type = "qwen2";
  SynthModel m = make_model(s);
  m.tensors.erase("model.layers.0.self_attn.k_proj.bias");
  expect_load_error(m, "", {"model.layers.0.self_attn.k_proj.bias"});
}

TEST(ModelArchErrors, WrongShape) {
  SynthModel m = make_model(Spec{});
  Tensor& gate = m.tensors["model.layers.0.mlp.gate_proj.weight"];
  gate.shape = {32, 48};  // transposed: [hidden, intermediate] instead of [intermediate, hidden]
  expect_load_error(m, "model.safetensors",
                    {"model.layers.0.mlp.gate_proj.weight", "[32, 48]", "expected [48, 32]"});
}

TEST(ModelArchErrors, MissingLmHeadWhenUntied) {
  SynthModel m = make_model(Spec{});
  m.tensors.erase("lm_head.weight");
  expect_load_error(m, "", {"lm_head.weight"});
}

TEST(ModelArchErrors, UnsupportedRopeScaling) {
  Spec s;
  s.rope_scaling = {{"rope_type", "yarn"}, {"factor", 4.0}};
  expect_load_error(make_model(s), "config.json", {"unsupported rope_scaling type 'yarn'"});
}

TEST(ModelArchErrors, UnsupportedActivation) {
  SynthModel m = make_model(Spec{});
  m.config["hidden_act"] = "gelu";
  expect_load_error(m, "config.json", {"unsupported hidden_act 'gelu'"});
}

TEST(ModelArchErrors, UnusedTensorIsRefused) {
  // An o_proj bias without attention_bias in the config: running without it would be silently
  // wrong, so the load fails naming the tensor.
  SynthModel m = make_model(Spec{});
  m.tensors["model.layers.0.self_attn.o_proj.bias"] = {{32}, std::vector<float>(32, 5.f)};
  expect_load_error(m, "model.safetensors", {"model.layers.0.self_attn.o_proj.bias", "not used"});
}

// ---------------------------------------------------------------------------------------------
// The CLI

using mpq::test::RunResult;
using mpq::test::run_mpq;

// A failed command: non-zero exit, nothing on stdout, one line on stderr naming `path`.
void expect_cli_error(const RunResult& r, const std::string& path, const std::string& phrase) {
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.status, -1) << "killed by a signal";
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(phrase), std::string::npos) << r.err;
}

TEST(ModelArchCli, NonexistentPath) {
  TempDir tmp;
  const std::string path = tmp.file("no_such_model");
  expect_cli_error(run_mpq("info '" + path + "'", tmp), path, "no such file");
}

TEST(ModelArchCli, UnknownArchitecture) {
  TempDir tmp;
  SynthModel m = make_model(Spec{});
  m.config["model_type"] = "phi3";
  write_model(m, tmp.file("model"));
  expect_cli_error(run_mpq("info '" + tmp.file("model") + "'", tmp), tmp.file("model/config.json"),
                   "unsupported architecture 'phi3'");
}

// Parameter count from the spec: embedding, per layer two norms, q/k/v/o, three MLP matrices,
// q/k/v biases (qwen2), q/k norms (qwen3); final norm; lm_head when untied.
int64_t expected_parameters(const Spec& s) {
  int64_t per_layer = 2 * s.dim + static_cast<int64_t>(s.dim) * (2 * s.q_dim() + 2 * s.kv_dim()) +
                      3 * static_cast<int64_t>(s.dim) * s.ffn;
  if (s.qkv_bias()) per_layer += s.q_dim() + 2 * s.kv_dim();
  if (s.qk_norm()) per_layer += 2 * s.head_dim;
  return static_cast<int64_t>(s.vocab) * s.dim * (s.tied ? 1 : 2) + s.layers * per_layer + s.dim;
}

TEST(ModelArchCli, InfoJson) {
  struct Case {
    std::string model_type;
    bool tied;
    int head_dim;
  };
  for (const Case& c :
       {Case{"qwen2", false, 8}, Case{"qwen3", true, 16}, Case{"mistral", false, 8}}) {
    SCOPED_TRACE(c.model_type);
    TempDir tmp;
    Spec s;
    s.model_type = c.model_type;
    s.tied = c.tied;
    s.head_dim = c.head_dim;
    s.layers = 3;
    write_model(make_model(s), tmp.file("model"));
    const RunResult r = run_mpq("info '" + tmp.file("model") + "' --json", tmp);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "");
    json j;
    ASSERT_NO_THROW(j = json::parse(r.out)) << r.out;
    EXPECT_EQ(j["arch"], c.model_type == "mistral" ? "llama" : c.model_type);
    EXPECT_EQ(j["layout"], "hf");
    EXPECT_EQ(j["n_layers"], 3);
    EXPECT_EQ(j["head_dim"], c.head_dim);
    EXPECT_EQ(j["tied_embeddings"], c.tied);
    EXPECT_EQ(j["parameters"].get<int64_t>(), expected_parameters(s));
    // Every stored tensor is listed, and their sizes add up to the parameter count.
    const SynthModel m = make_model(s);
    ASSERT_EQ(j["tensors"].size(), m.tensors.size());
    int64_t listed = 0;
    for (const json& t : j["tensors"]) {
      int64_t n = 1;
      for (const json& d : t["shape"]) n *= d.get<int64_t>();
      listed += n;
      EXPECT_EQ(t["dtype"], "F32");
    }
    EXPECT_EQ(listed, expected_parameters(s));
  }
}

}  // namespace
}  // namespace mpq
