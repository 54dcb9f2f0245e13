// `mpq auto` end to end on stories260K (auto/auto.h): analysis, candidates, quantization,
// evaluation, the strict run.json, the report (parsed as XHTML, every figure present, every table
// number equal to run.json), --resume with the same and with other settings, a GGUF output for
// llama.cpp, and `mpq pareto --measure` (its numbers equal `mpq ppl --kl-base` on the same model).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "report/report.h"
#include "report/run_file.h"
#include "test_util.h"
#include "xml_util.h"

namespace {

namespace fs = std::filesystem;
using mpq::test::run_mpq;
using mpq::test::slurp;
using mpq::test::TempDir;
using mpq::test::Xml;
using nlohmann::json;

const std::string kGguf = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
const std::string kTiny = mpq::test::shared_dir() + "/text/tinystories-sample/tiny.txt";

std::string q(const std::string& s) { return "'" + s + "'"; }

// Small everything: 4 calibration sequences of 64 tokens, 4 evaluation chunks of 64 tokens, no
// analysis cache (each test measures what it checks).
std::string small_settings() {
  return " --calib " + q(kTiny) + " --calib-samples 4 --calib-len 64 --eval-text " + q(kTiny) +
         " --eval-chunks 4 --eval-ctx 64 --cache ''";
}

bool have_data() { return fs::exists(kGguf) && fs::exists(kTiny); }

TEST(Auto, EndToEndReportMatchesRunJsonAndResumes) {
  if (!have_data()) GTEST_SKIP() << "stories260K or tiny.txt missing under " << mpq::test::shared_dir();
  TempDir tmp;
  const std::string out = tmp.file("best");
  const std::string args = "auto " + q(kGguf) + " --bits 4.5 --target mpq --methods knapsack,channels,rule,uniform" +
                           small_settings() + " --out " + q(out);
  const auto r = run_mpq(args, tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string run_dir = out + ".run";
  EXPECT_NE(r.out.find("report: " + out + "/report.html"), std::string::npos) << r.out;
  // Progress throughout: a line per candidate step, with the time left once one was measured.
  EXPECT_NE(r.err.find("[auto] 1/"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(" left)"), std::string::npos) << r.err;

  // run.json: strictly valid, written through the report's writer; the lowest-KLD done candidate kept.
  const mpq::RunRecord run = mpq::read_run_file(run_dir + "/run.json");
  const json run_j = json::parse(slurp(run_dir + "/run.json"));
  EXPECT_EQ(mpq::run_to_json(run), run_j);
  EXPECT_EQ(run.target, "mpq");
  EXPECT_EQ(run.budget_bits_per_weight, 4.5);
  size_t done = 0;
  for (const auto& c : run.candidates) {
    if (!c.done()) continue;
    ++done;
    EXPECT_LE(*run.chosen_candidate().kld_mean, *c.kld_mean) << c.name;
    EXPECT_LE(*c.bits_per_weight, 4.5 + 1e-9) << c.name;  // every candidate within the budget
    EXPECT_TRUE(fs::exists(run_dir + "/" + c.model)) << c.name;
    EXPECT_TRUE(fs::exists(run_dir + "/" + c.plan)) << c.name;  // uniform schemes too (as applied)
    // The row is the candidate's measurement file, number for number.
    const json e = json::parse(slurp(run_dir + "/evals/" + c.name + ".json"));
    EXPECT_EQ(e["kld_mean"].get<double>(), *c.kld_mean) << c.name;
    EXPECT_EQ(e["ppl"].get<double>(), *c.ppl) << c.name;
    EXPECT_EQ(e["file_bytes"].get<uint64_t>(), *c.file_bytes) << c.name;
  }
  EXPECT_GE(done, 3u);  // knapsack, channels and at least one uniform scheme
  EXPECT_TRUE(std::any_of(run.candidates.begin(), run.candidates.end(), [](const auto& c) { return c.kind == "uniform"; }));
  EXPECT_EQ(run.commands.size(), 2u);
  EXPECT_NE(run.commands[0].find("'auto'"), std::string::npos);

  // OUT: the kept model and the report, the same bytes as the run directory's.
  const std::string html = slurp(out + "/report.html");
  EXPECT_EQ(html, slurp(run_dir + "/report.html"));
  EXPECT_EQ(html, mpq::render_report(run_dir));
  EXPECT_TRUE(fs::exists(out + "/config.json"));
  EXPECT_EQ(slurp(out + "/model.safetensors"), slurp(run_dir + "/" + run.chosen_candidate().model + "/model.safetensors"));

  // The report: valid XHTML with every figure, the table equal to run.json.
  Xml x(html);
  ASSERT_TRUE(x.ok()) << x.errors;
  for (const char* id : {"outcome", "candidates", "fig-frontier", "fig-allocation", "fig-bits-per-layer", "fig-sensitivity",
                         "sensitive-tensors", "fig-salience-kind", "fig-salience-layer", "fig-salience-tensor",
                         "shapley-omitted", "commands-list", "inputs"}) {
    EXPECT_EQ(x.find(std::string("//*[@id='") + id + "']").size(), 1u) << id;
  }
  EXPECT_EQ(x.find("//h:figure[not(h:figcaption)]").size(), 0u);
  EXPECT_EQ(x.find("//s:svg").size(), 7u);
  mpq::test::expect_table_matches_run(x, run_j);
  // The frontier marks every done candidate with its KLD.
  for (const auto& c : run.candidates) {
    EXPECT_EQ(x.find("//*[@id='fig-frontier']//s:title[starts-with(., '" + c.name + " (')]").size(), c.done() ? 1u : 0u)
        << c.name;
  }

  // Without --resume an existing run is refused; with it and the same settings nothing is measured
  // again and the same model is kept; with another budget it is refused, naming the run directory.
  mpq::test::expect_one_line_error(run_mpq(args, tmp), run_dir, "--resume");
  const std::string before = slurp(run_dir + "/evals/" + run.chosen + ".json");
  const auto again = run_mpq(args + " --resume", tmp);
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.err.find("measured earlier"), std::string::npos) << again.err;
  EXPECT_EQ(again.err.find("quantizing"), std::string::npos) << again.err;
  EXPECT_EQ(slurp(run_dir + "/evals/" + run.chosen + ".json"), before);
  EXPECT_EQ(json::parse(slurp(run_dir + "/run.json")), run_j);
  const std::string other = std::regex_replace(args, std::regex("--bits 4.5"), "--bits 4") + " --resume";
  mpq::test::expect_one_line_error(run_mpq(other, tmp), run_dir, "other settings (differing: budget");
  EXPECT_EQ(json::parse(slurp(run_dir + "/run.json")), run_j);

  // A directory that is not a run is never written into.
  fs::create_directories(tmp.file("mine"));
  std::ofstream(tmp.file("mine/notes.txt")) << "mine";
  mpq::test::expect_one_line_error(run_mpq(args + " --work-dir " + q(tmp.file("mine")) + " --force", tmp),
                                   tmp.file("mine"), "not an mpq auto run directory");
  EXPECT_EQ(fs::directory_iterator(tmp.file("mine"))->path().filename(), "notes.txt");
}

TEST(Auto, GgufOutputForLlamaCpp) {
  if (!have_data()) GTEST_SKIP() << "stories260K or tiny.txt missing under " << mpq::test::shared_dir();
  TempDir tmp;
  const std::string out = tmp.file("best.gguf");
  // A .gguf output is for llama.cpp only.
  mpq::test::expect_one_line_error(
      run_mpq("auto " + q(kGguf) + " --bits 5 --target transformers" + small_settings() + " --out " + q(out), tmp),
      "--target", "llama.cpp");
  const auto r = run_mpq("auto " + q(kGguf) + " --bits 8 --methods knapsack,uniform --no-speed" + small_settings() +
                             " --out " + q(out),
                         tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  const mpq::RunRecord run = mpq::read_run_file(out + ".run/run.json");
  EXPECT_EQ(run.target, "llama.cpp");
  for (const auto& c : run.candidates) {
    if (!c.done()) continue;
    EXPECT_EQ(c.model, "candidates/" + c.name + ".gguf");
    EXPECT_FALSE(c.decode_tok_s.has_value());
    // Every tensor in a ggml type the plan chose.
    const json plan = json::parse(slurp(out + ".run/" + c.plan));
    for (const auto& [name, e] : plan["tensors"].items()) {
      EXPECT_TRUE(std::regex_match(e["format"].get<std::string>(), std::regex("q[0-9]_.*|iq4_.*|bf16|f16"))) << name;
    }
  }
  EXPECT_EQ(slurp(out), slurp(out + ".run/" + run.chosen_candidate().model));
  const std::string report = tmp.file("best.report.html");
  ASSERT_TRUE(fs::exists(report));
  EXPECT_EQ(slurp(report), mpq::render_report(out + ".run"));
  Xml x(slurp(report));
  ASSERT_TRUE(x.ok()) << x.errors;
  mpq::test::expect_table_matches_run(x, json::parse(slurp(out + ".run/run.json")));
  // The written model loads and runs.
  const auto info = run_mpq("ppl " + q(out) + " --text " + q(kTiny) + " --ctx 64 --chunks 2", tmp);
  EXPECT_EQ(info.status, 0) << info.err;
}

TEST(Auto, ParetoMeasureEqualsPplOfTheWrittenModels) {
  if (!have_data()) GTEST_SKIP() << "stories260K or tiny.txt missing under " << mpq::test::shared_dir();
  TempDir tmp;
  const std::string s = tmp.file("S.json");
  auto r = run_mpq("analyze " + q(kGguf) + " --calib " + q(kTiny) +
                       " --calib-samples 4 --calib-len 64 --quiet --methods fisher --out " + q(s),
                   tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string dir = tmp.file("pareto");
  r = run_mpq("pareto " + q(s) + " --method knapsack --bits-range 4:6:2 --target mpq --measure --no-speed --calib " +
                  q(kTiny) + " --calib-samples 4 --calib-len 64 --eval-text " + q(kTiny) +
                  " --eval-chunks 4 --eval-ctx 64 --out " + q(dir),
              tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("[measure] 2/2"), std::string::npos) << r.err;
  std::istringstream csv(slurp(dir + "/frontier.csv"));
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header,
            "budget_bits_per_weight,bits_per_weight,linear_bytes,predicted_objective,plan,model,file_bytes,ppl,kld_mean,"
            "kld_p99,top1_agree,decode_tok_s,status");
  int rows = 0;
  for (std::string line; std::getline(csv, line);) {
    std::vector<std::string> f;
    std::stringstream ls(line);
    for (std::string v; std::getline(ls, v, ',');) f.push_back(v);
    ASSERT_GE(f.size(), 12u) << line;
    EXPECT_EQ(f.back(), "done") << line;
    ++rows;
    // The same model evaluated by `mpq ppl --kl-base` against the sweep's reference gives the same numbers.
    const auto p = run_mpq("ppl " + q(dir + "/" + f[5]) + " --text " + q(kTiny) + " --ctx 64 --chunks 4 --kl-base " +
                               q(dir + "/reference.logits") + " --json",
                           tmp);
    ASSERT_EQ(p.status, 0) << p.err;
    const json j = json::parse(p.out);
    EXPECT_NEAR(j["ppl"].get<double>(), std::stod(f[7]), 1e-6 * std::stod(f[7])) << line;
    EXPECT_NEAR(j["kld_mean"].get<double>(), std::stod(f[8]), 1e-6 * std::stod(f[8]) + 1e-9) << line;
  }
  EXPECT_EQ(rows, 2);
  Xml x(slurp(dir + "/measured.svg"));
  ASSERT_TRUE(x.ok()) << x.errors;
  EXPECT_EQ(x.find("//s:circle[s:title[contains(., 'bits/weight: KLD mean')]]").size(), 2u);
}

}  // namespace
