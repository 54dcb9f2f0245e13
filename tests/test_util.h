// Helpers shared by the test files: temporary directories, running the `mpq` binary, paths of
// the shared data.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace mpq::test {

// ../shared beside the repository (models, texts); tests that need it skip when it is missing.
inline std::string shared_dir() { return MPQ_SHARED_DIR; }
inline std::string models_dir() { return MPQ_MODELS_DIR; }
inline std::string default_model() { return models_dir() + "/SmolLM2-135M-Instruct.Q4_1.gguf"; }

// A fresh directory under the system temp dir, named after the running test, removed with its
// content at the end of the test.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string test = info ? std::string(info->test_suite_name()) + "_" + info->name() : "global";
    path_ = std::filesystem::temp_directory_path() /
            ("mpq_" + test + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string path() const { return path_.string(); }
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;  // the directory
};

// n seeded token ids, uniform in [0, vocab): inputs for synthetic models without a tokenizer.
inline std::vector<int32_t> random_ids(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> d(0, vocab - 1);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = d(rng);
  return ids;
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The result of one run of the `mpq` binary.
struct RunResult {
  int status = -1;  // exit status, -1 when killed by a signal
  std::string out, err;
};

// Runs `mpq ARGS` (ARGS already shell-quoted), capturing stdout and stderr in `tmp`; in the
// directory `cwd` when given, after the shell commands `prefix` (e.g. "ulimit -f 64;").
inline RunResult run_mpq(const std::string& args, const TempDir& tmp, const std::string& cwd = "",
                         const std::string& prefix = "") {
  const std::string out = tmp.file("stdout.txt"), err = tmp.file("stderr.txt");
  std::string cmd = std::string("'") + MPQ_BINARY + "' " + args + " >'" + out + "' 2>'" + err + "'";
  if (!prefix.empty()) cmd = prefix + " exec " + cmd;
  if (!cwd.empty()) cmd = "cd '" + cwd + "' && " + cmd;
  const int rc = std::system(cmd.c_str());
  RunResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

// A refusal as the CLI must print it: exit 1, one line "mpq: error: ..." naming `path` and saying
// `phrase` (progress lines may come before it).
inline void expect_one_line_error(const RunResult& r, const std::string& path, const std::string& phrase) {
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(phrase), std::string::npos) << r.err;
  const size_t at = r.err.find("mpq: error: ");
  ASSERT_NE(at, std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n', at), r.err.size() - 1) << "more than one line: " << r.err;
}

// n values ~ N(0, sigma²), seeded (mt19937_64).
inline std::vector<float> gaussian(size_t n, uint64_t seed, float sigma = 1.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// n values sigma * Student-t with 2 degrees of freedom (infinite variance: a few large outliers
// per group), seeded (mt19937_64).
inline std::vector<float> heavy_tailed(size_t n, uint64_t seed, float sigma) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<float> d(2.f);
  std::vector<float> v(n);
  for (float& x : v) x = sigma * d(rng);
  return v;
}

}  // namespace mpq::test
