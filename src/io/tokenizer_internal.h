// Internals shared by the tokenizer sources: the token lookup map, the BPE merge loop that both
// algorithms use, the two encoders and the pre-tokenizer regex table.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mpq/tokenizer.h"

namespace mpq::tok {

// Token text -> id, looked up with string_views (no temporary strings in the merge loops).
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// One symbol of a word being merged: a byte range of the word, linked to its neighbours.
struct Symbol {
  int32_t prev;
  int32_t next;
  uint32_t start;
  uint32_t len;  // 0 once merged into its left neighbour
  int32_t id;    // token id, -1 when the range is not a token (SentencePiece unknown char)
};

// Repeatedly merges the adjacent pair with the highest priority (ties: leftmost) until no pair
// qualifies. `pair(left, right, priority, merged_id)` says whether two adjacent symbols may merge.
// A heap of candidates keeps this O(n log n), which matters for SentencePiece: it merges the
// whole text at once, not word by word. A candidate is stale when either side died or grew since
// it was pushed; symbols only grow, so comparing the combined length detects that.
template <class PairFn>
void merge_symbols(std::vector<Symbol>& syms, PairFn&& pair) {
  struct Candidate {
    double priority;
    int32_t left;
    int32_t right;
    uint32_t len;
    int32_t id;
  };
  auto lower = [](const Candidate& a, const Candidate& b) {
    return a.priority != b.priority ? a.priority < b.priority : a.left > b.left;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(lower)> queue(lower);
  auto push = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    double priority = 0;
    int32_t id = -1;
    if (pair(syms[l], syms[r], priority, id)) {
      queue.push({priority, l, r, syms[l].len + syms[r].len, id});
    }
  };
  for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) push(i - 1, i);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = syms[c.left];
    Symbol& right = syms[c.right];
    if (left.len == 0 || right.len == 0 || left.next != c.right || left.len + right.len != c.len) {
      continue;
    }
    left.len += right.len;
    left.id = c.id;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = c.left;
    push(left.prev, c.left);
    push(c.left, left.next);
  }
}

// SentencePiece-style BPE with byte fallback (llama.cpp "llama" vocab, llama2.c).
class SpmEncoder {
 public:
  SpmEncoder(const TokenizerSpec& spec, const TokenMap& token_to_id);
  // `fragment_start`: the text follows the start of input or a special token, where
  // SentencePiece adds its dummy-prefix space.
  void encode(std::string_view text, bool fragment_start, std::vector<int32_t>& out) const;

 private:
  const TokenizerSpec& spec_;
  const TokenMap& token_to_id_;
  int32_t byte_token_[256];
};

// Splits text with a sequence of regexes (PCRE2, UTF + Unicode properties): each regex splits
// every piece left by the previous one, keeping the matches and the gaps between them.
class RegexSplitter {
 public:
  RegexSplitter(const std::vector<std::string>& patterns, const std::string& source);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  std::vector<void*> codes_;  // pcre2_code_8*
  std::string source_;        // the tokenizer file, for errors
};

// GPT-2 style byte-level BPE: pre-tokenize, map bytes, merge by rank. Results are cached per
// pre-tokenized word (natural text repeats words a lot).
class BpeEncoder {
 public:
  BpeEncoder(const TokenizerSpec& spec, const TokenMap& token_to_id, const std::string& source);
  void encode(std::string_view text, std::vector<int32_t>& out) const;

 private:
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  const TokenizerSpec& spec_;
  const TokenMap& token_to_id_;
  RegexSplitter splitter_;
  int32_t byte_token_[256];
  // (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

// Pre-tokenizer regexes for a GGUF `tokenizer.ggml.pre` name; false when the name is unknown.
// `ignore_merges` is set for the names whose models keep whole-word tokens (Llama 3).
bool pre_regexes_for(const std::string& name, std::vector<std::string>& regexes,
                     bool& ignore_merges);
// The GPT-2 pattern (HF ByteLevel's use_regex).
const std::string& gpt2_regex();

}  // namespace mpq::tok
