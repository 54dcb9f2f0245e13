// Plan files (plan/plan.h), the planner (plan/planner.h) and `mpq plan` on a synthetic
// sensitivity file.
#include <cmath>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>
#include <regex>

#include "calib/sensitivity_file.h"
#include "mpq/error.h"
#include "plan/planner.h"
#include "test_util.h"

namespace mpq {
namespace {

using test::TempDir;

const char* kKinds[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
const std::vector<std::string> kFormats = {"fp8_e4m3_channel", "nvfp4", "int8_channel", "int4_g128", "int3_g128"};

std::string module_name(int layer, int kind) {
  return "model.layers." + std::to_string(layer) + (kind < 4 ? ".self_attn." : ".mlp.") + kKinds[kind];
}

// A synthetic sensitivity input: n_layers × 7 tensors, costs falling with bits, random salience.
SensitivityInput synthetic_input(int n_layers, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.5, 1.5);
  std::uniform_real_distribution<float> s(0.f, 1.f);
  SensitivityInput in;
  in.path = "synthetic.json";
  in.n_layers = n_layers;
  in.formats = kFormats;
  for (int l = 0; l < n_layers; ++l)
    for (int k = 0; k < 7; ++k) {
      SensitivityTensor t;
      t.name = module_name(l, k);
      t.layer = l;
      t.kind = kKinds[k];
      t.rows = k == 1 || k == 2 ? 64 : (k >= 4 && k <= 5 ? 256 : 128);
      t.cols = k == 6 ? 256 : 128;
      const double w = u(rng);
      for (const auto& f : kFormats) {
        const double bpw = bits_per_weight(*weight_format_from_name(f), t.rows, t.cols);
        t.fisher[f] = w * std::exp2(-bpw) * u(rng);
        t.output[f] = w * std::exp2(-bpw);
      }
      for (int64_t r = 0; r < t.rows; ++r) t.channels.push_back(s(rng));
      in.tensors.push_back(std::move(t));
    }
  return in;
}

std::vector<PlanTensorShape> shapes_of(const SensitivityInput& in) {
  std::vector<PlanTensorShape> v;
  for (const auto& t : in.tensors) v.push_back({t.name, t.rows, t.cols});
  return v;
}

// Writes `in` as S.json + S.bin in the layout of docs/SENSITIVITY.md.
void write_synthetic_file(const SensitivityInput& in, const std::string& json_path) {
  nlohmann::json j;
  j["format"] = "mpq-sensitivity";
  j["version"] = 1;
  j["model"] = {{"n_layers", in.n_layers}, {"arch", "llama"}};
  j["formats"] = in.formats;
  j["methods"] = {"fisher", "output", "channels"};
  std::string payload;
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : in.tensors) {
    const uint64_t off = 32 + payload.size();
    payload.append(reinterpret_cast<const char*>(t.channels.data()), t.channels.size() * 4);
    tensors.push_back({{"name", t.name}, {"layer", t.layer}, {"kind", t.kind}, {"rows", t.rows}, {"cols", t.cols},
                       {"fisher", t.fisher}, {"output", t.output},
                       {"channels", {{"offset", off}, {"count", t.rows}, {"dtype", "f32"}}}});
  }
  j["tensors"] = tensors;
  std::ofstream(json_path) << j.dump(1);
  std::string bin(kSensitivityBinMagic, 8);
  auto put = [&](uint64_t v, int n) {
    for (int i = 0; i < n; ++i) bin.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  };
  put(1, 4), put(32, 4), put(payload.size(), 8), put(0, 8);
  std::ofstream(sensitivity_sidecar_path(json_path), std::ios::binary) << bin << payload;
}

Plan small_plan() {
  Plan p;
  p.method = "knapsack";
  p.budget.bits_per_weight = 8;
  p.tensors["a"] = {WeightFormatId::Int4_G128, Quantizer::Gptq};
  PlanEntry s;
  s.split = true;
  s.format = s.low_format = WeightFormatId::Int4_G128;
  s.high_format = WeightFormatId::Int8_Channel;
  s.high_channels = {1, 5};
  p.tensors["b"] = s;
  p.unquantized = {"c"};
  return p;
}

const std::vector<PlanTensorShape> kSmallShapes = {{"a", 16, 128}, {"b", 8, 256}, {"c", 4, 64}};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PlanFile, RoundTripsAndMapsToModuleChoices) {
  TempDir tmp;
  const std::string path = tmp.file("plan.json");
  write_plan(small_plan(), path);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  const Plan p = read_plan(path);
  EXPECT_EQ(p.path, path);
  EXPECT_EQ(plan_to_json(p), plan_to_json(small_plan()));
  const auto j = nlohmann::json::parse(test::slurp(path));
  EXPECT_EQ(j["tensors"]["a"], (nlohmann::json{{"format", "int4_g128"}, {"quantizer", "gptq"}}));
  EXPECT_EQ(j["tensors"]["b"]["high_channels"], (nlohmann::json{1, 5}));
  EXPECT_EQ(j["tensors"]["b"]["high_format"], "int8_channel");
  const ModuleChoice c = plan_module_choice(p, "a");
  EXPECT_EQ(c.format, WeightFormatId::Int4_G128);
  EXPECT_EQ(c.quantizer, Quantizer::Gptq);
  const ModuleChoice split = plan_module_choice(p, "b");  // channel split: low format + high rows
  EXPECT_TRUE(split.split);
  EXPECT_EQ(split.high_format, WeightFormatId::Int8_Channel);
  EXPECT_EQ(split.high_rows, (std::vector<int32_t>{1, 5}));
  EXPECT_EQ(split.format, p.tensors.at("b").low_format);
  EXPECT_THROW(plan_module_choice(p, "nope"), Error);
  EXPECT_NO_THROW(validate_plan(p, kSmallShapes));
  EXPECT_EQ(plan_entry_bits(p.tensors.at("b"), 8, 256),
            storage_bits(WeightFormatId::Int8_Channel, 2, 256) + storage_bits(WeightFormatId::Int4_G128, 6, 256));
}

TEST(PlanFile, RefusesBadPlansNamingTheFile) {
  TempDir tmp;
  const std::string path = tmp.file("bad.json");
  auto j = plan_to_json(small_plan());
  j["tensors"]["a"]["format"] = "int5_g7";
  std::ofstream(path) << j.dump();
  std::string e = error_of([&] { read_plan(path); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("unknown format 'int5_g7'"), std::string::npos) << e;

  Plan p = small_plan();
  p.path = "p.json";
  p.tensors["zzz"] = {WeightFormatId::Int4_G128, Quantizer::Rtn};
  e = error_of([&] { validate_plan(p, kSmallShapes); });
  EXPECT_NE(e.find("p.json"), std::string::npos) << e;
  EXPECT_NE(e.find("'zzz' is not a Linear tensor"), std::string::npos) << e;

  p = small_plan();
  p.unquantized.clear();
  e = error_of([&] { validate_plan(p, kSmallShapes); });
  EXPECT_NE(e.find("'c' is missing"), std::string::npos) << e;

  p = small_plan();
  p.tensors["b"].high_channels = {1, 8};
  e = error_of([&] { validate_plan(p, kSmallShapes); });
  EXPECT_NE(e.find("out of range"), std::string::npos) << e;

  p = small_plan();
  p.budget.bits_per_weight = 4.5;  // int4_g128 of 128 cols is 4.15625, the split tensor is more
  p.tensors["b"].high_channels = {0, 1, 2, 3, 4, 5, 6};
  e = error_of([&] { validate_plan(p, kSmallShapes); });
  EXPECT_NE(e.find("exceeds its budget"), std::string::npos) << e;

  p = small_plan();
  p.sensitivity = {{"model", {{"sha256", "abc"}, {"path", "m.gguf"}}}};
  EXPECT_NO_THROW(check_plan_model(p, {{"sha256", "abc"}}));
  e = error_of([&] { check_plan_model(p, {{"sha256", "def"}}); });
  EXPECT_NE(e.find("made for another model"), std::string::npos) << e;

  EXPECT_THROW(parse_byte_size("12XB"), Error);
  EXPECT_EQ(parse_byte_size("90MB"), 90000000u);
  EXPECT_EQ(parse_byte_size("2MiB"), 2u << 20);
  EXPECT_EQ(parse_byte_size("1234"), 1234u);
}

TEST(Planner, EveryMethodMeetsItsBudgetAndValidates) {
  const SensitivityInput in = synthetic_input(8, 11);
  for (const std::string method : {"tiers", "knapsack", "bqp", "channels", "rule"}) {
    PlanRequest req;
    req.method = method;
    req.bits = method == "tiers" ? 7.0 : 5.0;
    const Plan p = make_plan(in, req);
    SCOPED_TRACE(method);
    EXPECT_LE(p.bits_per_weight, *req.bits);
    EXPECT_EQ(p.tensors.size(), in.tensors.size());
    EXPECT_NO_THROW(validate_plan(p, shapes_of(in)));
    uint64_t bits = 0;
    for (const auto& t : in.tensors) bits += plan_entry_bits(p.tensors.at(t.name), t.rows, t.cols);
    EXPECT_EQ(bits, p.total_bits);
  }
}

TEST(Planner, KnapsackMatchesBruteForceOverFusedGroupsAndHonoursPins) {
  // One layer, fused-same: units qkv, o, gate/up, down (pinned) × 3 formats.
  SensitivityInput in = synthetic_input(1, 12);
  PlanRequest req;
  req.method = "knapsack";
  req.bits = 5.5;
  req.fused_same = true;
  req.formats = {WeightFormatId::Int8_Channel, WeightFormatId::Int4_G128, WeightFormatId::Int3_G128};
  req.pins = {parse_pin("down_proj$=int8_channel:gptq")};
  const Plan p = make_plan(in, req);
  EXPECT_EQ(p.tensors.at(module_name(0, 6)).format, WeightFormatId::Int8_Channel);
  EXPECT_EQ(p.tensors.at(module_name(0, 6)).quantizer, Quantizer::Gptq);
  EXPECT_EQ(p.tensors.at(module_name(0, 0)).quantizer, Quantizer::Rtn);
  EXPECT_EQ(p.tensors.at(module_name(0, 0)).format, p.tensors.at(module_name(0, 1)).format);
  EXPECT_EQ(p.tensors.at(module_name(0, 0)).format, p.tensors.at(module_name(0, 2)).format);
  EXPECT_EQ(p.tensors.at(module_name(0, 4)).format, p.tensors.at(module_name(0, 5)).format);
  EXPECT_TRUE(p.solver["exact"].get<bool>());
  // Brute force over the free units (qkv, o, gate/up).
  const std::vector<std::vector<int>> units = {{0, 1, 2}, {3}, {4, 5}};
  uint64_t weights = 0, fixed = storage_bits(WeightFormatId::Int8_Channel, 128, 256);
  for (const auto& t : in.tensors) weights += t.rows * t.cols;
  const uint64_t cap = static_cast<uint64_t>(5.5 * weights);
  double best = 1e300;
  for (int c = 0; c < 27; ++c) {
    uint64_t bits = fixed;
    double cost = in.tensors[6].fisher.at("int8_channel");
    int code = c;
    for (const auto& u : units) {
      const WeightFormatId f = req.formats[code % 3];
      code /= 3;
      for (int t : u) bits += storage_bits(f, in.tensors[t].rows, in.tensors[t].cols), cost += in.tensors[t].fisher.at(weight_format(f).name);
    }
    if (bits <= cap) best = std::min(best, cost);
  }
  EXPECT_NEAR(p.predicted_objective, best, 1e-12);
}

TEST(Planner, PinsToNoneAndChannelSplitsAndErrors) {
  const SensitivityInput in = synthetic_input(4, 13);
  PlanRequest req;
  req.method = "channels";
  req.bits = 6.0;
  req.pins = {parse_pin("layers\\.0\\.=none"), parse_pin("layers\\.3\\.mlp=int8_channel")};
  const Plan p = make_plan(in, req);
  EXPECT_EQ(p.unquantized.size(), 7u);
  EXPECT_FALSE(p.tensors.count(module_name(0, 0)));
  EXPECT_FALSE(p.tensors.at(module_name(3, 6)).split);
  EXPECT_EQ(p.tensors.at(module_name(3, 6)).format, WeightFormatId::Int8_Channel);
  EXPECT_TRUE(p.tensors.at(module_name(1, 0)).split);
  int64_t n_high = 0;
  for (const auto& [n, e] : p.tensors) n_high += static_cast<int64_t>(e.high_channels.size());
  EXPECT_GT(n_high, 0);
  EXPECT_EQ(p.solver["n_high"].get<int64_t>(), n_high);

  PlanRequest bad = req;
  bad.pins = {parse_pin("nothing_matches=int4_g128")};
  EXPECT_NE(error_of([&] { make_plan(in, bad); }).find("matches no tensor"), std::string::npos);
  bad = req;
  bad.bits = 3.0;  // below all-int4_g128
  EXPECT_NE(error_of([&] { make_plan(in, bad); }).find("budget"), std::string::npos);
  bad = req;
  bad.method = "knapsack";
  bad.pins = {parse_pin(".=int8_channel")};
  EXPECT_NE(error_of([&] { make_plan(in, bad); }).find("pinned tensors alone"), std::string::npos);
  bad.pins.clear();
  bad.formats = {WeightFormatId::Int2_G32};
  EXPECT_NE(error_of([&] { make_plan(in, bad); }).find("no 'fisher' cost"), std::string::npos);
  EXPECT_THROW(parse_pin("noequals"), Error);
  EXPECT_THROW(parse_pin("x=int9"), Error);
  EXPECT_THROW(parse_pin("(=int4_g128"), Error);
}

// MixLLM states plans as "the top p% of channels": --high-fraction P gives exactly floor(P * n)
// channels, the same ones a budget that admits that many picks, and refuses other budgets beside it.
TEST(Planner, ChannelsHighFractionTakesExactlyTheTopChannels) {
  const SensitivityInput in = synthetic_input(4, 16);
  PlanRequest req;
  req.method = "channels";
  req.high_fraction = 0.1;
  const Plan p = make_plan(in, req);
  const int64_t n = p.solver["n_channels"].get<int64_t>();
  const int64_t expect = static_cast<int64_t>(std::floor(0.1 * static_cast<double>(n)));
  EXPECT_EQ(p.solver["n_high"].get<int64_t>(), expect);
  int64_t n_high = 0;
  for (const auto& [name, e] : p.tensors) n_high += static_cast<int64_t>(e.high_channels.size());
  EXPECT_EQ(n_high, expect);
  // The same channels as the budget plan whose bits are exactly this plan's.
  PlanRequest by_bits;
  by_bits.method = "channels";
  by_bits.bits = p.bits_per_weight;
  const Plan q = make_plan(in, by_bits);
  for (const auto& [name, e] : p.tensors) EXPECT_EQ(q.tensors.at(name).high_channels, e.high_channels) << name;
  req.high_fraction = 0;
  EXPECT_EQ(make_plan(in, req).solver["n_high"].get<int64_t>(), 0);
  PlanRequest bad = req;
  bad.high_fraction = 1.5;
  EXPECT_NE(error_of([&] { make_plan(in, bad); }).find("fraction from 0 to 1"), std::string::npos);
  bad.high_fraction = 0.1;
  bad.bits = 5.0;
  EXPECT_NE(error_of([&] { make_plan(in, bad); }).find("instead of --bits"), std::string::npos);
  bad.bits.reset();
  bad.method = "knapsack";
  EXPECT_NE(error_of([&] { make_plan(in, bad); }).find("channels method only"), std::string::npos);
}

TEST(Planner, RuleGivesMoreBitsToVAndDownInTheRuleLayers) {
  const SensitivityInput in = synthetic_input(16, 14);
  PlanRequest req;
  req.method = "rule";
  const Plan p = make_plan(in, req);
  for (int l = 0; l < 16; ++l)
    for (int k = 0; k < 7; ++k) {
      const bool more = (k == 2 || k == 6) && rule_more_bits(l, 16);
      EXPECT_EQ(p.tensors.at(module_name(l, k)).format, more ? WeightFormatId::Int8_Channel : WeightFormatId::Int4_G128)
          << module_name(l, k);
    }
  req.bits = 4.2;  // below what the rule needs
  EXPECT_NE(error_of([&] { make_plan(in, req); }).find("over the budget"), std::string::npos);
}

TEST(PlanCli, WritesAPlanFromASensitivityFileAndRefusesBadArguments) {
  TempDir tmp;
  const SensitivityInput in = synthetic_input(4, 15);
  const std::string s = tmp.file("S.json"), out = tmp.file("plan.json");
  write_synthetic_file(in, s);
  auto r = test::run_mpq("plan '" + s + "' --method knapsack --bits 4.5 --fused-same --pin 'down_proj=int8_channel' --out '" +
                             out + "' --json",
                         tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  Plan p = read_plan(out);
  EXPECT_LE(p.bits_per_weight, 4.5);
  EXPECT_EQ(p.budget.bits_per_weight, 4.5);
  EXPECT_NO_THROW(validate_plan(p, shapes_of(in)));
  EXPECT_EQ(p.tensors.at(module_name(2, 6)).format, WeightFormatId::Int8_Channel);
  EXPECT_EQ(p.sensitivity["path"], s);

  r = test::run_mpq("plan '" + s + "' --method channels --target mpq --size 340kB --out '" + out + "'", tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  p = read_plan(out);
  EXPECT_LE(p.total_bits, 340000u * 8);
  EXPECT_TRUE(p.tensors.at(module_name(0, 0)).split);

  r = test::run_mpq("plan '" + s + "' --method knapsack --bits 4.5 --pin 'q_proj=int5' --out '" + out + "'", tmp);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("int5"), std::string::npos) << r.err;
  r = test::run_mpq("plan '" + s + "' --method knapsack --bits -1 --out '" + out + "'", tmp);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--bits"), std::string::npos) << r.err;
  r = test::run_mpq("plan '" + tmp.file("missing.json") + "' --method knapsack --bits 4 --out '" + out + "'", tmp);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("missing.json"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace mpq
