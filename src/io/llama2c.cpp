// llama2.c checkpoints in the legacy run.c format (karpathy/llama2.c, run.c memory_map_weights):
//
//   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
//     (vocab_size < 0: the classifier wcls is stored separately instead of shared with the
//      token embedding; its magnitude is the vocabulary size)
//   then float32 arrays, back to back, with head_size = dim / n_heads,
//   q_dim = n_heads * head_size (== dim), kv_dim = n_kv_heads * head_size:
//     token_embedding_table  [vocab, dim]
//     rms_att_weight         [layers, dim]
//     wq                     [layers, q_dim, dim]
//     wk                     [layers, kv_dim, dim]
//     wv                     [layers, kv_dim, dim]
//     wo                     [layers, dim, q_dim]
//     rms_ffn_weight         [layers, dim]
//     w1                     [layers, hidden, dim]
//     w2                     [layers, dim, hidden]
//     w3                     [layers, hidden, dim]
//     rms_final_weight       [dim]
//     freq_cis_real          [seq_len, head_size / 2]   (unused: RoPE is recomputed; skipped)
//     freq_cis_imag          [seq_len, head_size / 2]   (skipped)
//     wcls                   [vocab, dim]               (only when vocab_size < 0)
//
// Each weight matrix is used as matmul(out, x, W, n, d): out[i] = sum_j W[i * n + j] * x[j], so a
// layer's slice is row-major [out_features, in_features], exactly PyTorch's Linear layout. The
// records point straight into the mapping, one per layer, under Hugging Face names.
//
// llama2.c's RoPE rotates adjacent pairs (x[2j], x[2j+1]) of each head: q/k rows are in the
// interleaved (Meta) order, not HF's rotate-half order, hence qk_rope_interleaved = true.
// Per head h of size hd, HF row (h*hd + i*hd/2 + j) is llama2.c row (h*hd + 2*j + i), for
// i in {0, 1} and j < hd/2 (checked against the real stories260K files in the tests).
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "io/checkpoint.h"
#include "io/mapped_file.h"
#include "mpq/error.h"

namespace mpq {

namespace {

constexpr uint64_t kHeaderBytes = 7 * sizeof(int32_t);
// Newer llama2.c exports (export.py --version 1/2) start with this magic instead of `dim`.
constexpr int32_t kExportMagic = 0x616b3432;  // "ak42"

struct Llama2cHeader {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;

  std::string describe() const {
    return "dim=" + std::to_string(dim) + ", hidden_dim=" + std::to_string(hidden_dim) +
           ", n_layers=" + std::to_string(n_layers) + ", n_heads=" + std::to_string(n_heads) +
           ", n_kv_heads=" + std::to_string(n_kv_heads) +
           ", vocab_size=" + std::to_string(vocab_size) + ", seq_len=" + std::to_string(seq_len);
  }
};

// Appends records for consecutive fp32 arrays, starting after the header.
class Cursor {
 public:
  Cursor(Checkpoint& ck, const MappedFile& file) : ck_(ck), file_(file) {}

  // The next array of `shape`, recorded as `name`.
  void take(const std::string& name, std::vector<int64_t> shape) {
    TensorRecord r;
    r.name = name;
    r.dtype = DType::F32;
    r.shape = std::move(shape);
    r.nbytes = static_cast<uint64_t>(r.numel()) * sizeof(float);
    r.data = file_.data() + offset_;
    r.file = file_.path();
    offset_ += r.nbytes;
    ck_.tensors.emplace(name, std::move(r));
  }
  // `layers` consecutive arrays of `shape`, one per layer, named model.layers.<l>.<suffix>.
  void take_layers(int64_t layers, const std::string& suffix, const std::vector<int64_t>& shape) {
    for (int64_t l = 0; l < layers; ++l)
      take("model.layers." + std::to_string(l) + "." + suffix, shape);
  }
  void skip(uint64_t n_floats) { offset_ += n_floats * sizeof(float); }
  uint64_t offset() const { return offset_; }

 private:
  Checkpoint& ck_;
  const MappedFile& file_;
  uint64_t offset_ = kHeaderBytes;
};

}  // namespace

Checkpoint open_llama2c_checkpoint(const std::string& path) {
  auto file = std::make_shared<const MappedFile>(path);
  if (file->size() < kHeaderBytes)
    fail(path, "file is " + std::to_string(file->size()) +
                   " bytes, too short for a llama2.c header (28 bytes)");
  Llama2cHeader h{};
  std::memcpy(&h, file->data(), kHeaderBytes);
  if (h.dim == kExportMagic)
    fail(path,
         "llama2.c export format with magic 'ak42' (export.py --version 1/2) is not "
         "supported; export with the legacy format (version 0)");

  const std::string what = "llama2.c header (" + h.describe() + ")";
  if (h.dim <= 0 || h.hidden_dim <= 0 || h.n_layers <= 0 || h.n_heads <= 0 || h.n_kv_heads <= 0 ||
      h.vocab_size == 0 || h.vocab_size == INT32_MIN || h.seq_len <= 0)
    fail(path, "invalid " + what + ": dimensions must be positive (not a llama2.c checkpoint?)");
  if (h.dim % h.n_heads != 0) fail(path, "invalid " + what + ": n_heads does not divide dim");
  if (h.n_heads % h.n_kv_heads != 0)
    fail(path, "invalid " + what + ": n_kv_heads does not divide n_heads");
  const int64_t head_size = h.dim / h.n_heads;
  if (head_size % 2 != 0) fail(path, "invalid " + what + ": head size must be even for RoPE");

  const bool shared = h.vocab_size > 0;
  const int64_t vocab = shared ? h.vocab_size : -static_cast<int64_t>(h.vocab_size);
  const int64_t dim = h.dim, hidden = h.hidden_dim, layers = h.n_layers;
  const int64_t q_dim = h.n_heads * head_size, kv_dim = h.n_kv_heads * head_size;

  // Exact size in 128 bits: every factor is below 2^31, so no term can overflow.
  using u128 = unsigned __int128;
  const u128 floats = u128(vocab) * dim                      // token_embedding_table
                      + u128(layers) * dim * 2               // rms_att, rms_ffn
                      + u128(layers) * dim * q_dim * 2       // wq, wo
                      + u128(layers) * dim * kv_dim * 2      // wk, wv
                      + u128(layers) * dim * hidden * 3      // w1, w2, w3
                      + u128(dim)                            // rms_final
                      + u128(h.seq_len) * head_size / 2 * 2  // freq_cis_real, freq_cis_imag
                      + (shared ? 0 : u128(vocab) * dim);    // wcls
  const u128 expected = kHeaderBytes + floats * sizeof(float);
  if (expected != file->size())
    fail(path, "size " + std::to_string(file->size()) +
                   " does not match a llama2.c checkpoint with " + h.describe() + " (expected " +
                   (expected > UINT64_MAX ? std::string("more than 2^64")
                                          : std::to_string(uint64_t(expected))) +
                   " bytes)");

  Checkpoint ck;
  ck.path = path;
  ck.layout = "llama2c";
  ck.qk_rope_interleaved = true;

  Cursor c(ck, *file);
  c.take("model.embed_tokens.weight", {vocab, dim});
  c.take_layers(layers, "input_layernorm.weight", {dim});
  c.take_layers(layers, "self_attn.q_proj.weight", {q_dim, dim});
  c.take_layers(layers, "self_attn.k_proj.weight", {kv_dim, dim});
  c.take_layers(layers, "self_attn.v_proj.weight", {kv_dim, dim});
  c.take_layers(layers, "self_attn.o_proj.weight", {dim, q_dim});
  c.take_layers(layers, "post_attention_layernorm.weight", {dim});
  c.take_layers(layers, "mlp.gate_proj.weight", {hidden, dim});  // w1
  c.take_layers(layers, "mlp.down_proj.weight", {dim, hidden});  // w2
  c.take_layers(layers, "mlp.up_proj.weight", {hidden, dim});    // w3
  c.take("model.norm.weight", {dim});
  c.skip(static_cast<uint64_t>(h.seq_len) * head_size / 2 * 2);  // freq_cis_real, freq_cis_imag
  if (!shared) c.take("lm_head.weight", {vocab, dim});
  if (c.offset() != file->size()) fail(path, "internal error: llama2.c layout does not add up");

  ck.config = {
      {"architectures", nlohmann::json::array({"LlamaForCausalLM"})},
      {"model_type", "llama"},
      {"hidden_size", dim},
      {"intermediate_size", hidden},
      {"num_hidden_layers", layers},
      {"num_attention_heads", h.n_heads},
      {"num_key_value_heads", h.n_kv_heads},
      {"head_dim", head_size},
      {"vocab_size", vocab},
      {"max_position_embeddings", h.seq_len},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", shared},
  };
  ck.owners.push_back(file);
  return ck;
}

}  // namespace mpq
