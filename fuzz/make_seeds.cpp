// mpq_fuzz_seeds OUT_DIR: writes the seed corpora of the fuzz harnesses, OUT_DIR/<harness>/<seed>,
// with the project's own writers (GgufWriter, SafetensorsWriter, write_tokenizer_gguf,
// write_model, write_sensitivity_file, write_plan) from the tests' synthetic models
// (tests/synthetic_model.h) and small tokenizers built here. Nothing is copied from elsewhere.
//
// Every seed is read back through the entry point its harness calls and must be accepted: a seed
// the parser refuses would only teach the fuzzer the first error path. The generator stops with a
// message (exit 1) when one is refused.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calib/sensitivity.h"
#include "calib/sensitivity_file.h"
#include "format/dtype.h"
#include "format/weight_format.h"
#include "fuzz_specs.h"
#include "fuzz_util.h"
#include "io/gguf.h"
#include "io/model_writer.h"
#include "io/safetensors.h"
#include "io/unicode.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "mpq/tokenizer.h"
#include "plan/plan.h"
#include "plan/planner.h"
#include "quant/quantize_model.h"
#include "synthetic_model.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace mpq;

namespace {

std::string g_out;      // OUT_DIR
std::string g_scratch;  // work directory inside OUT_DIR, removed at the end
int g_seeds = 0;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes OUT_DIR/<harness>/<name> = the files joined by the harness separator.
void seed(const std::string& harness, const std::string& name, const std::vector<std::string>& files) {
  std::string bytes;
  for (size_t i = 0; i < files.size(); ++i) {
    if (i > 0) bytes += fuzz::kFileSeparator;
    bytes += files[i];
  }
  fs::create_directories(g_out + "/" + harness);
  fuzz::write_file(g_out + "/" + harness + "/" + name, bytes);
  ++g_seeds;
}

// A work directory for one seed.
std::string work(const std::string& name) {
  const std::string dir = g_scratch + "/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Tokenizers

// Byte-level BPE (GPT-2 style): the 256 byte stand-ins, merges building a few English words,
// and <|endoftext|> as BOS/EOS.
TokenizerSpec byte_level_spec() {
  TokenizerSpec s;
  s.kind = TokenizerSpec::Kind::ByteLevelBpe;
  const auto& table = unicode::byte_level_table();
  for (int b = 0; b < 256; ++b) s.tokens.push_back(table.byte_to_utf8[b]);
  const char* merges[] = {"Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ w", "o r", "l l",
                          "Ġw or", "Ġwor l", "Ġworl d", "H e", "He ll", "Hell o", "1 2", "12 3"};
  for (const char* m : merges) {
    s.merges.push_back(m);
    std::string merged = m;
    merged.erase(merged.find(' '), 1);
    s.tokens.push_back(merged);
  }
  s.tokens.push_back("<|endoftext|>");
  s.token_types.assign(s.tokens.size(), TokenType::Normal);
  s.token_types.back() = TokenType::Control;
  s.bos_id = s.eos_id = static_cast<int32_t>(s.tokens.size()) - 1;
  s.pre_name = "gpt2";
  s.pre_regexes = {R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)"};
  return s;
}

// SentencePiece-style BPE with byte fallback (Llama 2 style): <unk> <s> </s>, <0x00>..<0xFF>,
// then pieces scored by merge order.
TokenizerSpec spm_spec() {
  TokenizerSpec s;
  s.kind = TokenizerSpec::Kind::SentencePiece;
  s.tokens = {"<unk>", "<s>", "</s>"};
  s.token_types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    s.tokens.push_back(buf);
    s.token_types.push_back(TokenType::Byte);
  }
  s.scores.assign(s.tokens.size(), 0.f);
  const char* pieces[] = {"\xE2\x96\x81", "e", "h", "l", "o", "t", "w", "r", "d", "H", "\xE2\x96\x81t",
                          "he", "\xE2\x96\x81the", "ll", "\xE2\x96\x81w", "or", "\xE2\x96\x81wor", "ld"};
  float score = 0;
  for (const char* p : pieces) {
    s.tokens.push_back(p);
    s.token_types.push_back(TokenType::Normal);
    s.scores.push_back(score);
    score -= 1;
  }
  s.unk_id = 0, s.bos_id = 1, s.eos_id = 2;
  s.add_bos = true;
  s.add_space_prefix = true;
  s.pre_name = "default";
  return s;
}

// A Hugging Face tokenizer.json for `spec` (its merges: byte-level; its scores: SentencePiece,
// turned into merges by rank the way HF's converter does). `variant` picks the pre-tokenizer /
// normalizer spelling.
json tokenizer_json(const TokenizerSpec& spec, const std::string& variant) {
  json vocab = json::object();
  json added = json::array();
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    const TokenType t = spec.token_types[id];
    if (t == TokenType::Control || t == TokenType::UserDefined) {
      added.push_back({{"id", id}, {"content", spec.tokens[id]}, {"special", t == TokenType::Control},
                       {"single_word", false}, {"lstrip", false}, {"rstrip", false}, {"normalized", false}});
    }
    vocab[spec.tokens[id]] = id;
  }
  json root = {{"version", "1.0"}, {"added_tokens", added}, {"truncation", nullptr}, {"padding", nullptr}};
  json model = {{"type", "BPE"}, {"dropout", nullptr}, {"vocab", vocab}};
  if (spec.kind == TokenizerSpec::Kind::ByteLevelBpe) {
    model["merges"] = spec.merges;
    if (variant == "split") {
      // Llama 3 spelling: an explicit Split regex, then ByteLevel without its own regex, digits.
      root["pre_tokenizer"] = {
          {"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"}, {"pattern", {{"Regex", R"(\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+|\s+)"}}},
             {"behavior", "Isolated"}, {"invert", false}},
            {{"type", "Digits"}, {"individual_digits", true}},
            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
      root["post_processor"] = {
          {"type", "TemplateProcessing"},
          {"single", {{{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 0}}}},
                      {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}};
      model["ignore_merges"] = true;
    } else {
      root["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                               {"use_regex", true}};
      root["post_processor"] = nullptr;
    }
    root["normalizer"] = nullptr;
    root["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true},
                       {"use_regex", true}};
  } else {
    // Merges by rank from the scores: every piece longer than one character is built from its
    // best split into two known pieces, in score order (which is the order of `pieces` above).
    json merges = json::array();
    for (size_t id = 0; id < spec.tokens.size(); ++id) {
      const std::string& t = spec.tokens[id];
      if (spec.token_types[id] != TokenType::Normal || unicode::char_len(t, 0) == t.size()) continue;
      for (size_t cut = unicode::char_len(t, 0); cut < t.size(); cut += unicode::char_len(t, cut)) {
        const std::string left = t.substr(0, cut), right = t.substr(cut);
        if (vocab.contains(left) && vocab.contains(right)) {
          merges.push_back(left + " " + right);
          break;
        }
      }
    }
    model["merges"] = merges;
    model["unk_token"] = "<unk>";
    model["byte_fallback"] = true;
    model["fuse_unk"] = true;
    if (variant == "metaspace") {
      root["normalizer"] = nullptr;
      root["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"},
                               {"prepend_scheme", "first"}, {"split", false}};
    } else {
      root["normalizer"] = {{"type", "Sequence"},
                            {"normalizers",
                             {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}};
      root["pre_tokenizer"] = nullptr;
    }
    root["post_processor"] = nullptr;
    root["decoder"] = nullptr;
  }
  root["model"] = model;
  return root;
}

void tokenizer_json_seeds() {
  struct Variant {
    const char* name;
    TokenizerSpec spec;
    const char* pre;
    json config;  // tokenizer_config.json; null: none
  };
  const Variant variants[] = {
      {"bpe_bytelevel", byte_level_spec(), "plain", json(nullptr)},
      {"bpe_bytelevel_config", byte_level_spec(), "plain",
       {{"add_bos_token", false}, {"add_eos_token", true}, {"eos_token", "<|endoftext|>"}}},
      {"bpe_split_digits", byte_level_spec(), "split", {{"bos_token", {{"content", "<|endoftext|>"}}}}},
      {"spm_normalizer", spm_spec(), "normalizer",
       {{"add_bos_token", true}, {"add_eos_token", false}, {"bos_token", {{"content", "<s>"}}}, {"eos_token", "</s>"},
        {"unk_token", "<unk>"}}},
      {"spm_metaspace", spm_spec(), "metaspace", json(nullptr)},
  };
  for (const Variant& v : variants) {
    const std::string dir = work(std::string("tok_") + v.name);
    std::vector<std::string> files = {tokenizer_json(v.spec, v.pre).dump(1)};
    fuzz::write_file(dir + "/tokenizer.json", files[0]);
    if (!v.config.is_null()) {
      files.push_back(v.config.dump(1));
      fuzz::write_file(dir + "/tokenizer_config.json", files[1]);
    }
    const Tokenizer tok(tokenizer_spec_from_hf_json(dir + "/tokenizer.json"), dir + "/tokenizer.json");
    if (tok.encode("Hello world 123", false).empty()) fail(v.name, "seed tokenizer encodes nothing");
    seed("tokenizer_json", v.name, files);
  }
}

// ---------------------------------------------------------------------------------------------
// GGUF

// HF tensor name -> llama.cpp name.
std::string gguf_name(const std::string& hf) {
  static const std::pair<const char*, const char*> kGlobal[] = {
      {"model.embed_tokens.weight", "token_embd.weight"}, {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"}};
  static const std::pair<const char*, const char*> kLayer[] = {
      {"input_layernorm.weight", "attn_norm.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},   {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},   {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},       {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},       {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"}, {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},        {"mlp.down_proj.weight", "ffn_down.weight"}};
  for (const auto& [h, g] : kGlobal)
    if (hf == h) return g;
  const std::string prefix = "model.layers.";
  const size_t dot = hf.find('.', prefix.size());
  const std::string layer = hf.substr(prefix.size(), dot - prefix.size());
  const std::string suffix = hf.substr(dot + 1);
  for (const auto& [h, g] : kLayer)
    if (suffix == h) return "blk." + layer + "." + g;
  fail(hf, "no GGUF name");
}

// The tokenizer.ggml.* keys of `spec`, as write_tokenizer_gguf writes them.
std::vector<std::pair<std::string, GgufValue>> tokenizer_metadata(const TokenizerSpec& spec) {
  const std::string path = work("tok_gguf") + "/tokenizer.gguf";
  write_tokenizer_gguf(spec, path);
  const GgufFile file(path);
  std::vector<std::pair<std::string, GgufValue>> out;
  for (const auto& [key, value] : file.metadata())
    if (key.rfind("tokenizer.", 0) == 0) out.emplace_back(key, value);
  return out;
}

// A synthetic model as a GGUF file with tokenizer metadata; matrices stored as `dtype` (F32,
// F16 or BF16; the norms stay F32 as llama.cpp stores them).
void gguf_model_seed(const std::string& name, synth::Spec s, const TokenizerSpec& tok, DType dtype) {
  s.vocab = static_cast<int>(tok.tokens.size());
  const synth::SynthModel m = synth::make_model(s);
  const std::string path = work("gguf_" + name) + "/model.gguf";
  GgufWriter w(path);
  const std::string a = s.model_type + ".";
  w.set("general.architecture", gguf_string(s.model_type));
  w.set("general.name", gguf_string("mpq fuzz seed " + name));
  w.set(a + "block_count", gguf_u32(s.layers));
  w.set(a + "embedding_length", gguf_u32(s.dim));
  w.set(a + "feed_forward_length", gguf_u32(s.ffn));
  w.set(a + "attention.head_count", gguf_u32(s.heads));
  w.set(a + "attention.head_count_kv", gguf_u32(s.kv_heads));
  w.set(a + "attention.key_length", gguf_u32(s.head_dim));
  w.set(a + "context_length", gguf_u32(s.max_pos));
  w.set(a + "attention.layer_norm_rms_epsilon", gguf_f32(static_cast<float>(s.eps)));
  w.set(a + "rope.freq_base", gguf_f32(static_cast<float>(s.theta)));
  for (auto& [key, value] : tokenizer_metadata(tok)) w.set(key, value);
  for (const auto& [hf, t] : m.tensors) {
    const bool matrix = t.shape.size() == 2 && dtype != DType::F32;
    if (!matrix) {
      w.add_tensor(gguf_name(hf), DType::F32, t.shape, t.values.data(), t.values.size() * 4);
      continue;
    }
    std::vector<uint16_t> bits(t.values.size());
    for (size_t i = 0; i < bits.size(); ++i)
      bits[i] = dtype == DType::F16 ? f32_to_f16(t.values[i]) : f32_to_bf16(t.values[i]);
    w.add_tensor(gguf_name(hf), dtype, t.shape, bits.data(), bits.size() * 2);
  }
  w.finish();
  LoadOptions options;
  Model model = load_model(path, options);  // with its tokenizer
  model.tokenizer->encode("Hello world", true);
  seed("gguf", name, {slurp(path)});
}

// One tensor of every GGUF storage type mpq reads (seeded random bytes: any bytes are valid codes;
// scales may come out non-finite, which the decoders pass through), plus metadata of every value
// type. Not a model: it exercises the tensor-info checks and the block decoders.
void gguf_blocks_seed() {
  const std::string path = work("gguf_blocks") + "/blocks.gguf";
  GgufWriter w(path, 64);
  w.set("general.architecture", gguf_string("llama"));
  w.set("test.u32", gguf_u32(7));
  w.set("test.i32", gguf_i32(-7));
  w.set("test.f32", gguf_f32(0.5f));
  w.set("test.bool", gguf_bool(true));
  w.set("test.strings", gguf_string_array({"a", "", "\xE2\x96\x81x"}));
  w.set("test.floats", gguf_f32_array({1.f, -2.f}));
  w.set("test.ints", gguf_i32_array({1, -2, 3}));
  std::mt19937 rng(7);
  for (int t = 0; t < static_cast<int>(DType::kCount); ++t) {
    const DType type = static_cast<DType>(t);
    const DTypeTraits& traits = dtype_traits(type);
    const int64_t cols = traits.block_size == 1 ? 5 : traits.block_size;  // one block per row
    const std::vector<int64_t> shape = {2, cols};
    const uint64_t nbytes = *dtype_nbytes(type, 2 * cols);
    std::vector<uint8_t> bytes(nbytes);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    w.add_tensor(std::string("t.") + traits.name, type, shape, bytes.data(), nbytes);
  }
  w.finish();
  const GgufFile check(path);
  seed("gguf", "blocks", {slurp(path)});
}

void gguf_seeds() {
  synth::Spec llama;
  llama.dim = 16, llama.ffn = 24, llama.head_dim = 4, llama.max_pos = 32;
  gguf_model_seed("llama_f32_bpe", llama, byte_level_spec(), DType::F32);
  synth::Spec qwen2 = llama;
  qwen2.model_type = "qwen2";
  gguf_model_seed("qwen2_f16_spm", qwen2, spm_spec(), DType::F16);
  synth::Spec qwen3 = llama;
  qwen3.model_type = "qwen3";
  qwen3.tied = true;
  gguf_model_seed("qwen3_bf16_tied", qwen3, byte_level_spec(), DType::BF16);
  gguf_blocks_seed();
}

// ---------------------------------------------------------------------------------------------
// safetensors, config.json, quantized directories

void safetensors_and_config_seeds() {
  for (const char* type : fuzz::kHfConfigModelTypes) {
    synth::SynthModel m = synth::make_model(fuzz::hf_config_spec(type));
    seed("hf_config", type, {m.config.dump(2)});
    if (std::string(type) == "llama") {
      m.config["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                  {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8}};
      seed("hf_config", "llama_rope_llama3", {m.config.dump(2)});
      m.config["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
      seed("hf_config", "llama_rope_linear", {m.config.dump(2)});
    }
  }
  // Loaded by the harness's own weights: check that each config seed loads.
  for (const char* type : fuzz::kHfConfigModelTypes) {
    const std::string dir = work(std::string("cfg_") + type);
    synth::write_model(synth::make_model(fuzz::hf_config_spec(type)), dir);
    LoadOptions options;
    options.need_tokenizer = false;
    load_model(dir, options);
  }

  synth::Spec f32;
  const std::string f32_dir = work("st_f32");
  synth::write_model(synth::make_model(f32), f32_dir);
  seed("safetensors", "llama_f32", {slurp(f32_dir + "/model.safetensors")});
  synth::Spec bf16;
  bf16.model_type = "qwen2";
  bf16.dtype = DType::BF16;
  const std::string bf16_dir = work("st_bf16");
  synth::write_model(synth::make_model(bf16), bf16_dir);
  seed("safetensors", "qwen2_bf16", {slurp(bf16_dir + "/model.safetensors")});

  // Every dtype the format defines, scalars and empty tensors, and metadata.
  SafetensorsWriter writer;
  std::mt19937 rng(3);
  const char* dtypes[] = {"BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2", "U16", "I16", "F16",
                          "BF16", "U32", "I32", "F32", "U64", "I64", "F64"};
  for (const char* dtype : dtypes) {
    const uint64_t size = *safetensors_dtype_size(dtype);
    std::vector<uint8_t> bytes(3 * size);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng() & 0x3F);  // small, finite values
    writer.add(std::string("t.") + dtype, dtype, {3}, bytes.data(), bytes.size());
  }
  const float one = 1.f;
  writer.add("scalar", DType::F32, {}, &one, 4);
  writer.add("empty", DType::F32, {0, 4}, nullptr, 0);
  writer.set_metadata("format", "pt");
  const std::string all = work("st_all") + "/all.safetensors";
  writer.write(all);
  const SafetensorsFile check(all);
  seed("safetensors", "every_dtype", {slurp(all)});
}

// Quantizes the default synthetic model as `choose` says (RTN), optionally with a quantized
// head, writes the directory with write_model and seeds config.json + model.safetensors.
void quantized_seed(const std::string& name, const synth::Spec& s,
                    const std::function<ModuleChoice(const std::string&, int, LinearKind)>& choose,
                    std::optional<WeightFormatId> head, bool also_safetensors_seed = false) {
  const std::string src = work("q_src_" + name);
  synth::write_model(synth::make_model(s), src);
  LoadOptions options;
  options.need_tokenizer = false;
  Model model = load_model(src, options);
  QuantizeOptions qo;
  qo.progress = false;
  QuantizeReport report = quantize_model(model, choose, qo);
  if (head) quantize_output_head(model, *head, report);
  const std::string out = g_scratch + "/q_out_" + name;
  fs::remove_all(out);
  write_model(model, out, {.embedding_dtype = DType::BF16});
  for (bool packed : {false, true}) {
    LoadOptions lo;
    lo.need_tokenizer = false;
    lo.runtime.packed = packed;
    load_model(out, lo);
  }
  const std::string st = slurp(out + "/model.safetensors");
  seed("quantized_dir", name, {slurp(out + "/config.json"), st});
  if (also_safetensors_seed) seed("safetensors", "quantized_" + name, {st});
}

void quantized_seeds() {
  synth::Spec s;  // dim 32, ffn 48: rows and columns that are not multiples of the group sizes
  for (const WeightFormatTraits& f : weight_formats()) {
    // ggml block formats are GGUF-only (the directory writer refuses them); the GGUF seeds
    // carry one tensor of every ggml type.
    if (is_ggml_format(f)) continue;
    quantized_seed(f.name, s, [&](const std::string&, int, LinearKind) { return ModuleChoice::whole(f.id, Quantizer::Rtn); },
                   std::nullopt, f.id == WeightFormatId::Int4_G128 || f.id == WeightFormatId::NVFP4);
  }
  // Mixed: a format per kind, q_proj channel-split, down_proj kept, the head quantized.
  quantized_seed("mixed_split_head", s,
                 [](const std::string&, int layer, LinearKind kind) {
                   switch (kind) {
                     case LinearKind::Q: {
                       ModuleChoice c = ModuleChoice::whole(WeightFormatId::Int4_G128, Quantizer::Rtn);
                       c.split = true;
                       c.high_format = WeightFormatId::Int8_Channel;
                       c.high_rows = {0, 3, 17};
                       return c;
                     }
                     case LinearKind::K: return ModuleChoice::whole(WeightFormatId::FP8_E4M3_Channel, Quantizer::Rtn);
                     case LinearKind::V: return ModuleChoice::whole(WeightFormatId::MXFP4, Quantizer::Rtn);
                     case LinearKind::O: return ModuleChoice::whole(WeightFormatId::Int3_G64, Quantizer::Hqq);
                     case LinearKind::Down: return layer == 0 ? ModuleChoice::kept() : ModuleChoice::whole(WeightFormatId::Int2_G32, Quantizer::Rtn);
                     default: return ModuleChoice::whole(WeightFormatId::Int4Sym_G128, Quantizer::Rtn);
                   }
                 },
                 WeightFormatId::Int8_Channel);
  synth::Spec tied = s;
  tied.tied = true;
  tied.model_type = "qwen3";
  quantized_seed("tied_head_nvfp4", tied,
                 [](const std::string&, int, LinearKind) { return ModuleChoice::whole(WeightFormatId::Int4_G64, Quantizer::Rtn); },
                 WeightFormatId::NVFP4);
}

// ---------------------------------------------------------------------------------------------
// Sensitivity files and plans (for tests/synthetic_model.h's default model, the shapes
// fuzz_plan validates against)

std::vector<std::vector<int32_t>> random_sequences(int n, int len, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(0, vocab - 1);
  std::vector<std::vector<int32_t>> out(n, std::vector<int32_t>(len));
  for (auto& seq : out)
    for (int32_t& id : seq) id = d(rng);
  return out;
}

void sensitivity_and_plan_seeds() {
  synth::Spec s;
  const std::string src = work("sens_model");
  synth::write_model(synth::make_model(s), src);
  LoadOptions lo;
  lo.need_tokenizer = false;
  Model model = load_model(src, lo);
  CalibrationSet set;
  set.options.n_samples = 4;
  set.options.seq_len = 12;
  set.options.micro_batch = 2;
  set.sequences = random_sequences(4, 12, s.vocab, 1);

  SensitivityOptions so;
  so.methods = parse_sensitivity_methods("fisher,output,channels,kld,shapley");
  so.formats = {WeightFormatId::BF16, WeightFormatId::FP8_E4M3_Channel, WeightFormatId::NVFP4,
                WeightFormatId::Int8_Channel, WeightFormatId::Int4_G128, WeightFormatId::Int2_G64};
  so.heldout = random_sequences(2, 12, s.vocab, 2);
  so.shapley.permutations = 4;
  so.progress = false;
  const SensitivityResult full = analyze_sensitivity(model, set, so);
  const std::string dir = work("sens");
  const std::string path = dir + "/S.json";
  write_sensitivity_file(full, sensitivity_model_identity(model, src), set.options, path);
  seed("sensitivity", "all_methods", {slurp(path), slurp(sensitivity_sidecar_path(path))});

  so.methods = parse_sensitivity_methods("output");
  so.formats = {WeightFormatId::Int8_Channel, WeightFormatId::Int4_G128};
  const std::string path2 = work("sens_output") + "/S.json";
  write_sensitivity_file(analyze_sensitivity(model, set, so), sensitivity_model_identity(model, src), set.options,
                         path2);
  seed("sensitivity", "output_only", {slurp(path2)});

  // Plans of every method from the full file, and one written by hand with a split entry and an
  // unquantized tensor.
  const SensitivityInput input = read_sensitivity_input(path, true);
  struct Request {
    const char* method;
    const char* cost;
    double bits;
  };
  for (const Request& r : {Request{"knapsack", "fisher", 5.0}, Request{"tiers", "kld", 9.0},
                           Request{"bqp", "shapley", 6.0}, Request{"channels", "fisher", 5.0},
                           Request{"rule", "output", 6.0}}) {
    PlanRequest req;
    req.method = r.method;
    req.cost = r.cost;
    req.bits = r.bits;
    const Plan plan = make_plan(input, req);
    const std::string plan_path = work(std::string("plan_") + r.method) + "/plan.json";
    write_plan(plan, plan_path);
    read_plan(plan_path);
    seed("plan", std::string(r.method) + "_" + r.cost, {slurp(plan_path)});
  }
  Plan hand;
  hand.method = "by hand";
  hand.cost = "none";
  hand.budget.bytes = 100000;
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* m : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"}) {
      PlanEntry e;
      e.format = l == 0 ? WeightFormatId::Int4_G32 : WeightFormatId::FP8_E4M3_B128;
      e.quantizer = l == 0 ? Quantizer::Gptq : Quantizer::RtnClip;
      hand.tensors[p + m] = e;
    }
    PlanEntry split;
    split.split = true;
    split.high_format = WeightFormatId::BF16;
    split.low_format = split.format = WeightFormatId::Int3_G128;
    split.high_channels = {1, 4, 30};
    hand.tensors[p + "self_attn.o_proj"] = split;
    hand.unquantized.push_back(p + "mlp.down_proj");
  }
  const std::string hand_path = work("plan_hand") + "/plan.json";
  write_plan(hand, hand_path);
  read_plan(hand_path);
  seed("plan", "by_hand_split", {slurp(hand_path)});
}

// ---------------------------------------------------------------------------------------------
// llama2.c

// A llama2.c checkpoint (legacy format, io/llama2c.cpp) of seeded random weights and its
// tokenizer file (llama2.c's exporter: "\n<s>\n" for BOS, spaces for U+2581).
void llama2c_seed(const std::string& name, bool shared_classifier) {
  const TokenizerSpec spm = spm_spec();
  std::string tok;
  auto put_i32 = [](std::string& s, int32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); };
  auto put_f32 = [](std::string& s, float v) { s.append(reinterpret_cast<const char*>(&v), 4); };
  int32_t max_len = 0;
  std::string entries;
  for (size_t id = 0; id < spm.tokens.size(); ++id) {
    std::string text = spm.tokens[id];
    if (text == "<s>") text = "\n<s>\n";
    if (text == "</s>") text = "\n</s>\n";
    for (size_t at; (at = text.find("\xE2\x96\x81")) != std::string::npos;) text.replace(at, 3, " ");
    put_f32(entries, spm.scores[id]);
    put_i32(entries, static_cast<int32_t>(text.size()));
    entries += text;
    max_len = std::max(max_len, static_cast<int32_t>(text.size()));
  }
  put_i32(tok, max_len);
  tok += entries;

  const int32_t dim = 8, hidden = 12, layers = 2, heads = 2, kv_heads = 1, seq_len = 16;
  const int32_t vocab = static_cast<int32_t>(spm.tokens.size());
  const int32_t head = dim / heads, kv_dim = kv_heads * head;
  std::string ck;
  for (int32_t v : {dim, hidden, layers, heads, kv_heads, shared_classifier ? vocab : -vocab, seq_len}) put_i32(ck, v);
  const int64_t floats = int64_t{vocab} * dim + layers * dim * 2 + int64_t{layers} * dim * dim * 2 +
                         int64_t{layers} * dim * kv_dim * 2 + int64_t{layers} * dim * hidden * 3 + dim +
                         int64_t{seq_len} * head + (shared_classifier ? 0 : int64_t{vocab} * dim);
  std::mt19937 rng(5);
  std::normal_distribution<float> noise(0.f, 0.2f);
  for (int64_t i = 0; i < floats; ++i) put_f32(ck, noise(rng));

  const std::string dir = work("l2c_" + name);
  fuzz::write_file(dir + "/model.bin", ck);
  fuzz::write_file(dir + "/tok.bin", tok);
  LoadOptions options;
  options.tokenizer_path = dir + "/tok.bin";
  Model model = load_model(dir + "/model.bin", options);
  model.tokenizer->encode("Hello world", true);
  seed("llama2c", name, {ck, tok});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  g_out = argv[1];
  g_scratch = g_out + "/.work";
  try {
    fs::create_directories(g_scratch);
    tokenizer_json_seeds();
    gguf_seeds();
    safetensors_and_config_seeds();
    quantized_seeds();
    sensitivity_and_plan_seeds();
    llama2c_seed("shared_classifier", true);
    llama2c_seed("separate_classifier", false);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpq_fuzz_seeds: %s\n", e.what());
    return 1;
  }
  fs::remove_all(g_scratch);
  std::printf("%d seeds in %s\n", g_seeds, g_out.c_str());
  return 0;
}
