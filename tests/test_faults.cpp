// Faults a long run meets: killed with SIGKILL half way (no partial output under the real name,
// the next run is not disturbed by the leftovers and sweeps them), and determinism (the same seed
// gives the same bytes).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "io/output.h"
#include "test_util.h"

namespace fs = std::filesystem;
using mpq::test::run_mpq;
using mpq::test::slurp;
using mpq::test::TempDir;

namespace {

const std::string kGguf = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
const std::string kTiny = mpq::test::shared_dir() + "/text/tinystories-sample/tiny.txt";

#define SKIP_WITHOUT_DATA() \
  if (!fs::exists(kGguf)) GTEST_SKIP() << "shared data not found: " << kGguf

// Starts `mpq args...` in the background, stdout discarded, stderr into `err_path`; its pid.
pid_t spawn_mpq(const std::vector<std::string>& args, const std::string& err_path) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int null = open("/dev/null", O_WRONLY);
    const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(null, 1);
    dup2(err, 2);
    std::vector<char*> argv{const_cast<char*>(MPQ_BINARY)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(MPQ_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

// Kills `pid` with SIGKILL once `ready` holds (or after `max` seconds) and reaps it; true when it
// was killed while still running.
bool kill_when(pid_t pid, const std::function<bool()>& ready, double max_seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  while (!ready() && std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < max_seconds) {
    if (waitpid(pid, &status, WNOHANG) == pid) return false;  // finished first
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status);
}

bool has_temporary(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().find(".mpq-tmp-") != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST(Faults, QuantizeKilledHalfWayLeavesNoOutputAndTheNextRunSweepsIt) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  const std::string dir = tmp.file("outputs"), out = dir + "/q";
  fs::create_directories(dir);
  // (--target mpq: stories260K's 172-wide rows fit no group of 32 that compressed-tensors needs)
  const std::vector<std::string> args = {"quantize", kGguf, "--scheme", "int4_g32:gptq", "--target", "mpq", "--calib", kTiny,
                                         "--calib-samples", "16", "--calib-len", "128", "--out", out};
  // Killed while quantizing (its second layer has started), then while writing when the timing
  // allows (the temporary output exists): never an output under the real name.
  const std::string err = tmp.file("err.txt");
  pid_t pid = spawn_mpq(args, err);
  ASSERT_TRUE(kill_when(pid, [&] { return slurp(err).find("layer 1/") != std::string::npos; }, 120));
  EXPECT_FALSE(fs::exists(out)) << "a killed run left an output under the real name";
  pid = spawn_mpq(args, err);
  if (kill_when(pid, [&] { return has_temporary(dir); }, 120)) {
    EXPECT_FALSE(fs::exists(out)) << "a run killed while writing left an output under the real name";
  }
  // The next run completes and removes the killed run's temporary.
  std::string cmd;
  for (const auto& a : args) cmd += "'" + a + "' ";
  const auto r = run_mpq(cmd, tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(out + "/" + mpq::kOutputManifest));
  EXPECT_FALSE(has_temporary(dir));
}

TEST(Faults, AnalyzeKilledHalfWayResumes) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  const std::string out = tmp.file("S.json");
  const std::vector<std::string> args = {"analyze",  kGguf,    "--calib",           kTiny,  "--calib-samples",
                                         "4",        "--calib-len", "64",           "--methods", "kld",
                                         "--formats", "int4_g32,int8_channel", "--heldout-samples", "2",
                                         "--heldout-len", "64", "--quiet", "--out", out};
  const std::string progress = out + ".progress.json";
  const pid_t pid = spawn_mpq(args, tmp.file("err.txt"));
  ASSERT_TRUE(kill_when(pid, [&] { return fs::exists(progress); }, 120)) << "finished before it could be killed";
  EXPECT_FALSE(fs::exists(out)) << "a killed analysis left a summary";
  std::string cmd;
  for (const auto& a : args) cmd += "'" + a + "' ";
  auto r = run_mpq(cmd + " --resume", tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(fs::exists(progress));
  // The resumed result equals an uninterrupted run's, byte for byte.
  const std::string resumed = slurp(out);
  const std::string fresh = tmp.file("S2.json");
  cmd.replace(cmd.find(out), out.size(), fresh);
  r = run_mpq(cmd, tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  // (The sidecar entry names its own file, S.bin vs S2.bin; everything else is the same.)
  nlohmann::json a = nlohmann::json::parse(resumed), b = nlohmann::json::parse(slurp(fresh));
  a.erase("sidecar");
  b.erase("sidecar");
  EXPECT_EQ(a, b);
}

TEST(Faults, TheSameSeedGivesTheSameBytes) {
  SKIP_WITHOUT_DATA();
  TempDir tmp;
  for (const std::string out : {tmp.file("a"), tmp.file("b")}) {
    const auto r = run_mpq("quantize '" + kGguf + "' --scheme int4_g32:gptq --target mpq --calib '" + kTiny +
                               "' --calib-samples 8 --calib-len 64 --seed 7 --out '" + out + "'",
                           tmp);
    ASSERT_EQ(r.status, 0) << r.err;
  }
  for (const char* name : {"model.safetensors", "config.json", mpq::kOutputManifest}) {
    EXPECT_EQ(slurp(tmp.file("a") + "/" + name), slurp(tmp.file("b") + "/" + name)) << name;
  }
}
