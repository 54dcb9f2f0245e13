#include "calib/sensitivity_file.h"

#include <array>
#include <cmath>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "format/weight_format.h"
#include "io/output.h"
#include "mpq/error.h"

namespace fs = std::filesystem;

namespace mpq {
namespace {

// --- SHA-256 (FIPS 180-4) ----------------------------------------------------------------------

constexpr uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void sha256_block(uint32_t h[8], const uint8_t* p) {
  uint32_t w[64];
  for (int i = 0; i < 16; ++i) {
    w[i] = (uint32_t{p[4 * i]} << 24) | (uint32_t{p[4 * i + 1]} << 16) | (uint32_t{p[4 * i + 2]} << 8) |
           uint32_t{p[4 * i + 3]};
  }
  for (int i = 16; i < 64; ++i) {
    const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (int i = 0; i < 64; ++i) {
    const uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
    const uint32_t ch = (e & f) ^ (~e & g);
    const uint32_t t1 = hh + S1 + ch + kK[i] + w[i];
    const uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
    const uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
    const uint32_t t2 = S0 + maj;
    hh = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

std::string read_prefix(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open for the model identity hash");
  std::string data(max_bytes, '\0');
  in.read(data.data(), static_cast<std::streamsize>(max_bytes));
  data.resize(static_cast<size_t>(in.gcount()));
  return data;
}

void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_u64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_f32(std::string& s, float f) {
  uint32_t v;
  std::memcpy(&v, &f, 4);
  put_u32(s, v);
}

}  // namespace

std::string sha256_hex(const void* data, size_t size) {
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const auto* p = static_cast<const uint8_t*>(data);
  size_t full = size / 64;
  for (size_t i = 0; i < full; ++i) sha256_block(h, p + 64 * i);
  uint8_t tail[128] = {0};
  const size_t rest = size - full * 64;
  if (rest > 0) std::memcpy(tail, p + full * 64, rest);
  tail[rest] = 0x80;
  const size_t tail_len = rest + 1 + 8 <= 64 ? 64 : 128;
  const uint64_t bits = static_cast<uint64_t>(size) * 8;
  for (int i = 0; i < 8; ++i) tail[tail_len - 1 - i] = static_cast<uint8_t>(bits >> (8 * i));
  sha256_block(h, tail);
  if (tail_len == 128) sha256_block(h, tail + 64);
  char hex[65];
  for (int i = 0; i < 8; ++i) std::snprintf(hex + 8 * i, 9, "%08x", h[i]);
  return std::string(hex, 64);
}

nlohmann::json sensitivity_model_identity(const Model& model, const std::string& path) {
  std::string source, data;
  if (fs::is_directory(path)) {
    source = "config.json";
    data = read_prefix((fs::path(path) / "config.json").string(), size_t{1} << 30);
  } else {
    source = "first_mib";
    data = read_prefix(path, size_t{1} << 20);
  }
  return {{"path", path},
          {"identity_source", source},
          {"sha256", sha256_hex(data.data(), data.size())},
          {"parameter_count", model.parameter_count()},
          {"arch", model.config.arch},
          {"n_layers", model.config.n_layers}};
}

std::string sensitivity_sidecar_path(const std::string& json_path) {
  const std::string ext = ".json";
  if (json_path.size() > ext.size() && json_path.compare(json_path.size() - ext.size(), ext.size(), ext) == 0) {
    return json_path.substr(0, json_path.size() - ext.size()) + ".bin";
  }
  return json_path + ".bin";
}

std::string sensitivity_progress_path(const std::string& json_path) { return json_path + ".progress.json"; }

void check_sensitivity_output(const std::string& json_path, const OutputRules& rules) {
  const OutputRecognizer summary = json_with_format("mpq-sensitivity");
  check_output_file(json_path, rules, summary);
  const std::string bin = sensitivity_sidecar_path(json_path);
  // The sidecar is ours when the summary beside it (ours) names it.
  check_output_file(bin, rules, [&](const std::string&) {
    if (!summary(json_path)) return false;
    std::ifstream in(json_path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
    return j.is_object() && j.contains("sidecar") && j["sidecar"].is_object() &&
           j["sidecar"].value("file", std::string()) == fs::path(bin).filename().string();
  });
  check_output_file(sensitivity_progress_path(json_path), rules, [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
    return j.is_object() && j.contains("settings") && j.contains("state");
  });
}

nlohmann::json write_sensitivity_file(const SensitivityResult& result, const nlohmann::json& model_identity,
                                      const CalibrationOptions& calibration, const std::string& json_path) {
  using nlohmann::json;
  const std::string bin_path = sensitivity_sidecar_path(json_path);
  // A measurement that is not finite is refused, never written: a plan would rank it as anything.
  auto finite = [](const auto& v) { return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); }); };
  if (result.head.rows > 0) {
    for (size_t f = 0; f < result.formats.size(); ++f) {
      const double v = result.head.fisher[f];
      if (format_accepts(result.formats[f], result.head.rows, result.head.cols) && !std::isfinite(v)) {
        fail(json_path, "the sensitivity of the output head is not finite: nothing written");
      }
    }
  }
  // Costs of formats a tensor cannot take are NaN by design (format_accepts): not written.
  auto finite_where_accepted = [&](const TensorSensitivity& ts, const std::vector<double>& v) {
    for (size_t f = 0; f < v.size(); ++f) {
      if (format_accepts(result.formats[f], ts.rows, ts.cols) && !std::isfinite(v[f])) return false;
    }
    return true;
  };
  for (const TensorSensitivity& ts : result.tensors) {
    if (!finite_where_accepted(ts, ts.fisher) || !finite_where_accepted(ts, ts.output) || !finite(ts.kld) ||
        !finite(ts.channels)) {
      fail(json_path, "the sensitivity of tensor '" + ts.name + "' is not finite (the model's activations overflow?): "
                      "nothing written");
    }
  }

  // Sidecar: header, then one float32 array per tensor with channels, in tensor order.
  std::string bin;
  bin.append(kSensitivityBinMagic, 8);
  put_u32(bin, static_cast<uint32_t>(kSensitivityFileVersion));
  put_u32(bin, static_cast<uint32_t>(kSensitivityBinHeaderBytes));
  const size_t payload_pos = bin.size();
  put_u64(bin, 0);  // payload bytes, patched below
  put_u64(bin, 0);  // reserved
  std::vector<int64_t> offsets(result.tensors.size(), -1);
  for (size_t t = 0; t < result.tensors.size(); ++t) {
    if (result.tensors[t].channels.empty()) continue;
    offsets[t] = static_cast<int64_t>(bin.size());
    for (float v : result.tensors[t].channels) put_f32(bin, v);
  }
  const uint64_t payload = bin.size() - static_cast<size_t>(kSensitivityBinHeaderBytes);
  for (int i = 0; i < 8; ++i) bin[payload_pos + i] = static_cast<char>((payload >> (8 * i)) & 0xFF);

  json j;
  j["format"] = "mpq-sensitivity";
  j["version"] = kSensitivityFileVersion;
  j["model"] = model_identity;
  j["calibration"] = {{"files", calibration.text_paths},
                      {"n_samples", calibration.n_samples},
                      {"seq_len", calibration.seq_len},
                      {"seed", calibration.seed},
                      {"micro_batch", calibration.micro_batch}};
  if (!result.expert_tokens.empty()) {
    // MoE routing report: tokens per layer and expert, and the experts no calibration token
    // reached (their statistics are empty and their tensors carry no costs).
    j["calibration"]["expert_tokens"] = result.expert_tokens;
    j["calibration"]["experts_without_tokens"] = experts_without_tokens(result);
  }
  j["methods"] = result.methods.names();
  json formats = json::array();
  for (WeightFormatId f : result.formats) formats.push_back(weight_format(f).name);
  j["formats"] = formats;
  if (result.methods.fisher || result.methods.channels) {
    j["gradients"] = {{"sequences", result.grad_sequences}, {"loss_mean", result.grad_loss_mean}};
  }
  if (result.methods.output) j["output_calib_rows"] = result.calib_rows;
  if (result.methods.kld || result.methods.shapley) {
    j["heldout"] = result.heldout;
    j["heldout"]["tokens"] = result.heldout_tokens;
  }
  if (result.methods.kld) j["kld_unquantized"] = result.kld_base;

  json tensors = json::array();
  for (size_t t = 0; t < result.tensors.size(); ++t) {
    const TensorSensitivity& ts = result.tensors[t];
    json e = {{"name", ts.name},
              {"layer", ts.layer},
              {"kind", linear_kind_name(ts.kind)},
              {"rows", ts.rows},
              {"cols", ts.cols}};
    if (ts.expert >= 0) {
      e["expert"] = ts.expert;
      e["expert_tokens"] = ts.expert_tokens;
    }
    json bpw = json::object(), fisher = json::object(), output = json::object(), kld = json::object();
    for (size_t f = 0; f < result.formats.size(); ++f) {
      if (!format_accepts(result.formats[f], ts.rows, ts.cols)) continue;
      const std::string name = weight_format(result.formats[f]).name;
      bpw[name] = bits_per_weight(result.formats[f], ts.rows, ts.cols);
      if (!ts.fisher.empty()) fisher[name] = ts.fisher[f];
      if (!ts.output.empty()) output[name] = ts.output[f];
      if (!ts.kld.empty()) kld[name] = ts.kld[f];
    }
    e["bits_per_weight"] = bpw;
    if (!ts.fisher.empty()) e["fisher"] = fisher;
    if (!ts.output.empty()) e["output"] = output;
    if (!ts.kld.empty()) e["kld"] = kld;
    if (offsets[t] >= 0) {
      e["channels"] = {{"offset", offsets[t]}, {"count", static_cast<int64_t>(ts.channels.size())},
                       {"dtype", "f32"}};
    }
    tensors.push_back(e);
  }
  j["tensors"] = tensors;
  if (result.head.rows > 0) {
    // The output head's fisher costs, for the formats that can hold its rows.
    const TensorSensitivity& h = result.head;
    json bpw = json::object(), fisher = json::object();
    for (size_t f = 0; f < result.formats.size(); ++f) {
      if (!format_accepts(result.formats[f], h.rows, h.cols)) continue;
      const std::string name = weight_format(result.formats[f]).name;
      bpw[name] = bits_per_weight(result.formats[f], h.rows, h.cols);
      fisher[name] = h.fisher[f];
    }
    j["head"] = {{"name", h.name}, {"rows", h.rows}, {"cols", h.cols}, {"tied", result.head_tied},
                 {"bits_per_weight", bpw}, {"fisher", fisher}};
  }
  if (result.gguf_fixed_bytes) j["gguf"] = {{"fixed_bytes", *result.gguf_fixed_bytes}};
  if (result.methods.channels) j["channels"] = channel_summary(result);
  if (result.methods.shapley) {
    const ShapleyResult& sh = result.shapley;
    j["shapley"] = {{"players", sh.players},
                    {"player_kind", sh.settings.tensor_players ? "tensor" : "layer"},
                    {"high", weight_format(sh.settings.high).name},
                    {"low", weight_format(sh.settings.low).name},
                    {"quantizer", "rtn"},
                    {"permutations", sh.settings.permutations},
                    {"antithetic", sh.settings.antithetic},
                    {"seed", sh.settings.seed},
                    {"player_bits_high", sh.player_bits_high},
                    {"player_bits_low", sh.player_bits_low},
                    {"estimate", sh.estimate},
                    {"chains", sh.chains}};
  }
  {
    j["sidecar"] = {{"file", fs::path(bin_path).filename().string()},
                    {"bytes", static_cast<int64_t>(bin.size())},
                    {"sha256", sha256_hex(bin.data(), bin.size())}};
  }

  write_file_atomically(bin_path, bin);
  write_file_atomically(json_path, j.dump(1) + "\n");
  return j;
}

}  // namespace mpq
