// measure -> plan -> apply, end to end through the CLI on the tiny real model.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mpq/model.h"
#include "test_util.h"

namespace fs = std::filesystem;
using mpq::test::run_mpq;
using mpq::test::TempDir;

TEST(PlanApply, AnalyzePlanQuantizeLoad) {
  const std::string model = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
  const std::string text = mpq::test::shared_dir() + "/text/tinystories-sample/tiny.txt";
  if (!fs::exists(model)) GTEST_SKIP() << "shared data not found: " << model;
  TempDir tmp;
  auto r = run_mpq("analyze '" + model + "' --calib '" + text +
                       "' --calib-samples 2 --calib-len 64 --methods fisher --quiet --out '" + tmp.file("s.json") + "'",
                   tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  r = run_mpq("plan '" + tmp.file("s.json") + "' --method knapsack --bits 4.5 --formats int4_g32,int2_g32,int8_channel --out '" +
                  tmp.file("plan.json") + "'",
              tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  r = run_mpq("quantize '" + model + "' --plan '" + tmp.file("plan.json") + "' --out '" + tmp.file("q") + "' --json", tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto report = nlohmann::json::parse(r.out);
  std::ifstream in(tmp.file("plan.json"));
  const auto plan = nlohmann::json::parse(in);
  // The applied model has exactly the plan's formats and its exact bits per weight.
  EXPECT_DOUBLE_EQ(report["bits_per_weight"].get<double>(), plan["bits_per_weight"].get<double>());
  mpq::LoadOptions options;
  options.need_tokenizer = false;
  mpq::Model q = mpq::load_model(tmp.file("q"), options);
  for (const auto& layer : q.layers) {
    for (const auto& linear : layer.linear) {
      EXPECT_EQ(linear.weights->format_name(), plan["tensors"][linear.name]["format"].get<std::string>()) << linear.name;
    }
  }
  // A plan edited past its budget is refused before any work, naming the plan file.
  auto edited = plan;
  for (auto& [name, entry] : edited["tensors"].items()) entry["format"] = "int8_channel";
  std::ofstream(tmp.file("over.json")) << edited.dump();
  r = run_mpq("quantize '" + model + "' --plan '" + tmp.file("over.json") + "' --out '" + tmp.file("q2") + "'", tmp);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find(tmp.file("over.json")), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp.file("q2")));
}

TEST(PlanApply, ParetoWritesPlansAndAFrontier) {
  const std::string model = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
  const std::string text = mpq::test::shared_dir() + "/text/tinystories-sample/tiny.txt";
  if (!fs::exists(model)) GTEST_SKIP() << "shared data not found: " << model;
  TempDir tmp;
  auto r = run_mpq("analyze '" + model + "' --calib '" + text +
                       "' --calib-samples 2 --calib-len 32 --methods fisher --formats int8_channel,int4_g32,int2_g32 "
                       "--quiet --out '" + tmp.file("s.json") + "'",
                   tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  r = run_mpq("pareto '" + tmp.file("s.json") + "' --method knapsack --bits-range 3:8:1 --out '" + tmp.file("p") + "'", tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream csv(tmp.file("p/frontier.csv"));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "budget_bits_per_weight,bits_per_weight,linear_bytes,predicted_objective,plan");
  double last_objective = 1e300;
  int rows = 0;
  while (std::getline(csv, line)) {
    double budget, bpw, objective;
    unsigned long long bytes;
    char plan[64];
    ASSERT_EQ(std::sscanf(line.c_str(), "%lf,%lf,%llu,%lf,%63s", &budget, &bpw, &bytes, &objective, plan), 5) << line;
    EXPECT_LE(bpw, budget + 1e-9);
    EXPECT_LE(objective, last_objective + 1e-12);  // more bits never cost more (optimal plans)
    last_objective = objective;
    EXPECT_TRUE(fs::exists(tmp.file(std::string("p/") + plan))) << plan;
    ++rows;
  }
  EXPECT_GE(rows, 5);  // 3..8 bits; the smallest budgets may be infeasible
  EXPECT_NE(mpq::test::slurp(tmp.file("p/frontier.svg")).find("<polyline"), std::string::npos);
  r = run_mpq("pareto '" + tmp.file("s.json") + "' --method knapsack --bits-range 8:3:1 --out '" + tmp.file("q") + "'", tmp);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--bits-range"), std::string::npos) << r.err;
}
