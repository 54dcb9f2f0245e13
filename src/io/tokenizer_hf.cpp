// TokenizerSpec from a Hugging Face tokenizer.json (+ tokenizer_config.json beside it).
//
// Supported: model.type "BPE" with vocab and merges ("a b" strings or [a, b] pairs), either
//   - byte-level: pre_tokenizer ByteLevel / Split(regex, Isolated) / Digits / Sequence of them
//     (GPT-2, Llama 3, Qwen 2, SmolLM), or
//   - SentencePiece-style: byte_fallback, normalizer Replace(" " -> "▁") + Prepend("▁"), or a
//     Metaspace pre-tokenizer (Llama 2, TinyLlama).
// Everything else is refused with the file and the part named: silently ignoring a normalizer or
// pre-tokenizer step would produce plausible but wrong token ids. Token types: added tokens are
// control (special) or user-defined (not special); the model's unk_token, when it is not an added
// token, unknown. The files mpq writes (tokenizer_hf_writer.cpp) read back to the same spec.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "io/tokenizer_internal.h"
#include "io/read_file.h"
#include "mpq/error.h"
#include "mpq/tokenizer.h"
#include "util/json_number.h"

namespace mpq {

namespace {

using nlohmann::json;
constexpr const char* kSpace = "\xE2\x96\x81";  // U+2581

struct Pre {
  std::vector<std::string> regexes;
  bool byte_level = false;
  bool metaspace = false;
  bool metaspace_prefix = false;
};

// PCRE2 pattern matching `s` literally.
std::string quote_literal(const std::string& s) {
  std::string out;
  for (char c : s) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       static_cast<unsigned char>(c) >= 0x80;
    if (!plain) out += '\\';
    out += c;
  }
  return out;
}

void parse_pre(const json& node, Pre& pre, const std::string& path) {
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    for (const json& p : node.at("pretokenizers")) parse_pre(p, pre, path);
  } else if (type == "ByteLevel") {
    if (node.value("add_prefix_space", false)) {
      fail(path, "unsupported pre_tokenizer ByteLevel with add_prefix_space=true");
    }
    pre.byte_level = true;
    if (node.value("use_regex", true)) pre.regexes.push_back(tok::gpt2_regex());
  } else if (type == "Split") {
    const json& pattern = node.at("pattern");
    std::string regex;
    if (pattern.contains("Regex")) {
      regex = pattern.at("Regex").get<std::string>();
    } else if (pattern.contains("String")) {
      regex = quote_literal(pattern.at("String").get<std::string>());
    } else {
      fail(path, "Split pre_tokenizer has neither a Regex nor a String pattern");
    }
    const std::string behavior = node.value("behavior", "");
    if (behavior != "Isolated" || node.value("invert", false)) {
      fail(path, "unsupported Split pre_tokenizer behavior '" + behavior +
                     "' (only Isolated, not inverted)");
    }
    pre.regexes.push_back(regex);
  } else if (type == "Digits") {
    pre.regexes.push_back(node.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
  } else if (type == "Metaspace") {
    if (node.value("replacement", std::string(kSpace)) != kSpace) {
      fail(path, "unsupported Metaspace replacement (only U+2581)");
    }
    if (node.value("split", false)) fail(path, "unsupported Metaspace pre_tokenizer with split=true");
    pre.metaspace = true;
    if (node.contains("prepend_scheme")) {
      pre.metaspace_prefix = node.at("prepend_scheme").get<std::string>() != "never";
    } else {
      pre.metaspace_prefix = node.value("add_prefix_space", true);
    }
  } else {
    fail(path, "unsupported pre_tokenizer type '" + type + "'");
  }
}

struct Norm {
  bool escape_spaces = false;  // Replace " " -> "▁"
  bool prepend_space = false;  // Prepend "▁"
};

void parse_normalizer(const json& node, Norm& norm, const std::string& path) {
  if (node.is_null()) return;
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    for (const json& n : node.at("normalizers")) parse_normalizer(n, norm, path);
  } else if (type == "Prepend" && node.value("prepend", "") == kSpace) {
    norm.prepend_space = true;
  } else if (type == "Replace" && node.at("pattern").value("String", "") == " " &&
             node.value("content", "") == kSpace) {
    norm.escape_spaces = true;
  } else if (type == "NFC") {
    // Qwen 2 declares NFC. Implementing it is out of scope; text that is already NFC (nearly
    // all real text) tokenizes identically without it.
    std::fprintf(stderr, "mpq: warning: %s: NFC normalizer not applied (text assumed NFC)\n",
                 path.c_str());
  } else {
    fail(path, "unsupported normalizer type '" + type + "'");
  }
}

// Token text named by tokenizer_config.json: a string, {"content": ...} or null.
std::string config_token(const json& config, const char* key) {
  if (!config.contains(key) || config.at(key).is_null()) return "";
  const json& v = config.at(key);
  return v.is_string() ? v.get<std::string>() : v.value("content", "");
}

// BOS/EOS that the post-processor's TemplateProcessing puts around a single sequence (Llama 3
// states add_bos this way rather than in tokenizer_config.json).
void template_specials(const json& node, std::string& bos, std::string& eos) {
  if (!node.is_object()) return;
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    for (const json& p : node.value("processors", json::array())) template_specials(p, bos, eos);
  } else if (type == "TemplateProcessing") {
    bool seen_sequence = false;
    for (const json& item : node.value("single", json::array())) {
      if (item.contains("Sequence")) {
        seen_sequence = true;
      } else if (item.contains("SpecialToken")) {
        (seen_sequence ? eos : bos) = item.at("SpecialToken").value("id", "");
      }
    }
  }
}

// tokenizer_config.json's chat_template: a string, or (transformers 4.4x) a list of
// {"name", "template"} of which the one named "default" is the template. mpq keeps one
// template; the other named ones (tool use, RAG) are reported as dropped.
std::string config_chat_template(const json& config, const std::string& path) {
  if (!config.contains("chat_template") || config.at("chat_template").is_null()) return "";
  const json& t = config.at("chat_template");
  if (t.is_string()) return t.get<std::string>();
  if (!t.is_array()) fail(path, "chat_template is neither a string nor a list of named templates");
  std::string chosen, dropped;
  for (const json& entry : t) {
    if (!entry.is_object() || !entry.contains("name") || !entry.at("name").is_string() ||
        !entry.contains("template") || !entry.at("template").is_string()) {
      fail(path, "chat_template list entry is not {\"name\": ..., \"template\": ...}");
    }
    const std::string name = entry.at("name").get<std::string>();
    if (name == "default") {
      chosen = entry.at("template").get<std::string>();
    } else {
      dropped += (dropped.empty() ? "" : ", ") + name;
    }
  }
  if (!dropped.empty()) {
    std::fprintf(stderr, "mpq: warning: %s: named chat templates not kept (only \"default\"): %s\n",
                 path.c_str(), dropped.c_str());
  }
  return chosen;
}

TokenizerSpec spec_from_json(const json& root, const json& config, const std::string& path) {
  TokenizerSpec spec;
  const json& model = root.at("model");
  const std::string model_type = model.value("type", "BPE");
  if (model_type != "BPE") {
    fail(path, "unsupported model type '" + model_type + "' (only BPE)");
  }
  if (!model.contains("vocab") || !model.at("vocab").is_object()) fail(path, "model.vocab missing");
  if (!model.contains("merges") || !model.at("merges").is_array()) fail(path, "model.merges missing");

  // Vocabulary and added tokens, by id.
  std::map<int64_t, std::pair<std::string, TokenType>> by_id;
  // Ids are JSON integers below INT32_MAX (a Tokenizer holds at most that many tokens).
  constexpr int64_t kMaxId = INT32_MAX - 1;
  for (const auto& [text, id] : model.at("vocab").items()) {
    // The token quoted as JSON: control characters escaped, the message stays on one line.
    const std::string token = json(text).dump(-1, ' ', false, json::error_handler_t::replace);
    by_id[json_integer(id, 0, kMaxId, path, "model.vocab id of " + token)] = {text, TokenType::Normal};
  }
  std::set<int64_t> added_ids;
  for (const json& added : root.value("added_tokens", json::array())) {
    const int64_t id = json_integer(added.at("id"), 0, kMaxId, path, "added_tokens id");
    by_id[id] = {added.at("content").get<std::string>(),
                 added.value("special", false) ? TokenType::Control : TokenType::UserDefined};
    added_ids.insert(id);
  }
  if (by_id.empty()) fail(path, "model.vocab is empty");
  if (by_id.begin()->first != 0 || by_id.rbegin()->first != static_cast<int64_t>(by_id.size()) - 1) {
    fail(path, "token ids are not 0.." + std::to_string(by_id.size() - 1) + " without gaps");
  }
  tok::TokenMap ids;
  for (auto& [id, entry] : by_id) {
    ids.emplace(entry.first, static_cast<int32_t>(id));
    spec.tokens.push_back(entry.first);
    spec.token_types.push_back(entry.second);
  }
  auto id_of = [&](const std::string& text) {
    auto it = ids.find(text);
    return it == ids.end() ? -1 : it->second;
  };

  // Merges as (left, right). The "a b" form splits at the first space after the first character
  // (a token can start with a space); the [a, b] form also holds tokens with spaces inside
  // (Gemma's whitespace tokens).
  std::vector<std::pair<std::string, std::string>> merges;
  for (const json& m : model.at("merges")) {
    const std::string what = "merge " + std::to_string(merges.size());
    if (m.is_string()) {
      const std::string text = m.get<std::string>();
      const size_t sp = text.find(' ', 1);
      if (sp == std::string::npos) fail(path, what + " '" + text + "' is not 'left right'");
      merges.emplace_back(text.substr(0, sp), text.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2) {
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      fail(path, what + " is neither \"a b\" nor [a, b]");
    }
  }
  if (model.contains("unk_token") && model.at("unk_token").is_string()) {
    spec.unk_id = id_of(model.at("unk_token").get<std::string>());
  }
  spec.ignore_merges = model.value("ignore_merges", false);

  Pre pre;
  if (root.contains("pre_tokenizer") && !root.at("pre_tokenizer").is_null()) {
    parse_pre(root.at("pre_tokenizer"), pre, path);
  }
  Norm norm;
  if (root.contains("normalizer")) parse_normalizer(root.at("normalizer"), norm, path);

  const bool spm = model.value("byte_fallback", false) || norm.escape_spaces || pre.metaspace;
  if (spm) {
    if (pre.byte_level || !pre.regexes.empty()) {
      fail(path, "unsupported mix of SentencePiece-style BPE and a splitting pre_tokenizer");
    }
    spec.kind = TokenizerSpec::Kind::SentencePiece;
    spec.add_space_prefix = norm.prepend_space || pre.metaspace_prefix;
    // SentencePiece merges by token score; HF lists merges by rank instead. Its converter
    // derives those ranks from the scores, so score = -rank of the first merge producing a token
    // gives the same order. Tokens no merge produces are only ever single characters or added
    // tokens, whose score never decides a merge; they get the lowest score.
    spec.scores.assign(spec.tokens.size(), -1e30f);
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const auto& [left, right] = merges[rank];
      const std::string what = "merge " + std::to_string(rank) + " '" + left + " " + right + "'";
      for (const std::string& t : {left, right, left + right}) {
        if (id_of(t) < 0) fail(path, what + " names unknown token '" + t + "'");
      }
      float& score = spec.scores[id_of(left + right)];
      if (score == -1e30f) score = -static_cast<float>(rank);
    }
    for (size_t id = 0; id < spec.tokens.size(); ++id) {
      const std::string& t = spec.tokens[id];
      if (spec.token_types[id] == TokenType::Normal && t.size() == 6 && t.starts_with("<0x") &&
          t[5] == '>') {
        spec.token_types[id] = TokenType::Byte;
      }
    }
    spec.pre_name = "tokenizer.json (SentencePiece BPE)";
  } else if (pre.byte_level) {
    spec.kind = TokenizerSpec::Kind::ByteLevelBpe;
    // TokenizerSpec keeps byte-level merges as "left right"; byte-level tokens hold no plain
    // space (it is mapped to U+0120), so the first space after the first character splits them.
    for (const auto& [left, right] : merges) {
      if (right.find(' ') != std::string::npos || left.find(' ', 1) != std::string::npos) {
        fail(path, "merge " + std::to_string(spec.merges.size()) + " ['" + left + "', '" + right +
                       "'] has a space inside a byte-level token");
      }
      spec.merges.push_back(left + " " + right);
    }
    spec.add_space_prefix = false;
    spec.pre_regexes = pre.regexes;
    spec.pre_name = "tokenizer.json (byte-level BPE)";
  } else {
    fail(path, "BPE model is neither byte-level (ByteLevel pre_tokenizer) nor SentencePiece-style "
               "(byte_fallback / Metaspace)");
  }
  // The model's unk_token is the unknown token, unless it is also an added token: then it keeps
  // the added token's type (SmolLM2's <|endoftext|> is a control token that byte-level BPE also
  // uses for bytes it has no token for).
  if (spec.unk_id >= 0 && !added_ids.count(spec.unk_id)) spec.token_types[spec.unk_id] = TokenType::Unknown;

  // Special tokens and add_bos/add_eos: tokenizer_config.json first, then the post-processor,
  // then the defaults of HF's LlamaTokenizer (BOS only) / GPT-2 (nothing).
  std::string bos = config_token(config, "bos_token"), eos = config_token(config, "eos_token");
  std::string tpl_bos, tpl_eos;
  if (root.contains("post_processor")) template_specials(root.at("post_processor"), tpl_bos, tpl_eos);
  if (bos.empty()) bos = !tpl_bos.empty() ? tpl_bos : (spm && id_of("<s>") >= 0 ? "<s>" : "");
  if (eos.empty()) eos = !tpl_eos.empty() ? tpl_eos : (spm && id_of("</s>") >= 0 ? "</s>" : "");
  for (auto [text, id, what] : {std::tuple{bos, &spec.bos_id, "bos_token"},
                                std::tuple{eos, &spec.eos_id, "eos_token"},
                                std::tuple{config_token(config, "pad_token"), &spec.pad_id, "pad_token"}}) {
    if (text.empty()) continue;
    *id = id_of(text);
    if (*id < 0) fail(path, std::string(what) + " '" + text + "' is not a token");
  }
  if (config.contains("unk_token") && spec.unk_id < 0) spec.unk_id = id_of(config_token(config, "unk_token"));
  if (config.contains("add_bos_token") && config.at("add_bos_token").is_boolean()) {
    spec.add_bos = config.at("add_bos_token").get<bool>();
  } else {
    spec.add_bos = !tpl_bos.empty() || (spm && spec.bos_id >= 0);
  }
  if (config.contains("add_eos_token") && config.at("add_eos_token").is_boolean()) {
    spec.add_eos = config.at("add_eos_token").get<bool>();
  } else {
    spec.add_eos = !tpl_eos.empty();
  }
  return spec;
}

}  // namespace

TokenizerSpec tokenizer_spec_from_hf_json(const std::string& path) {
  const json root = read_json_file(path);
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  const std::filesystem::path config_path = dir / "tokenizer_config.json";
  json config = json::object();
  if (std::filesystem::exists(config_path)) config = read_json_file(config_path.string());
  if (!config.is_object()) config = json::object();
  TokenizerSpec spec;
  try {
    if (!root.is_object() || !root.contains("model")) fail(path, "no \"model\" section");
    spec = spec_from_json(root, config, path);
  } catch (const json::exception& e) {
    fail(path, std::string("malformed tokenizer.json: ") + e.what());
  }
  const std::filesystem::path jinja = dir / "chat_template.jinja";
  if (std::filesystem::exists(jinja)) {
    spec.chat_template = read_file(jinja.string(), "chat template");
  } else {
    spec.chat_template = config_chat_template(config, config_path.string());
  }
  return spec;
}

}  // namespace mpq
