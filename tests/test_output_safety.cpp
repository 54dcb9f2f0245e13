// No command may delete or overwrite a file mpq did not write (io/output.h): existing directories
// and files that are not mpq outputs are refused (or, with --force, left alone except for the
// files mpq writes), inputs are never written over, temporaries are unique and cleaned up.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/output.h"
#include "mpq/error.h"
#include "test_util.h"

namespace fs = std::filesystem;
using mpq::test::expect_one_line_error;
using mpq::test::run_mpq;
using mpq::test::slurp;
using mpq::test::TempDir;

namespace {

const std::string kGguf = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
const std::string kHf = mpq::test::shared_dir() + "/models/stories260K/hf";
const std::string kTiny = mpq::test::shared_dir() + "/text/tinystories-sample/tiny.txt";

#define SKIP_WITHOUT_DATA() \
  if (!fs::exists(kGguf)) GTEST_SKIP() << "shared data not found: " << kGguf

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// Entries of `dir` whose name marks an mpq temporary.
std::vector<std::string> temporaries_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().find(".mpq-tmp-") != std::string::npos) out.push_back(e.path().string());
  }
  return out;
}

std::string quantize_args(const std::string& model, const std::string& out) {
  return "quantize '" + model + "' --scheme int8_channel --out '" + out + "'";
}

// A directory of a user's own files, a sub-directory included.
void make_user_dir(const std::string& dir) {
  fs::create_directories(dir + "/sub");
  write(dir + "/notes.txt", "my notes");
  write(dir + "/config.json", "{\"mine\": true}");
  write(dir + "/sub/data.bin", "precious");
}

void expect_user_dir_intact(const std::string& dir, bool config_too = true) {
  EXPECT_EQ(slurp(dir + "/notes.txt"), "my notes");
  EXPECT_EQ(slurp(dir + "/sub/data.bin"), "precious");
  if (config_too) EXPECT_EQ(slurp(dir + "/config.json"), "{\"mine\": true}");
}

}  // namespace

TEST(OutputSafety, QuantizeRefusesADirectoryItDidNotWrite) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  const std::string out = tmp.file("mine");
  make_user_dir(out);
  expect_one_line_error(run_mpq(quantize_args(kGguf, out), tmp), out, "not an mpq output");
  expect_user_dir_intact(out);
  EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
  EXPECT_TRUE(temporaries_in(tmp.path()).empty());
}

TEST(OutputSafety, ForceReplacesOnlyTheFilesMpqWrites) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  const std::string out = tmp.file("mine");
  make_user_dir(out);
  const auto r = run_mpq(quantize_args(kGguf, out) + " --force", tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  expect_user_dir_intact(out, /*config_too=*/false);  // config.json is a file mpq writes
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(out + "/" + mpq::kOutputManifest));
  EXPECT_TRUE(temporaries_in(tmp.path()).empty());
}

TEST(OutputSafety, AnEarlierOutputIsReplacedAndTheUsersFilesInItStay) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  const std::string out = tmp.file("q");
  ASSERT_EQ(run_mpq(quantize_args(kGguf, out), tmp).status, 0);
  write(out + "/README.md", "added by the user");
  const auto r = run_mpq("quantize '" + kGguf + "' --scheme int4_g32 --target mpq --out '" + out + "'", tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(slurp(out + "/README.md"), "added by the user");
  const auto config = nlohmann::json::parse(slurp(out + "/config.json"));
  EXPECT_EQ(config["quantization_config"]["config_groups"].begin().value()["weights"]["num_bits"], 4);
  // An output written before manifests existed is recognised by its mpq_report.json.
  fs::remove(out + "/" + mpq::kOutputManifest);
  ASSERT_EQ(run_mpq(quantize_args(kGguf, out), tmp).status, 0);
  EXPECT_EQ(slurp(out + "/README.md"), "added by the user");
}

TEST(OutputSafety, QuantizeNeverWritesOverItsInput) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  // The output is the input directory itself.
  const std::string hf = tmp.file("hf");
  fs::copy(kHf, hf, fs::copy_options::recursive);
  const std::string before = slurp(hf + "/model.safetensors");
  const std::string tok = mpq::test::shared_dir() + "/models/stories260K/llama2c/tok512.bin";
  auto r = run_mpq(quantize_args(hf, hf) + " --force", tmp);
  expect_one_line_error(r, hf, "input");
  EXPECT_EQ(slurp(hf + "/model.safetensors"), before);
  // The output contains the input model file.
  const std::string m = tmp.file("m");
  fs::create_directories(m);
  fs::copy_file(kGguf, m + "/model.gguf");
  r = run_mpq(quantize_args(m + "/model.gguf", m) + " --force", tmp);
  expect_one_line_error(r, m, "contains an input");
  EXPECT_EQ(fs::file_size(m + "/model.gguf"), fs::file_size(kGguf));
  // The current directory, and a parent of it.
  for (const std::string out : {".", ".."}) {
    r = run_mpq(quantize_args(kGguf, out) + " --force", tmp, m);
    expect_one_line_error(r, out, "current directory");
  }
  EXPECT_EQ(fs::file_size(m + "/model.gguf"), fs::file_size(kGguf));
}

TEST(OutputSafety, AUsersTmpFileBesideTheOutputSurvives) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  write(tmp.file("q.tmp"), "not mpq's");
  fs::create_directories(tmp.file("q.tmp.d"));
  ASSERT_EQ(run_mpq(quantize_args(kGguf, tmp.file("q")), tmp).status, 0);
  EXPECT_EQ(slurp(tmp.file("q.tmp")), "not mpq's");
  EXPECT_TRUE(fs::is_directory(tmp.file("q.tmp.d")));
}

TEST(OutputSafety, TemporariesOfKilledRunsAreSweptOthersAreKept) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  waitpid(child, nullptr, 0);  // a pid that no longer runs
  const std::string dead = tmp.file(".q.mpq-tmp-" + std::to_string(child) + "-0");
  const std::string alive = tmp.file(".q.mpq-tmp-1-0");  // pid 1 always runs
  const std::string other = tmp.file(".p.mpq-tmp-" + std::to_string(child) + "-0");  // another target
  for (const auto& d : {dead, alive, other}) {
    fs::create_directories(d);
    write(d + "/model.safetensors", "partial");
  }
  ASSERT_EQ(run_mpq(quantize_args(kGguf, tmp.file("q")), tmp).status, 0);
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(alive));
  EXPECT_TRUE(fs::exists(other));
}

// A write that fails half way (here the file-size limit, as a full disk would) exits 1 naming the
// output, and leaves neither the output nor a temporary behind.
TEST(OutputSafety, AFailedWriteLeavesNothingBehind) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  const std::string dir = tmp.file("outputs");
  fs::create_directories(dir);
  const std::string out = dir + "/q";
  const auto r = run_mpq(quantize_args(kGguf, out), tmp, "", "trap '' XFSZ; ulimit -f 64;");
  expect_one_line_error(r, out, "disk full");
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(temporaries_in(dir).empty());
}

// The same for a GGUF output (its writer's own write path).
TEST(OutputSafety, AFailedGgufWriteLeavesNothingBehind) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  const std::string dir = tmp.file("outputs");
  fs::create_directories(dir);
  const std::string out = dir + "/q.gguf";
  const auto r = run_mpq("quantize '" + kGguf + "' --scheme q8_0 --out '" + out + "'", tmp, "",
                         "trap '' XFSZ; ulimit -f 64;");
  expect_one_line_error(r, out, "disk full");
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(temporaries_in(dir).empty());
}

TEST(OutputSafety, FileOutputsNeverReplaceInputsOrForeignFiles) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  const std::string text = tmp.file("text.txt");
  fs::copy_file(kTiny, text);
  const std::string model = tmp.file("model.gguf");
  fs::copy_file(kGguf, model);
  const std::string ppl = "ppl '" + model + "' --text '" + text + "' --ctx 64 --chunks 2";
  // --save-logits over an input (the text, the model) is refused, even with --force.
  expect_one_line_error(run_mpq(ppl + " --save-logits '" + text + "' --force", tmp), text, "input");
  expect_one_line_error(run_mpq(ppl + " --save-logits '" + model + "' --force", tmp), model, "input");
  EXPECT_EQ(slurp(text), slurp(kTiny));
  EXPECT_EQ(fs::file_size(model), fs::file_size(kGguf));
  // Over a user's file: refused; over an earlier logits file: replaced.
  const std::string user = tmp.file("user.bin");
  write(user, "mine");
  expect_one_line_error(run_mpq(ppl + " --save-logits '" + user + "'", tmp), user, "refusing to overwrite");
  EXPECT_EQ(slurp(user), "mine");
  const std::string logits = tmp.file("ref.logits");
  ASSERT_EQ(run_mpq(ppl + " --save-logits '" + logits + "'", tmp).status, 0);
  ASSERT_EQ(run_mpq(ppl + " --save-logits '" + logits + "'", tmp).status, 0);
  // A directory where a file is expected.
  expect_one_line_error(run_mpq(ppl + " --save-logits '" + tmp.path() + "'", tmp), tmp.path(), "is a directory");
  // mpq logits --out: raw floats carry no marker, so an existing file needs --force.
  const std::string raw = tmp.file("logits.f32");
  write(raw, "mine");
  const std::string logits_cmd = "logits '" + model + "' --ids '1 2 3' --out '" + raw + "'";
  expect_one_line_error(run_mpq(logits_cmd, tmp), raw, "refusing to overwrite");
  EXPECT_EQ(slurp(raw), "mine");
  ASSERT_EQ(run_mpq(logits_cmd + " --force", tmp).status, 0);
  EXPECT_EQ(fs::file_size(raw), 3u * 512u * 4u);
  // analyze --out over the model or the calibration text: refused before any work.
  const std::string analyze = "analyze '" + model + "' --calib '" + text + "' --methods output --force --out ";
  expect_one_line_error(run_mpq(analyze + "'" + model + "'", tmp), model, "input");
  expect_one_line_error(run_mpq(analyze + "'" + text + "'", tmp), text, "input");
  // plan --out over a file that is not a plan.
  expect_one_line_error(run_mpq("plan '" + tmp.file("S.json") + "' --method knapsack --bits 4 --out '" + user + "'", tmp),
                        user, "refusing to overwrite");
  EXPECT_EQ(slurp(user), "mine");
  EXPECT_TRUE(temporaries_in(tmp.path()).empty());
}

// The library rules without the CLI: a staged directory replaces exactly its manifest's files.
TEST(OutputSafety, StagedDirectoryReplacesOnlyManifestFiles) {
  TempDir tmp;
  const std::string out = tmp.file("d");
  {
    mpq::StagedDirectory d(out, "test");
    write(d.path("a.txt"), "1");
    write(d.path("b.txt"), "1");
    d.commit({});
  }
  write(out + "/user.txt", "mine");
  {
    mpq::StagedDirectory d(out, "test");
    write(d.path("a.txt"), "2");  // b.txt is no longer written: the old one goes
    d.commit({});
  }
  EXPECT_EQ(slurp(out + "/a.txt"), "2");
  EXPECT_FALSE(fs::exists(out + "/b.txt"));
  EXPECT_EQ(slurp(out + "/user.txt"), "mine");
  {
    // Abandoned (an exception before commit): the temporary goes, the output stays as it was.
    mpq::StagedDirectory d(out, "test");
    write(d.path("a.txt"), "3");
  }
  EXPECT_EQ(slurp(out + "/a.txt"), "2");
  EXPECT_TRUE(temporaries_in(tmp.path()).empty());
  // A foreign directory is refused without --force.
  const std::string foreign = tmp.file("f");
  fs::create_directories(foreign);
  write(foreign + "/x", "mine");
  EXPECT_THROW(mpq::check_output_dir(foreign, {}), mpq::Error);
  EXPECT_NO_THROW(mpq::check_output_dir(foreign, {{}, /*force=*/true}));
  EXPECT_THROW(mpq::check_output_dir(foreign + "/x", {{}, true}), mpq::Error);  // not a directory
}
