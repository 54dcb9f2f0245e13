// Bad numbers and bad options end in one clear line and exit status 1, never in a misleading
// result: out-of-range options, a directory where a file is expected, non-finite weights or
// results, a tokenizer regex that exhausts PCRE2, GGUF metadata that contradicts the tensors, a
// calibration that cannot fit in memory.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "quant/quantize.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace fs = std::filesystem;
using mpq::test::expect_one_line_error;
using mpq::test::run_mpq;
using mpq::test::TempDir;

namespace {

const std::string kGguf = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
const std::string kTiny = mpq::test::shared_dir() + "/text/tinystories-sample/tiny.txt";

#define SKIP_WITHOUT_DATA() \
  if (!fs::exists(kGguf)) GTEST_SKIP() << "shared data not found: " << kGguf

std::string q(const std::string& s) { return "'" + s + "'"; }

}  // namespace

TEST(BadInput, OutOfRangeOptionsSayWhatIsWanted) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  const std::string m = q(kGguf), text = q(kTiny), out = q(tmp.file("out"));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"quantize " + m + " --scheme int4_g32:gptq --calib-samples 0 --out " + out, "--calib-samples"},
      {"quantize " + m + " --scheme int4_g32:gptq --calib-len 1 --out " + out, "--calib-len"},
      {"info " + m + " --threads -4", "--threads"},
      {"generate " + m + " -p hi -n -1", "--n-predict"},
      {"ppl " + m + " --text " + text + " --ctx 0", "--ctx"},
      {"generate " + m + " -p hi --top-p nan", "--top-p"},
      {"generate " + m + " -p hi --temp inf", "--temp"},
      {"plan " + q(tmp.file("S.json")) + " --method knapsack --bits nan --out " + out, "--bits"},
      {"plan " + q(tmp.file("S.json")) + " --method knapsack --bits -1 --out " + out, "--bits"},
      {"quantize " + m + " --scheme int4_g32:gptq --damp 11 --out " + out, "--damp"},
  };
  for (const auto& [args, option] : cases) {
    SCOPED_TRACE(args);
    const auto r = run_mpq(args, tmp);
    expect_one_line_error(r, option, "expected");
    EXPECT_EQ(r.err.find("1797"), std::string::npos) << r.err;
  }
}

TEST(BadInput, ADirectoryWhereAFileIsExpected) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  const std::string dir = tmp.file("d");
  fs::create_directories(dir);
  expect_one_line_error(run_mpq("ppl " + q(kGguf) + " --text " + q(dir), tmp), dir, "is a directory");
  expect_one_line_error(
      run_mpq("quantize " + q(kGguf) + " --scheme int4_g32:gptq --target mpq --calib " + q(dir) + " --out " + q(tmp.file("o")), tmp),
      dir, "is a directory");
  expect_one_line_error(run_mpq("tokenize " + q(kGguf) + " --file " + q(dir), tmp), dir, "is a directory");
}

TEST(BadInput, NonFiniteWeightsAreRefusedAtLoadNamingTheTensor) {
  TempDir tmp;
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    mpq::synth::SynthModel m = mpq::synth::make_model({});
    m.tensors.at("model.layers.1.mlp.down_proj.weight").values[5 * 48 + 7] = bad;
    const std::string dir = tmp.file(std::isnan(bad) ? "nan" : "inf");
    mpq::synth::write_model(m, dir);
    try {
      mpq::load_model(dir, {.need_tokenizer = false});
      ADD_FAILURE() << "loaded a model with a non-finite weight";
    } catch (const mpq::Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(dir + "/model.safetensors"), std::string::npos) << msg;
      EXPECT_NE(msg.find("model.layers.1.mlp.down_proj.weight"), std::string::npos) << msg;
      EXPECT_NE(msg.find("row 5, column 7"), std::string::npos) << msg;
    }
    // The CLI: exit 1, one line, no perplexity printed.
    const auto r = run_mpq("info " + q(dir), tmp);
    expect_one_line_error(r, "model.layers.1.mlp.down_proj.weight", "non-finite");
  }
}

// Finite weights whose activations overflow fp32: the figures are refused, not printed as nan.
TEST(BadInput, NonFiniteResultsExitNonZero) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  // stories260K with one norm weight scaled to 3e38: the residual stream overflows to inf.
  mpq::GgufFile src(kGguf);
  const std::string path = tmp.file("overflow.gguf");
  {
    mpq::GgufWriter w(path, src.alignment());
    for (const auto& [key, value] : src.metadata()) {
      if (key != "general.alignment") w.set(key, value);
    }
    for (const mpq::TensorRecord& t : src.tensors()) {
      std::vector<uint8_t> bytes(t.data, t.data + t.nbytes);
      if (t.name == "blk.0.ffn_norm.weight") {
        for (size_t i = 0; i < bytes.size(); i += 4) {
          const float big = 3e38f;
          std::memcpy(&bytes[i], &big, 4);
        }
      }
      w.add_tensor(t.name, t.dtype, t.shape, bytes.data(), bytes.size());
    }
    w.finish();
  }
  const std::string logits = tmp.file("ref.logits");
  auto r = run_mpq("ppl " + q(path) + " --text " + q(kTiny) + " --ctx 64 --chunks 2 --save-logits " + q(logits), tmp);
  expect_one_line_error(r, path, "not finite");
  EXPECT_EQ(r.out.find("nan"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(logits)) << "logits of a non-finite run were saved";
  expect_one_line_error(run_mpq("logits " + q(path) + " --ids '1 2 3'", tmp), path, "not finite");
  expect_one_line_error(run_mpq("generate " + q(path) + " -p 'Once' -n 4", tmp), path, "not finite");
}

TEST(BadInput, QuantizerErrorsNameTheFileAndTheTensor) {
  mpq::synth::SynthModel m = mpq::synth::make_model({});
  TempDir tmp;
  mpq::synth::write_model(m, tmp.file("m"));
  mpq::Model model = mpq::load_model(tmp.file("m"), {.need_tokenizer = false});
  // A NaN that reaches a quantizer after loading (the loader itself refuses them).
  mpq::Linear& target = model.layers[0].at(mpq::LinearKind::Up);
  std::vector<float> w(target.weights->out_features() * target.weights->in_features());
  target.weights->to_f32(w.data());
  w[3] = std::numeric_limits<float>::quiet_NaN();
  target.weights = mpq::make_dense_f32_weights(std::make_shared<const std::vector<float>>(w),
                                               target.weights->out_features(), target.weights->in_features());
  mpq::QuantizeOptions options;
  options.progress = false;
  try {
    mpq::quantize(model, mpq::uniform_plan(model, mpq::parse_scheme("int4_g32")), options);
    ADD_FAILURE() << "quantized a NaN";
  } catch (const mpq::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(tmp.file("m")), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.layers.0.mlp.up_proj"), std::string::npos) << msg;
  }
}

TEST(BadInput, ATokenizerRegexThatExhaustsPcre2NamesTheFile) {
  TempDir tmp;
  nlohmann::json tok = nlohmann::json::parse(mpq::test::slurp(std::string(MPQ_TEST_DATA_DIR) + "/tok_bpe_small/tokenizer.json"));
  // Nested quantifiers: exponential backtracking on a long run of 'a' that does not end the text.
  tok["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers",
                           {{{"type", "Split"}, {"pattern", {{"Regex", "(a+)+$"}}}, {"behavior", "Isolated"}, {"invert", false}},
                            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  const std::string path = tmp.file("tokenizer.json");
  std::ofstream(path) << tok.dump();
  const auto r = run_mpq("tokenize " + q(path) + " --text " + std::string(40, 'a') + "!", tmp);
  expect_one_line_error(r, path, "match limit");
}

TEST(BadInput, GgufMetadataThatContradictsTheTensorsIsRefused) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  mpq::GgufFile src(kGguf);
  for (const auto& [key, value] : std::vector<std::pair<std::string, int>>{{"llama.rope.dimension_count", 0},
                                                                          {"llama.rope.dimension_count", 16},
                                                                          {"llama.attention.value_length", 4}}) {
    SCOPED_TRACE(key + " = " + std::to_string(value));
    const std::string path = tmp.file("bad.gguf");
    fs::remove(path);
    mpq::GgufWriter w(path, src.alignment());
    for (const auto& [k, v] : src.metadata()) {
      if (k != "general.alignment" && k != key) w.set(k, v);
    }
    w.set(key, mpq::gguf_u32(static_cast<uint32_t>(value)));
    for (const mpq::TensorRecord& t : src.tensors()) w.add_tensor(t.name, t.dtype, t.shape, t.data, t.nbytes);
    w.finish();
    expect_one_line_error(run_mpq("info " + q(path), tmp), key, "not supported");
  }
}

TEST(BadInput, ACalibrationThatCannotFitIsRefusedBeforeItStarts) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  const auto r = run_mpq("quantize " + q(kGguf) + " --scheme int4_g32:gptq --target mpq --calib " + q(kTiny) +
                             " --calib-samples 1000000000 --calib-len 64 --out " + q(tmp.file("o")),
                         tmp);
  expect_one_line_error(r, "calibration", "available");
  EXPECT_NE(r.err.find("--calib-samples"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp.file("o")));
}
