// Hugging Face tokenizer files from a TokenizerSpec (see tokenizer_hf_writer.h).
//
// tokenizer.json, by kind of vocabulary:
//   - byte-level BPE (GPT-2, Llama 3, Qwen 2, SmolLM): model BPE with the vocabulary and the
//     merges as [left, right] pairs (the form tokenizers >= 0.20 writes; unambiguous whatever the
//     token text), `ignore_merges` from the spec; pre_tokenizer = one step per spec regex, then
//     ByteLevel. A step is written in the form the models' own files use: \p{N} / \p{N}+ as
//     Digits, GPT-2's pattern in last place as ByteLevel(use_regex=true), any other regex as
//     Split(Regex, Isolated) followed by ByteLevel(use_regex=false). Decoder ByteLevel.
//   - SentencePiece-style (llama.cpp's "llama" vocabulary, llama2.c): the form of HF's fast
//     Llama tokenizer: normalizer Prepend("▁") (only with add_space_prefix) + Replace(" ", "▁"),
//     no pre-tokenizer, BPE with byte_fallback and merges derived from the scores (below),
//     decoder Replace("▁", " ") / ByteFallback / Fuse / Strip(one leading space).
// Both: added_tokens for control and user-defined tokens, matched on the raw text (normalized
// false) as mpq and llama.cpp match them; the unknown token as the model's unk_token; unused and
// undefined tokens as plain vocabulary (mpq treats them as normal tokens); a TemplateProcessing post-processor that
// adds BOS/EOS exactly when the spec does (byte-level: ByteLevel when it adds nothing).
//
// Where the libraries differ, and what this file does about it:
//   - Hugging Face always cuts added special tokens out of the text; mpq only with
//     parse_special. So transformers' ids equal mpq's encode(text, add_special, parse_special =
//     true); on text holding no special-token text (WikiText-2) they equal plain encode too.
//   - transformers makes every token named in tokenizer_config.json (bos/eos/unk/pad) special,
//     i.e. cut out of any input. A named token that mpq treats as plain text (a normal token)
//     would make the two part ways: refused.
//   - SentencePiece merges the adjacent pair whose concatenation is the token with the highest
//     score, ties leftmost; Hugging Face's BPE merges the pair with the lowest merge rank. The
//     merges written are those of transformers' SentencePieceExtractor: (a, b) for every token
//     t = a + b where a and b are tokens, ranked by t's score (ties by t's id, then a's and b's
//     ids). That reproduces SentencePiece when no two tokens that merges can produce share a
//     score and no token joins a character that is not itself a token (SentencePiece merges
//     such a character; BPE with byte_fallback has turned it into bytes before merging); both
//     are checked and refused. Byte fallback must cover all 256 bytes or none.
#include "io/tokenizer_hf_writer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "io/output.h"
#include "io/tokenizer_internal.h"
#include "io/unicode.h"
#include "mpq/error.h"

namespace mpq {

namespace {

using ojson = nlohmann::ordered_json;
constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

[[noreturn]] void refuse(const std::string& source, const std::string& why) {
  fail(source, "tokenizer cannot be written as a Hugging Face tokenizer.json that gives the same "
               "token ids: " + why);
}

// A token for messages: its id and its text as a JSON string (quoted, control bytes escaped).
std::string describe(const TokenizerSpec& spec, int32_t id) {
  return "token " + std::to_string(id) + " " + ojson(spec.tokens[id]).dump();
}

// ordered_json keeps keys in insertion order (the vocabulary by id, as tokenizers writes it), but
// its insert looks for an existing key linearly: quadratic for a 150k-token vocabulary. The keys
// added here are unique (checked before), so they are appended to the underlying vector.
void append_key(ojson& object, std::string key, ojson value) {
  auto& items = static_cast<ojson::object_t::Container&>(object.get_ref<ojson::object_t&>());
  items.emplace_back(std::move(key), std::move(value));
}

bool is_added(TokenType t) {
  return t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown;
}

// The checked spec: every token text unique and valid UTF-8, text -> id.
struct Vocab {
  const TokenizerSpec& spec;
  const std::string& source;
  std::unordered_map<std::string_view, int32_t> id_of;

  int32_t find(std::string_view text) const {
    auto it = id_of.find(text);
    return it == id_of.end() ? -1 : it->second;
  }
  const std::string& text(int32_t id) const { return spec.tokens[id]; }
  TokenType type(int32_t id) const { return spec.token_types[id]; }
};

Vocab check_vocab(const TokenizerSpec& spec, const std::string& source) {
  Vocab v{spec, source, {}};
  v.id_of.reserve(spec.tokens.size());
  for (int32_t id = 0; id < static_cast<int32_t>(spec.tokens.size()); ++id) {
    const std::string& t = spec.tokens[id];
    if (!unicode::is_valid_utf8(t)) {
      refuse(source, "token " + std::to_string(id) + " is not valid UTF-8 (JSON strings are)");
    }
    auto [it, fresh] = v.id_of.emplace(t, id);
    if (!fresh) {
      refuse(source, describe(spec, id) + " repeats " + describe(spec, it->second) +
                         " (a tokenizer.json vocabulary maps each text to one id)");
    }
  }
  if (!unicode::is_valid_utf8(spec.chat_template)) refuse(source, "the chat template is not valid UTF-8");
  for (int32_t id = 0; id < static_cast<int32_t>(spec.tokens.size()); ++id) {
    if (spec.token_types[id] == TokenType::Unknown && id != spec.unk_id) {
      refuse(source, describe(spec, id) + " has the unknown type but is not the unknown token "
                                          "(tokenizer.json has one unknown token)");
    }
  }
  // transformers makes each named token special (cut out of any input text); mpq cuts out only
  // control, unknown and user-defined tokens.
  for (auto [id, key] : {std::pair{spec.bos_id, "bos"}, std::pair{spec.eos_id, "eos"},
                         std::pair{spec.unk_id, "unk"}, std::pair{spec.pad_id, "pad"}}) {
    if (id < 0) continue;
    if (!is_added(spec.token_types[id]) || spec.tokens[id].empty()) {
      refuse(source, std::string(key) + " is " + describe(spec, id) +
                         ", a plain token: transformers would treat its text as a special token "
                         "in any input, mpq does not");
    }
  }
  return v;
}

// added_tokens entries (tokenizer.json) and added_tokens_decoder (tokenizer_config.json).
void added_tokens(const Vocab& v, ojson& list, ojson& decoder) {
  list = ojson::array();
  decoder = ojson::object();
  for (int32_t id = 0; id < static_cast<int32_t>(v.spec.tokens.size()); ++id) {
    // An empty text can never be matched; as a plain vocabulary entry it decodes the same. The
    // unknown token is not listed: it is the model's unk_token (how mpq's reader recognises it)
    // and tokenizer_config.json's, from which transformers adds it as a special token.
    const TokenType type = v.type(id);
    if (type == TokenType::Unknown || !is_added(type) || v.text(id).empty()) continue;
    const bool special = type == TokenType::Control;
    list.push_back({{"id", id}, {"content", v.text(id)}, {"single_word", false}, {"lstrip", false},
                    {"rstrip", false}, {"normalized", false}, {"special", special}});
    append_key(decoder, std::to_string(id),
               {{"content", v.text(id)}, {"lstrip", false}, {"normalized", false}, {"rstrip", false},
                {"single_word", false}, {"special", special}});
  }
}

ojson template_processing(const TokenizerSpec& spec) {
  auto special = [&](int32_t id, int type_id) {
    return ojson{{"SpecialToken", {{"id", spec.tokens[id]}, {"type_id", type_id}}}};
  };
  auto sequence = [](const char* name, int type_id) {
    return ojson{{"Sequence", {{"id", name}, {"type_id", type_id}}}};
  };
  ojson single = ojson::array(), pair = ojson::array(), specials = ojson::object();
  if (spec.add_bos) single.push_back(special(spec.bos_id, 0));
  single.push_back(sequence("A", 0));
  if (spec.add_eos) single.push_back(special(spec.eos_id, 0));
  pair = single;
  if (spec.add_bos) pair.push_back(special(spec.bos_id, 1));
  pair.push_back(sequence("B", 1));
  if (spec.add_eos) pair.push_back(special(spec.eos_id, 1));
  for (auto [on, id] : {std::pair{spec.add_bos, spec.bos_id}, std::pair{spec.add_eos, spec.eos_id}}) {
    if (!on) continue;
    const std::string& t = spec.tokens[id];
    specials[t] = {{"id", t}, {"ids", {id}}, {"tokens", {t}}};
  }
  return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
}

ojson bpe_model(const Vocab& v, ojson merges, const ojson& unk_token, bool byte_fallback) {
  ojson vocab = ojson::object();
  for (int32_t id = 0; id < static_cast<int32_t>(v.spec.tokens.size()); ++id) append_key(vocab, v.text(id), id);
  return {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", unk_token},
          {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr},
          // mpq emits one unknown token per unknown character, as SentencePiece.
          {"fuse_unk", false},
          {"byte_fallback", byte_fallback},
          {"ignore_merges", v.spec.ignore_merges},
          {"vocab", std::move(vocab)},
          {"merges", std::move(merges)}};
}

// ---------------------------------------------------------------------------------------------
// Byte-level BPE

void byte_level(const Vocab& v, ojson& doc) {
  const TokenizerSpec& spec = v.spec;
  // Merges as [left, right], split as BpeEncoder splits them; a repeated pair keeps its first
  // (best) rank, as in mpq, where tokenizers would let the last one win.
  ojson merges = ojson::array();
  std::unordered_set<uint64_t> seen;
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const std::string& m = spec.merges[rank];
    const size_t sp = m.find(' ', 1);
    const std::string left = m.substr(0, sp), right = m.substr(sp + 1);
    const uint64_t key = (static_cast<uint64_t>(v.find(left)) << 32) | static_cast<uint32_t>(v.find(right));
    if (!seen.insert(key).second) continue;
    merges.push_back({left, right});
  }
  // A byte whose stand-in character is not a token: mpq's BpeEncoder emits the unknown token
  // for it (one per byte) or drops it when there is none; BPE does the same with unk_token set
  // (fuse_unk off) or not. Hugging Face only ever sees valid UTF-8, where C0, C1 and F5..FF never
  // occur, so only the other bytes need the unk_token (SmolLM2 lacks 04, 06, 13, 14, 16, 1D, F1
  // and F2).
  ojson unk = nullptr;
  if (spec.unk_id >= 0) {
    bool needed = spec.token_types[spec.unk_id] == TokenType::Unknown;
    const auto& table = unicode::byte_level_table();
    for (int b = 0; b < 256 && !needed; ++b) {
      const bool in_utf8 = b != 0xC0 && b != 0xC1 && b < 0xF5;
      needed = in_utf8 && v.find(table.byte_to_utf8[b]) < 0;
    }
    if (needed) unk = spec.tokens[spec.unk_id];
  }

  ojson steps = ojson::array();
  bool gpt2_last = false;
  for (size_t i = 0; i < spec.pre_regexes.size(); ++i) {
    const std::string& re = spec.pre_regexes[i];
    if (re == R"(\p{N})" || re == R"(\p{N}+)") {
      steps.push_back({{"type", "Digits"}, {"individual_digits", re == R"(\p{N})"}});
    } else if (re == tok::gpt2_regex() && i + 1 == spec.pre_regexes.size()) {
      gpt2_last = true;
    } else {
      steps.push_back({{"type", "Split"},
                       {"pattern", {{"Regex", re}}},
                       {"behavior", "Isolated"},
                       {"invert", false}});
    }
  }
  steps.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                   {"use_regex", gpt2_last}});
  doc["normalizer"] = nullptr;
  doc["pre_tokenizer"] = steps.size() == 1 ? steps[0] : ojson{{"type", "Sequence"}, {"pretokenizers", steps}};
  doc["post_processor"] =
      spec.add_bos || spec.add_eos
          ? template_processing(spec)
          : ojson{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  doc["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  doc["model"] = bpe_model(v, std::move(merges), unk, /*byte_fallback=*/false);
}

// ---------------------------------------------------------------------------------------------
// SentencePiece-style BPE

// Whether merges can ever produce token `id`. Normalization turns every space into "▁" before
// merging, so a token with a plain space is never formed (Gemma has such tokens). A user-defined
// token is cut out of the raw text before the model runs (in mpq, llama.cpp and Hugging Face
// alike), so unless its text holds "▁" (which only normalization creates) no text reaching the
// merges contains it.
bool formable(const Vocab& v, int32_t id) {
  const std::string& t = v.text(id);
  if (t.find(' ') != std::string::npos) return false;
  return v.type(id) != TokenType::UserDefined || t.find(kSpace) != std::string::npos;
}

struct Merge {
  int32_t merged, left, right;
};

std::vector<Merge> spm_merges(const Vocab& v) {
  const TokenizerSpec& spec = v.spec;
  std::vector<Merge> merges;
  std::map<float, int32_t> result_by_score;  // one formable merge result per score
  for (int32_t id = 0; id < static_cast<int32_t>(spec.tokens.size()); ++id) {
    const std::string_view t = v.text(id);
    if (std::isnan(spec.scores[id])) {
      refuse(v.source, describe(spec, id) + " has a NaN score");
    }
    bool produced = false;
    for (size_t k = unicode::char_len(t, 0); k < t.size(); k += unicode::char_len(t, k)) {
      const std::string_view left = t.substr(0, k), right = t.substr(k);
      const int32_t l = v.find(left), r = v.find(right);
      if (l >= 0 && r >= 0) {
        if (v.type(l) == TokenType::Byte || v.type(r) == TokenType::Byte) {
          refuse(v.source, describe(spec, id) + " starts or ends with a byte token's text: BPE would "
                                                "merge fallback bytes into it, SentencePiece does not");
        }
        merges.push_back({id, l, r});
        produced = true;
        continue;
      }
      // SentencePiece merges any adjacent symbols whose text is a token, including a character
      // that is not one; BPE with byte_fallback has made that character bytes before merging.
      const bool left_ok = l >= 0 || unicode::char_len(left, 0) == left.size();
      const bool right_ok = r >= 0 || unicode::char_len(right, 0) == right.size();
      if (left_ok && right_ok && formable(v, id)) {
        const std::string_view lone = l < 0 ? left : right;
        refuse(v.source, describe(spec, id) + " joins the character " + ojson(std::string(lone)).dump() +
                             ", which is not a token");
      }
    }
    if (produced && formable(v, id)) {
      auto [it, fresh] = result_by_score.emplace(spec.scores[id], id);
      if (!fresh) {
        refuse(v.source, describe(spec, id) + " and " + describe(spec, it->second) +
                             " share the score " + std::to_string(spec.scores[id]) +
                             ": SentencePiece breaks the tie by position, BPE by a fixed rank");
      }
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [&](const Merge& a, const Merge& b) {
    const float sa = spec.scores[a.merged], sb = spec.scores[b.merged];
    if (sa != sb) return sa > sb;
    return std::tie(a.merged, a.left, a.right) < std::tie(b.merged, b.left, b.right);
  });
  return merges;
}

void sentencepiece(const Vocab& v, ojson& doc) {
  const TokenizerSpec& spec = v.spec;
  int bytes = 0;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    bytes += v.find(name) >= 0;
  }
  if (bytes != 0 && bytes != 256) {
    refuse(v.source, "byte fallback tokens <0x00>..<0xFF>: " + std::to_string(bytes) +
                         " of 256 present (Hugging Face falls back for whole characters only)");
  }
  ojson merges = ojson::array();
  for (const Merge& m : spm_merges(v)) merges.push_back({v.text(m.left), v.text(m.right)});

  const ojson replace_space = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}};
  doc["normalizer"] = spec.add_space_prefix
                          ? ojson{{"type", "Sequence"},
                                  {"normalizers", {{{"type", "Prepend"}, {"prepend", kSpace}}, replace_space}}}
                          : replace_space;
  doc["pre_tokenizer"] = nullptr;
  doc["post_processor"] = template_processing(spec);
  ojson decoders = {{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}}};
  if (spec.add_space_prefix) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  doc["decoder"] = {{"type", "Sequence"}, {"decoders", decoders}};
  const ojson unk = spec.unk_id >= 0 ? ojson(spec.tokens[spec.unk_id]) : ojson(nullptr);
  doc["model"] = bpe_model(v, std::move(merges), unk, /*byte_fallback=*/bytes == 256);
}

}  // namespace

HfTokenizerFiles hf_tokenizer_files(const TokenizerSpec& spec_in, const std::string& source,
                                    int64_t max_context) {
  // The Tokenizer's own validation (sizes, ids in range, merges naming tokens, regexes that
  // compile), and its spec with defaults filled in (scores, token types).
  const Tokenizer validated(spec_in, source);
  const TokenizerSpec& spec = validated.spec();
  const Vocab v = check_vocab(spec, source);

  ojson doc = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}};
  ojson added, added_decoder;
  added_tokens(v, added, added_decoder);
  doc["added_tokens"] = std::move(added);
  if (spec.kind == TokenizerSpec::Kind::ByteLevelBpe) {
    byte_level(v, doc);
  } else {
    sentencepiece(v, doc);
  }

  auto token_or_null = [&](int32_t id) { return id >= 0 ? ojson(spec.tokens[id]) : ojson(nullptr); };
  ojson config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                  {"add_bos_token", spec.add_bos},
                  {"add_eos_token", spec.add_eos},
                  {"bos_token", token_or_null(spec.bos_id)},
                  {"eos_token", token_or_null(spec.eos_id)},
                  {"unk_token", token_or_null(spec.unk_id)},
                  {"pad_token", token_or_null(spec.pad_id)}};
  if (max_context > 0) config["model_max_length"] = max_context;
  config["clean_up_tokenization_spaces"] = false;
  if (!spec.chat_template.empty()) config["chat_template"] = spec.chat_template;
  config["added_tokens_decoder"] = std::move(added_decoder);

  ojson generation = ojson::object();
  for (auto [id, key] : {std::pair{spec.bos_id, "bos_token_id"}, std::pair{spec.eos_id, "eos_token_id"},
                         std::pair{spec.pad_id, "pad_token_id"}}) {
    if (id >= 0) generation[key] = id;
  }
  return {doc.dump(2) + "\n", config.dump(2) + "\n", generation.dump(2) + "\n"};
}

void write_hf_tokenizer_files(const TokenizerSpec& spec, const std::string& source,
                              int64_t max_context,
                              const std::function<std::string(const std::string& name)>& path_of) {
  const HfTokenizerFiles files = hf_tokenizer_files(spec, source, max_context);
  write_file_atomically(path_of("tokenizer.json"), files.tokenizer_json);
  write_file_atomically(path_of("tokenizer_config.json"), files.tokenizer_config_json);
  write_file_atomically(path_of("generation_config.json"), files.generation_config_json);
}

void write_hf_tokenizer_dir(const TokenizerSpec& spec, const std::string& source, int64_t max_context,
                            const std::string& dir, const OutputRules& rules) {
  check_output_dir(dir, rules);
  const HfTokenizerFiles files = hf_tokenizer_files(spec, source, max_context);  // before any write
  StagedDirectory staged(dir, "hf-tokenizer");
  try {
    write_file_atomically(staged.path("tokenizer.json"), files.tokenizer_json);
    write_file_atomically(staged.path("tokenizer_config.json"), files.tokenizer_config_json);
    write_file_atomically(staged.path("generation_config.json"), files.generation_config_json);
  } catch (const Error& e) {
    throw Error(staged.final_names(e.what()));
  }
  staged.commit(rules);
}

}  // namespace mpq
