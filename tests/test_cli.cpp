// The `mpq` binary on bad input: one line on stderr naming the file and the problem, exit 1,
// never a crash. And its JSON output on the tiny real model.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace fs = std::filesystem;
using mpq::test::run_mpq;
using mpq::test::TempDir;
using mpq::test::expect_one_line_error;

namespace {

const std::string kGguf = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";

}  // namespace

TEST(Cli, TruncatedGgufIsRefused) {
  if (!fs::exists(kGguf)) GTEST_SKIP() << "shared data not found: " << kGguf;
  TempDir tmp;
  const std::string cut = tmp.file("cut.gguf");
  fs::copy_file(kGguf, cut);
  fs::resize_file(cut, fs::file_size(kGguf) / 2);
  // Each command that loads a model refuses it the same way.
  for (const std::string& command : {std::string("info '") + cut + "'", std::string("bench '") + cut + "'",
                                     std::string("ppl '") + cut + "' --text /dev/null"}) {
    expect_one_line_error(run_mpq(command, tmp), cut, "");
  }
}

TEST(Cli, MissingTextFileIsNamed) {
  if (!fs::exists(kGguf)) GTEST_SKIP() << "shared data not found: " << kGguf;
  TempDir tmp;
  expect_one_line_error(run_mpq("ppl '" + kGguf + "' --text /nonexistent/wiki.txt", tmp), "/nonexistent/wiki.txt",
                        "cannot open");
}

TEST(Cli, TextTooShortForOneChunk) {
  if (!fs::exists(kGguf)) GTEST_SKIP() << "shared data not found: " << kGguf;
  TempDir tmp;
  const std::string text = tmp.file("short.txt");
  std::ofstream(text) << "Once upon a time.";
  expect_one_line_error(run_mpq("ppl '" + kGguf + "' --text '" + text + "'", tmp), text, "fewer than one chunk");
}

TEST(Cli, PplJsonHasTheDocumentedKeys) {
  if (!fs::exists(kGguf)) GTEST_SKIP() << "shared data not found: " << kGguf;
  TempDir tmp;
  const std::string text = mpq::test::shared_dir() + "/text/tinystories-sample/tiny.txt";
  const std::string logits = tmp.file("ref.logits");
  auto r = run_mpq("ppl '" + kGguf + "' --text '" + text + "' --ctx 64 --chunks 3 --save-logits '" + logits + "' --json", tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"ppl", "n_tokens", "n_chunks", "seconds"}) EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["n_chunks"], 3);
  r = run_mpq("ppl '" + kGguf + "' --text '" + text + "' --ctx 64 --chunks 3 --kl-base '" + logits + "' --json", tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  for (const char* key : {"kld_mean", "kld_p99", "ppl_ratio", "top1_agree"}) EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_DOUBLE_EQ(j["top1_agree"].get<double>(), 1.0);
  // The same logits file with another chunk count does not match: refused, naming the file.
  expect_one_line_error(
      run_mpq("ppl '" + kGguf + "' --text '" + text + "' --ctx 64 --chunks 2 --kl-base '" + logits + "'", tmp),
      logits, "scored tokens");
}

TEST(Cli, BenchJsonHasSpeeds) {
  if (!fs::exists(kGguf)) GTEST_SKIP() << "shared data not found: " << kGguf;
  TempDir tmp;
  auto r = run_mpq("bench '" + kGguf + "' --pp 64 --tg-prompt 16 --reps 2 --json", tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["pp_tok_s"].get<double>(), 0);
  EXPECT_GT(j["tg_tok_s"].get<double>(), 0);
}
