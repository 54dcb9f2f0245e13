#include "calib/calibration.h"
#include "io/read_file.h"
#include "util/memory.h"

#include <cblas.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>

#include "mpq/error.h"
#include "mpq/tokenizer.h"

namespace mpq {

nlohmann::json calibration_json(const CalibrationOptions& options) {
  return {{"files", options.text_paths}, {"samples", options.n_samples}, {"len", options.seq_len},
          {"seed", options.seed}};
}

uint64_t calibration_memory_bytes(const ModelConfig& c, const CalibrationOptions& o, std::string* parts) {
  const uint64_t tokens = static_cast<uint64_t>(std::max(0, o.n_samples)) * static_cast<uint64_t>(std::max(0, o.seq_len));
  const uint64_t micro = static_cast<uint64_t>(std::min(std::max(1, o.micro_batch), std::max(1, o.n_samples)));
  const uint64_t len = static_cast<uint64_t>(std::max(0, o.seq_len));
  const uint64_t hidden = tokens * c.dim * 4;
  const uint64_t rope = tokens * c.head_dim * 4;              // cos and sin, head_dim/2 each
  const uint64_t kv = tokens * c.kv_dim() * 2 * 4;            // one layer's keys and values
  const uint64_t ids = tokens * 4;
  const uint64_t experts = c.is_moe() ? static_cast<uint64_t>(c.n_experts) : 1;
  const uint64_t stats = 8 * (static_cast<uint64_t>(c.dim) * c.dim * (1 + experts) +
                              static_cast<uint64_t>(c.q_dim()) * c.q_dim() +
                              static_cast<uint64_t>(c.ffn_dim) * c.ffn_dim * experts);
  const uint64_t batch = micro * len * 4 *
                             (2 * static_cast<uint64_t>(c.dim) + c.q_dim() + 2 * c.kv_dim() + 3 * static_cast<uint64_t>(c.ffn_dim)) +
                         micro * static_cast<uint64_t>(c.n_heads) * len * len * 4;
  if (parts != nullptr) {
    *parts = std::to_string(o.n_samples) + " x " + std::to_string(o.seq_len) + " tokens: hidden states " +
             human_bytes(hidden) + ", keys/values " + human_bytes(kv) + ", statistics " + human_bytes(stats) +
             ", activations " + human_bytes(batch);
  }
  return hidden + rope + kv + ids + stats + batch;
}

CalibrationSet sample_calibration(const Model& model, const CalibrationOptions& options,
                                  const CalibrationSet* avoid) {
  if (model.tokenizer == nullptr) fail(model.source_path, "calibration needs the model's tokenizer");
  if (options.text_paths.empty()) fail("calibration", "no calibration text given");
  if (options.n_samples < 1 || options.seq_len < 2) {
    fail("calibration", "need at least 1 sample of at least 2 tokens");
  }
  std::string parts;
  const uint64_t need = calibration_memory_bytes(model.config, options, &parts);
  check_memory_fits(need, "calibration", parts, "use fewer --calib-samples or a shorter --calib-len");
  const TokenizerSpec& spec = model.tokenizer->spec();
  const bool bos = spec.add_bos && spec.bos_id >= 0;
  const int64_t window = options.seq_len - (bos ? 1 : 0);  // text tokens per sample
  std::vector<std::vector<int32_t>> streams;
  std::vector<int64_t> starts;  // cumulative count of window start offsets per file
  int64_t total_starts = 0;
  for (const std::string& path : options.text_paths) {
    streams.push_back(model.tokenizer->encode(read_file(path, "calibration text file"), /*add_special=*/false));
    total_starts += std::max<int64_t>(0, static_cast<int64_t>(streams.back().size()) - window + 1);
    starts.push_back(total_starts);
  }
  if (total_starts == 0) {
    fail(options.text_paths.front(), "calibration texts are shorter than one sequence of " +
                                         std::to_string(options.seq_len) + " tokens");
  }
  CalibrationSet set;
  set.options = options;
  // Our own offset draw (not std::uniform_int_distribution) so that the same seed gives the same
  // samples with every standard library.
  std::mt19937_64 rng(options.seed);
  if (avoid != nullptr) {
    check(avoid->options.text_paths == options.text_paths, "calibration",
          "a held-out set must be drawn from the same files as the set it avoids");
  }
  auto overlaps = [&](size_t file, int64_t offset) {
    if (avoid == nullptr) return false;
    for (const CalibrationWindow& w : avoid->windows) {
      if (static_cast<size_t>(w.file) == file && offset < w.offset + w.length && w.offset < offset + window) {
        return true;
      }
    }
    return false;
  };
  // Rejection sampling; a bounded number of draws so that texts too short to hold the held-out
  // windows end in an error, not a hang.
  int64_t attempts_left = int64_t{1000} * options.n_samples;
  for (int s = 0; s < options.n_samples; ++s) {
    int64_t draw = 0;
    size_t file = 0;
    int64_t offset = 0;
    do {
      if (attempts_left-- <= 0) {
        fail(options.text_paths.front(), "calibration texts too short to draw " + std::to_string(options.n_samples) +
                                             " held-out sequences of " + std::to_string(options.seq_len) +
                                             " tokens that avoid the calibration windows");
      }
      draw = static_cast<int64_t>(rng() % static_cast<uint64_t>(total_starts));
      file = std::upper_bound(starts.begin(), starts.end(), draw) - starts.begin();
      offset = draw - (file == 0 ? 0 : starts[file - 1]);
    } while (overlaps(file, offset));
    set.windows.push_back({static_cast<int>(file), offset, window});
    std::vector<int32_t> seq;
    seq.reserve(options.seq_len);
    if (bos) seq.push_back(spec.bos_id);
    seq.insert(seq.end(), streams[file].begin() + offset, streams[file].begin() + offset + window);
    set.sequences.push_back(std::move(seq));
  }
  return set;
}

void InputStats::accumulate(const float* x, int64_t n, int64_t width) {
  if (xtx.empty()) {
    in_features = width;
    xtx.assign(width * width, 0.0);
  }
  // XᵀX of this block in fp32 by BLAS (upper triangle), then added in double so that long
  // calibration runs do not lose small contributions.
  std::vector<float> block(width * width, 0.f);
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, width, n, 1.f, x, width, 0.f, block.data(), width);
  for (int64_t i = 0; i < width; ++i) {
    for (int64_t j = i; j < width; ++j) {
      const double v = block[i * width + j];
      xtx[i * width + j] += v;
      if (j != i) xtx[j * width + i] += v;
    }
  }
  n_rows += n;
}

std::vector<float> InputStats::mean_square() const {
  std::vector<float> out(in_features, 0.f);
  if (n_rows == 0) return out;
  for (int64_t i = 0; i < in_features; ++i) out[i] = static_cast<float>(xtx[i * in_features + i] / n_rows);
  return out;
}

const InputStats& LayerStats::of(LinearKind kind) const {
  switch (kind) {
    case LinearKind::Q:
    case LinearKind::K:
    case LinearKind::V:
      return qkv;
    case LinearKind::O:
      return o;
    case LinearKind::Gate:
    case LinearKind::Up:
      return mlp;
    default:
      return down;
  }
}

namespace {

// Accumulates each distinct Linear input once (q/k/v and gate/up share theirs).
struct StatsHook final : ForwardHooks {
  LayerStats* stats = nullptr;
  void on_linear_input(int, LinearKind kind, const float* x, int64_t n, int64_t width) override {
    switch (kind) {
      case LinearKind::Q: stats->qkv.accumulate(x, n, width); break;
      case LinearKind::O: stats->o.accumulate(x, n, width); break;
      case LinearKind::Gate: stats->mlp.accumulate(x, n, width); break;
      case LinearKind::Down: stats->down.accumulate(x, n, width); break;
      default: break;  // K, V, Up: same input as Q or Gate
    }
  }
  void on_routing(int, const int64_t* counts, int n_experts) override {
    stats->experts.resize(n_experts);
    for (int e = 0; e < n_experts; ++e) stats->experts[e].tokens += counts[e];
  }
  void on_expert_input(int, int expert, LinearKind kind, const float* x, int64_t n, int64_t width) override {
    ExpertStats& s = stats->experts.at(expert);
    (kind == LinearKind::Down ? s.down : s.mlp).accumulate(x, n, width);
  }
};

}  // namespace

void run_sequential_calibration(Model& model, const CalibrationSet& set,
                                const std::function<void(int, const LayerStats&)>& process,
                                const std::function<void(int, int)>& progress) {
  const int dim = model.config.dim;
  const int n_seq = static_cast<int>(set.sequences.size());
  const int micro = std::max(1, set.options.micro_batch);
  // Hidden states of every sample: [n_seq, seq_len, dim], the only activations kept.
  std::vector<std::vector<float>> hidden(n_seq);
  std::vector<BatchPlan> plans;       // one per micro-batch (positions from 0)
  std::vector<std::vector<KVCache>> caches;  // per micro-batch, one cache per sequence
  for (int b = 0; b < n_seq; b += micro) {
    const int count = std::min(micro, n_seq - b);
    caches.emplace_back(count);
    std::vector<SequenceInput> inputs;
    for (int i = 0; i < count; ++i) {
      KVCache& cache = caches.back()[i];
      cache.capacity = static_cast<int>(set.sequences[b + i].size());
      // Layer buffers stay empty: run_layer allocates the one it uses, and we free it after.
      cache.k.resize(model.config.n_layers);
      cache.v.resize(model.config.n_layers);
      inputs.push_back({set.sequences[b + i].data(), cache.capacity, &cache});
    }
    plans.push_back(model.plan_batch(inputs));
    std::vector<float> x = model.embed(plans.back());
    int64_t offset = 0;
    for (int i = 0; i < count; ++i) {
      const int64_t len = static_cast<int64_t>(set.sequences[b + i].size()) * dim;
      hidden[b + i].assign(x.begin() + offset, x.begin() + offset + len);
      offset += len;
    }
  }
  auto gather = [&](int batch_index, int first) {
    std::vector<float> x;
    for (size_t i = 0; i < caches[batch_index].size(); ++i) {
      x.insert(x.end(), hidden[first + i].begin(), hidden[first + i].end());
    }
    return x;
  };
  for (int l = 0; l < model.config.n_layers; ++l) {
    LayerStats stats;
    StatsHook hook;
    hook.stats = &stats;
    // Pass 1: record the inputs of this layer's Linear layers (outputs are thrown away).
    for (size_t b = 0; b < plans.size(); ++b) {
      std::vector<float> x = gather(static_cast<int>(b), static_cast<int>(b) * micro);
      model.run_layer(l, plans[b], x.data(), &hook);
    }
    process(l, stats);
    // Pass 2: this layer's outputs with the weights `process` left, as the next layer's input.
    for (size_t b = 0; b < plans.size(); ++b) {
      const int first = static_cast<int>(b) * micro;
      std::vector<float> x = gather(static_cast<int>(b), first);
      model.run_layer(l, plans[b], x.data(), nullptr);
      int64_t offset = 0;
      for (size_t i = 0; i < caches[b].size(); ++i) {
        std::copy_n(x.begin() + offset, hidden[first + i].size(), hidden[first + i].begin());
        offset += static_cast<int64_t>(hidden[first + i].size());
        caches[b][i].k[l] = {};  // free this layer's keys/values
        caches[b][i].v[l] = {};
      }
    }
    if (progress) progress(l, model.config.n_layers);
  }
}

}  // namespace mpq
