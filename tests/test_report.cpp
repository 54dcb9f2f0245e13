// The SVG plotting module (report/svg.h) and the HTML report of an `mpq auto` run
// (report/report.h, `mpq report`): primitives (ticks, log scales, escaping, palettes), charts that
// parse as XML with hover titles, and a report built from a real run directory — `mpq analyze`
// and `mpq plan` on stories260K, a run.json whose measurements are made up here — checked as XML,
// figure by figure, number by number, for network references and for the strict run-file reader.
#include <gtest/gtest.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "mpq/error.h"
#include "report/report.h"
#include "report/run_file.h"
#include "report/svg.h"
#include "test_util.h"
#include "xml_util.h"

namespace {

namespace fs = std::filesystem;
using mpq::test::run_mpq;
using mpq::test::slurp;
using mpq::test::TempDir;
using nlohmann::json;
using mpq::test::attr;
using mpq::test::parse_display;
using mpq::test::text_of;
using mpq::test::Xml;

// ---------------------------------------------------------------------------------------------
// SVG primitives

TEST(Svg, EscapesMarkupControlCharactersAndBadUtf8) {
  // The checker itself: broken nesting and an undeclared prefix are errors.
  EXPECT_FALSE(Xml("<a><b></a>").ok());
  EXPECT_FALSE(Xml("<a><x:b/></a>").ok());
  EXPECT_FALSE(Xml("<a>&nbsp;</a>").ok());  // an HTML entity XML does not know
  EXPECT_TRUE(Xml("<a>&#160;</a>").ok());
  EXPECT_EQ(mpq::svg::escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
  EXPECT_EQ(mpq::svg::escape("é ⁻ 𝄞"), "é ⁻ 𝄞");  // well-formed UTF-8 passes through
  EXPECT_EQ(mpq::svg::escape(std::string("x\x01y")), "x\xEF\xBF\xBDy");          // control character
  EXPECT_EQ(mpq::svg::escape(std::string("x\xFFy")), "x\xEF\xBF\xBDy");          // not UTF-8
  EXPECT_EQ(mpq::svg::escape(std::string("\xC3")), "\xEF\xBF\xBD");              // truncated sequence
  EXPECT_EQ(mpq::svg::escape(std::string("\xE0\x80\x80")), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong
  EXPECT_EQ(mpq::svg::escape("tab\tnew\nline"), "tab\tnew\nline");
  // Whatever goes in, an element built with it parses.
  std::string nasty;
  for (int c = 1; c < 256; ++c) nasty += static_cast<char>(c);
  Xml x("<t>" + mpq::svg::escape(nasty) + "</t>");
  EXPECT_TRUE(x.ok()) << x.errors;
}

TEST(Svg, FormatsNumbersCompactly) {
  using mpq::svg::format_number;
  EXPECT_EQ(format_number(0), "0");
  EXPECT_EQ(format_number(2.0), "2");
  EXPECT_EQ(format_number(0.012345, 3), "0.0123");
  EXPECT_EQ(format_number(-0.5), "-0.5");
  EXPECT_EQ(format_number(13.2456, 5), "13.246");
  EXPECT_EQ(format_number(1.5e-5), "1.5×10⁻⁵");
  EXPECT_EQ(format_number(1e-6), "10⁻⁶");
  EXPECT_EQ(format_number(2.5e7), "2.5×10⁷");
  EXPECT_DOUBLE_EQ(parse_display(format_number(1.234e-4, 4)), 1.234e-4);
  EXPECT_DOUBLE_EQ(parse_display(format_number(1e-6)), 1e-6);
}

TEST(Svg, LinearTicksAreNiceAndInside) {
  const auto t = mpq::svg::linear_ticks(0, 1);
  ASSERT_EQ(t.size(), 6u);
  EXPECT_EQ(t.front().label, "0.0");
  EXPECT_EQ(t[1].label, "0.2");
  EXPECT_EQ(t.back().label, "1.0");
  // Ranges of many scales and signs: ticks inside, evenly spaced by 1, 2 or 5 × 10^k, 2..12 of
  // them, distinct labels.
  for (double lo : {-7.3, -0.004, 0.0, 0.1234, 3.0, 1234.5}) {
    for (double span : {1e-3, 0.07, 1.0, 9.9, 250.0, 1e5}) {
      const double hi = lo + span;
      const auto ticks = mpq::svg::linear_ticks(lo, hi);
      ASSERT_GE(ticks.size(), 2u) << lo << " " << hi;
      EXPECT_LE(ticks.size(), 12u) << lo << " " << hi;
      const double step = ticks[1].value - ticks[0].value;
      const double mant = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
      EXPECT_TRUE(std::fabs(mant - 1) < 1e-6 || std::fabs(mant - 2) < 1e-6 || std::fabs(mant - 5) < 1e-6) << step;
      std::set<std::string> labels;
      for (size_t i = 0; i < ticks.size(); ++i) {
        EXPECT_GE(ticks[i].value, lo - 1e-9 * span);
        EXPECT_LE(ticks[i].value, hi + 1e-9 * span);
        if (i > 0) {
          EXPECT_NEAR(ticks[i].value - ticks[i - 1].value, step, 1e-9 * span);
        }
        labels.insert(ticks[i].label);
      }
      EXPECT_EQ(labels.size(), ticks.size()) << lo << " " << hi;
    }
  }
}

TEST(Svg, LogTicksAndScale) {
  std::vector<double> labelled;
  for (const auto& t : mpq::svg::log_ticks(1e-5, 1)) {
    if (!t.label.empty()) labelled.push_back(t.value);
  }
  ASSERT_EQ(labelled.size(), 6u);
  for (size_t i = 0; i < labelled.size(); ++i) EXPECT_NEAR(labelled[i], std::pow(10.0, -5.0 + i), 1e-18);
  // Less than 3 decades: 1, 2, 5 labelled.
  std::vector<std::string> labels;
  for (const auto& t : mpq::svg::log_ticks(2, 30)) {
    if (!t.label.empty()) labels.push_back(t.label);
  }
  EXPECT_EQ(labels, (std::vector<std::string>{"2", "5", "10", "20"}));
  // Many decades: every k-th labelled, never more than target + 1 labels.
  int n = 0;
  for (const auto& t : mpq::svg::log_ticks(1e-12, 1e3, 6)) n += !t.label.empty();
  EXPECT_LE(n, 7);
  EXPECT_GE(n, 4);
  EXPECT_EQ(mpq::svg::nice_log_domain(0.003, 0.2), std::make_pair(0.001, 1.0));
  EXPECT_EQ(mpq::svg::nice_log_domain(2.5, 7), std::make_pair(2.0, 10.0));
  const mpq::svg::Scale log{1, 100, 0, 200, true};
  EXPECT_NEAR(log(10), 100, 1e-9);
  EXPECT_NEAR(log(1), 0, 1e-9);
  EXPECT_NEAR(log(100), 200, 1e-9);
  const mpq::svg::Scale lin{0, 4, 100, 0, false};  // inverted pixel range (y axes)
  EXPECT_NEAR(lin(1), 75, 1e-9);
}

TEST(Svg, PalettesAreDistinctAndReadable) {
  EXPECT_EQ(mpq::svg::viridis(0), "#440154");
  EXPECT_EQ(mpq::svg::viridis(1), "#fde725");
  EXPECT_EQ(mpq::svg::viridis(2), "#fde725");  // clamped
  EXPECT_EQ(mpq::svg::okabe_ito().size(), 8u);
  for (size_t n : {2u, 5u, 8u, 12u}) {
    std::set<std::string> colours;
    for (size_t i = 0; i < n; ++i) colours.insert(mpq::svg::categorical(i, n));
    EXPECT_EQ(colours.size(), n);
  }
  EXPECT_EQ(mpq::svg::text_colour_on("#440154"), "#ffffff");
  EXPECT_EQ(mpq::svg::text_colour_on("#fde725"), "#000000");
  EXPECT_EQ(mpq::svg::diverging(0), "#f2f2f2");
}

TEST(Svg, ChartsParseAsXmlWithAHoverTitleOnEveryMark) {
  mpq::svg::XYChart c;
  c.id = "t1";
  c.x.label = "x <&> label";
  c.y.log = true;
  mpq::svg::Series s{"series \"a\"", "#0072b2", mpq::svg::Marker::Diamond, true, true, false, {}};
  s.points = {{1, 0.01, mpq::svg::kNaN, mpq::svg::kNaN, "p<1>", "hover & more", false},
              {2, 0.1, 0.05, 0.2, "p2", "", true},
              {3, -1, mpq::svg::kNaN, mpq::svg::kNaN, "not drawn on a log axis", "", false}};
  c.series.push_back(s);
  Xml x(mpq::svg::render(c));
  ASSERT_TRUE(x.ok()) << x.errors;
  EXPECT_EQ(x.find("//s:polygon[s:title]").size(), 2u);  // two drawable points, each with its hover
  EXPECT_EQ(x.find("//s:title[.='hover & more']").size(), 1u);
  EXPECT_EQ(x.find("//s:text[.='p<1>']").size(), 1u);
  EXPECT_EQ(x.find("//s:text[.='not drawn on a log axis']").size(), 0u);

  mpq::svg::BarChart b;
  b.categories = {"a", "b", "c"};
  b.series.push_back({"one", "#0072b2", {1, 2, 3}, {0.5, 1.5, 2.5}, {1.5, 2.5, 3.5}, {}});
  b.series.push_back({"two", "#e69f00", {1, mpq::svg::kNaN, 2}, {}, {}, {}});
  Xml xb(mpq::svg::render(b));
  ASSERT_TRUE(xb.ok()) << xb.errors;
  EXPECT_EQ(xb.find("//s:rect[s:title]").size(), 5u);  // one per finite bar

  mpq::svg::TileGrid g;
  g.has_colour_bar = true;
  g.colour_bar = {"cost", 1e-4, 1, true, false};
  mpq::svg::TilePanel p;
  p.row_labels = {"q", "k"};
  p.col_labels = {"0", "1", "2"};
  p.tiles.assign(2, std::vector<mpq::svg::Tile>(3));
  for (auto& row : p.tiles) {
    for (auto& t : row) t = {g.colour_bar.colour(0.01), "", 0, "", "tile"};
  }
  p.tiles[1][2] = {"", "", 0, "", "missing"};
  g.panels = {p, p};
  Xml xg(mpq::svg::render(g));
  ASSERT_TRUE(xg.ok()) << xg.errors;
  EXPECT_EQ(xg.find("//s:g[s:title='tile']").size(), 10u);
  EXPECT_EQ(xg.find("//s:g[s:title='missing']").size(), 2u);
  EXPECT_EQ(g.colour_bar.colour(0), "");  // not on a log scale
  EXPECT_EQ(g.colour_bar.colour(1e-4), "#440154");
}

TEST(ReportCli, RefusesWhatIsNotARunDirectory) {
  TempDir tmp;
  mpq::test::expect_one_line_error(run_mpq("report " + tmp.file("nowhere"), tmp), tmp.file("nowhere"), "not a directory");
  fs::create_directories(tmp.file("empty"));
  mpq::test::expect_one_line_error(run_mpq("report " + tmp.file("empty"), tmp), tmp.file("empty") + "/run.json", "");
  EXPECT_FALSE(fs::exists(tmp.file("empty") + "/report.html"));
}

// ---------------------------------------------------------------------------------------------
// A real run directory

const std::string kGguf = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
const std::string kTiny = mpq::test::shared_dir() + "/text/tinystories-sample/tiny.txt";

std::string q(const std::string& s) { return "'" + s + "'"; }

// Runs `mpq ARGS` and fails the test on a non-zero exit.
void must_run(const std::string& args, const TempDir& tmp) {
  const auto r = run_mpq(args, tmp);
  ASSERT_EQ(r.status, 0) << args << "\n" << r.err;
}

// run.json of a run in `dir` whose sensitivity file and plans exist; measurements made up.
json make_run_json(const std::string& dir, const std::string& chosen, bool with_plans) {
  const json s = json::parse(slurp(dir + "/sensitivity.json"));
  json candidates = json::array();
  const auto row = [](const std::string& name, const std::string& kind, const std::string& method, double bpw,
                      uint64_t bytes, double ppl, double kld, double p99, double top1, const json& tok_s) {
    return json{{"name", name},         {"kind", kind},       {"method", method},
                {"model", "candidates/" + name},              {"status", "done"},
                {"bits_per_weight", bpw}, {"file_bytes", bytes}, {"ppl", ppl},
                {"kld_mean", kld},      {"kld_p99", p99},     {"top1_agree", top1},
                {"decode_tok_s", tok_s}, {"seconds", {{"quantize", 3.25}, {"evaluate", 1.5}}}};
  };
  if (with_plans) {
    const json k = json::parse(slurp(dir + "/plans/knapsack-fisher.json"));
    const json c = json::parse(slurp(dir + "/plans/channels.json"));
    json a = row("knapsack-fisher", "plan", "knapsack", k["bits_per_weight"], 412345, 20.123456, 0.0123456789, 0.145, 0.9123, 812.5);
    a["cost"] = "fisher";
    a["plan"] = "plans/knapsack-fisher.json";
    json b = row("channels", "plan", "channels", c["bits_per_weight"], 412399, 20.5, 0.0150001, 0.17, 0.905, nullptr);
    b["cost"] = "salience";
    b["plan"] = "plans/channels.json";
    candidates.push_back(a);
    candidates.push_back(b);
  }
  json u = row("uniform-int4_g128", "uniform", "uniform", 4.3125, 410000, 21.75, 0.0201, 0.22, 0.88, 790.25);
  u["scheme"] = "int4_g128:gptq";
  candidates.push_back(u);
  json u2 = row("uniform-int8_channel", "uniform", "uniform", 8.25, 520000, 19.9, 0.00042, 0.004, 0.991, 700.0);
  u2["scheme"] = "int8_channel:rtn";
  candidates.push_back(u2);
  json l = row("llama.cpp-Q4_K_M", "llama.cpp", "Q4_K_M", 4.89, 430000, 20.9, 0.0181, 0.2, 0.9, 950.0);
  l["model"] = "candidates/model-Q4_K_M.gguf";
  candidates.push_back(l);
  candidates.push_back({{"name", "tiers-fisher"}, {"kind", "plan"}, {"method", "tiers"}, {"cost", "fisher"},
                        {"plan", "plans/tiers-fisher.json"}, {"model", ""}, {"status", "failed: no plan fits the budget"}});
  return {{"format", "mpq-auto-run"},
          {"version", 1},
          {"model", {{"path", kGguf}, {"arch", "llama"}, {"parameters", 260032}, {"linear_weights", 226560}, {"identity", s["model"]}}},
          {"budget", {{"bits_per_weight", 4.5}}},
          {"target", "mpq"},
          {"calibration", {{"files", {kTiny}}, {"samples", 4}, {"len", 64}, {"seed", 0}}},
          {"evaluation", {{"text", kTiny}, {"protocol", "mpq ppl --kl-base"}, {"ctx", 64}, {"chunks", 4}}},
          {"reference", {{"ppl", 19.75}, {"file_bytes", 1185376}}},
          {"sensitivity", "sensitivity.json"},
          {"candidates", candidates},
          {"chosen", chosen},
          {"commands", {"mpq auto " + kGguf + " --bits 4.5 --out run", "mpq report run <&>"}}};
}

// Run directories: `run` (fisher, output, channels; plans; a plan kept), built once for the
// suite, and `run_shapley` (kld and shapley on three formats; a uniform scheme kept).
class ReportRun : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(kGguf) || !fs::exists(kTiny)) return;
    have_data_ = true;
    root_ = new TempDirHolder();
    const std::string run = root_->dir.file("run");
    fs::create_directories(run + "/plans");
    const std::string calib = " --calib " + q(kTiny) + " --calib-samples 4 --calib-len 64 --quiet";
    must_run("analyze " + q(kGguf) + calib + " --methods fisher,output,channels --out " + q(run + "/sensitivity.json"),
             root_->dir);
    must_run("plan " + q(run + "/sensitivity.json") + " --method knapsack --bits 4.5 --out " +
                 q(run + "/plans/knapsack-fisher.json"),
             root_->dir);
    must_run("plan " + q(run + "/sensitivity.json") + " --method channels --bits 4.5 --target mpq --out " +
                 q(run + "/plans/channels.json"),
             root_->dir);
    std::ofstream(run + "/run.json") << make_run_json(run, "knapsack-fisher", true).dump(1);
    setup_ok_ = true;
  }
  // The second run directory, made by the one test that needs it (ctest runs every test in a
  // process of its own, each setting the suite up again).
  static std::string make_run2() {
    const std::string run2 = root_->dir.file("run_shapley");
    fs::create_directories(run2);
    must_run("analyze " + q(kGguf) + " --calib " + q(kTiny) +
                 " --calib-samples 4 --calib-len 64 --quiet --methods fisher,kld,shapley"
                 " --formats int8_channel,int4_g128,int2_g64 --heldout-samples 2 --heldout-len 64"
                 " --shapley-permutations 8 --out " + q(run2 + "/sensitivity.json"),
             root_->dir);
    std::ofstream(run2 + "/run.json") << make_run_json(run2, "uniform-int4_g128", false).dump(1);
    return run2;
  }
  static void TearDownTestSuite() {
    delete root_;
    root_ = nullptr;
  }
  void SetUp() override {
    if (!have_data_) GTEST_SKIP() << "stories260K or tiny.txt missing under " << mpq::test::shared_dir();
    // A failed suite set-up must fail every test (ctest would report a skip otherwise).
    ASSERT_TRUE(setup_ok_) << "the shared run directory could not be made (see the set-up failure above)";
  }
  static std::string run_dir() { return root_->dir.file("run"); }
  // A copy of `src` in `tmp` (tests that change files must not touch the shared run).
  static std::string copy_run(const std::string& src, const TempDir& tmp) {
    const std::string dst = tmp.file("copy");
    fs::copy(src, dst, fs::copy_options::recursive);
    return dst;
  }

 private:
  struct TempDirHolder {
    TempDir dir;
  };
  static TempDirHolder* root_;
  static bool have_data_, setup_ok_;
};
ReportRun::TempDirHolder* ReportRun::root_ = nullptr;
bool ReportRun::have_data_ = false;
bool ReportRun::setup_ok_ = false;

TEST_F(ReportRun, IsValidXhtmlWithEveryFigure) {
  TempDir tmp;
  const std::string dir = copy_run(run_dir(), tmp);
  const auto r = run_mpq("report " + q(dir), tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, dir + "/report.html\n");
  const std::string html = slurp(dir + "/report.html");
  Xml x(html);
  ASSERT_TRUE(x.ok()) << x.errors;
  for (const char* id : {"fig-frontier", "fig-allocation", "fig-bits-per-layer", "fig-sensitivity", "fig-salience-kind",
                         "fig-salience-layer", "fig-salience-tensor", "candidates", "sensitive-tensors", "commands-list",
                         "shapley-omitted", "inputs", "outcome"}) {
    EXPECT_EQ(x.find(std::string("//*[@id='") + id + "']").size(), 1u) << id;
  }
  EXPECT_EQ(x.find("//s:svg").size(), 7u);  // every figure an inline SVG in the SVG namespace
  // Every figure has a caption; the allocation map shows channel-split tensors of the other plan?
  // No: the kept plan is knapsack (no splits), so no split band in its legend.
  EXPECT_EQ(x.find("//h:figure[not(h:figcaption)]").size(), 0u);
  // Ids are unique across the page (several inline SVGs share one id space).
  std::set<std::string> ids;
  for (xmlNodePtr n : x.find("//*[@id]")) EXPECT_TRUE(ids.insert(attr(n, "id")).second) << attr(n, "id");
  // The same files give the same bytes.
  EXPECT_EQ(mpq::render_report(dir), html);
}

TEST_F(ReportRun, ShapleyRunDrawsShapleyAndInteractions) {
  const std::string run2 = make_run2();
  const std::string html = mpq::render_report(run2);
  Xml x(html);
  ASSERT_TRUE(x.ok()) << x.errors;
  for (const char* id : {"fig-shapley", "fig-interactions", "interactions", "fig-sensitivity", "fig-allocation",
                         "salience-omitted"}) {
    EXPECT_EQ(x.find(std::string("//*[@id='") + id + "']").size(), 1u) << id;
  }
  // The sensitivity heatmap uses the best cost measured: kld.
  EXPECT_NE(html.find("Cost used: <b>kld"), std::string::npos);
  // 5 layer players × 2 series of bars, each with an error bar and hover text naming the player.
  const json s = json::parse(slurp(run2 + "/sensitivity.json"));
  const auto values = s["shapley"]["estimate"]["value"];
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string player = s["shapley"]["players"][i];
    const auto bars = x.find("//*[@id='fig-shapley']//s:rect/s:title[starts-with(., '" + player + " · Shapley value')]");
    ASSERT_EQ(bars.size(), 1u) << player;
    EXPECT_NE(text_of(bars[0]).find(mpq::svg::format_number(values[i].get<double>(), 4)), std::string::npos);
  }
  // The uniform kept model's allocation: every tensor in int4_g128.
  EXPECT_EQ(x.find("//*[@id='fig-allocation']//s:g/s:title[contains(., ': int4_g128, ')]").size(),
            s["tensors"].size());
}

TEST_F(ReportRun, TableNumbersEqualRunJson) {
  const std::string html = mpq::render_report(run_dir());
  Xml x(html);
  ASSERT_TRUE(x.ok()) << x.errors;
  mpq::test::expect_table_matches_run(x, json::parse(slurp(run_dir() + "/run.json")));
}

TEST_F(ReportRun, FiguresCarryValuesOnHover) {
  const std::string html = mpq::render_report(run_dir());
  Xml x(html);
  ASSERT_TRUE(x.ok()) << x.errors;
  const json run = json::parse(slurp(run_dir() + "/run.json"));
  const json s = json::parse(slurp(run_dir() + "/sensitivity.json"));
  // Frontier: one hover per finished candidate, naming it with its KLD.
  for (const auto& c : run["candidates"]) {
    const auto marks = x.find("//*[@id='fig-frontier']//s:title[starts-with(., '" + c["name"].get<std::string>() + " (')]");
    if (c["status"] != "done") {
      EXPECT_EQ(marks.size(), 0u);
      continue;
    }
    ASSERT_EQ(marks.size(), 1u) << c["name"];
    EXPECT_NE(text_of(marks[0]).find("KLD mean " + mpq::svg::format_number(c["kld_mean"].get<double>(), 4)),
              std::string::npos)
        << text_of(marks[0]);
  }
  // Allocation: one hover per tensor with its format from the plan.
  const json plan = json::parse(slurp(run_dir() + "/plans/knapsack-fisher.json"));
  for (const auto& [name, e] : plan["tensors"].items()) {
    EXPECT_EQ(x.find("//*[@id='fig-allocation']//s:title[starts-with(., '" + name + ": " + e["format"].get<std::string>() +
                     ", ')]").size(),
              1u)
        << name;
  }
  // Sensitivity: a tile per tensor and format, its hover carrying the fisher value of S.json.
  const json t0 = s["tensors"][0];
  for (const auto& [f, v] : t0["fisher"].items()) {
    const std::string want = "layer 0 q_proj · " + f + ": fisher " + mpq::svg::format_number(v.get<double>(), 4);
    EXPECT_EQ(x.find("//*[@id='fig-sensitivity']//s:title[.='" + want + "']").size(), 1u) << want;
  }
  EXPECT_EQ(x.find("//*[@id='fig-sensitivity']//s:g[s:title]").size(), s["tensors"].size() * s["formats"].size());
  // Salience by kind: the summary's counts.
  for (const auto& [kind, e] : s["channels"]["by_kind"].items()) {
    const std::string want = kind + ": " + std::to_string(e["top"].get<int>()) + " of " +
                             std::to_string(e["channels"].get<int>()) + " output channels";
    EXPECT_EQ(x.find("//*[@id='fig-salience-kind']//s:title[starts-with(., '" + want + "')]").size(), 1u) << want;
  }
}

TEST_F(ReportRun, ChannelSplitPlanShowsSplitTiles) {
  TempDir tmp;
  const std::string dir = copy_run(run_dir(), tmp);
  json run = json::parse(slurp(dir + "/run.json"));
  run["chosen"] = "channels";
  std::ofstream(dir + "/run.json") << run.dump(1);
  Xml x(mpq::render_report(dir));
  ASSERT_TRUE(x.ok()) << x.errors;
  const json plan = json::parse(slurp(dir + "/plans/channels.json"));
  size_t split = 0;
  for (const auto& [name, e] : plan["tensors"].items()) split += e.contains("high_channels");
  ASSERT_GT(split, 0u);
  // Each split tensor's hover says how many channels are high.
  EXPECT_EQ(x.find("//*[@id='fig-allocation']//s:title[contains(., ' output channels (')]").size(), split);
  EXPECT_EQ(x.find("//*[@id='fig-allocation']//s:text[starts-with(., 'channel split')]").size(), 1u);
}

TEST_F(ReportRun, LlamaCppKeptModelHasNoAllocationAndSaysWhy) {
  TempDir tmp;
  const std::string dir = copy_run(run_dir(), tmp);
  json run = json::parse(slurp(dir + "/run.json"));
  run["chosen"] = "llama.cpp-Q4_K_M";
  std::ofstream(dir + "/run.json") << run.dump(1);
  Xml x(mpq::render_report(dir));
  ASSERT_TRUE(x.ok()) << x.errors;
  EXPECT_EQ(x.find("//*[@id='allocation-omitted']").size(), 1u);
  EXPECT_EQ(x.find("//*[@id='fig-allocation']").size(), 0u);
  EXPECT_EQ(x.find("//*[@id='fig-bits-per-layer']").size(), 0u);
  EXPECT_EQ(x.find("//*[@id='fig-frontier']").size(), 1u);
  EXPECT_EQ(attr(x.find("//h:tr[@data-name='llama.cpp-Q4_K_M']")[0], "class"), "chosen");
}

TEST_F(ReportRun, ReferencesNothingOutside) {
  const std::string html = mpq::render_report(run_dir());
  Xml x(html);
  ASSERT_TRUE(x.ok()) << x.errors;
  for (const char* tag : {"script", "link", "img", "iframe", "object", "embed", "image", "use", "foreignObject"}) {
    EXPECT_EQ(x.find(std::string("//*[local-name()='") + tag + "']").size(), 0u) << tag;
  }
  // The only URLs are the two namespace names; links are in-page anchors; no src attributes.
  size_t http = 0;
  for (size_t at = html.find("http"); at != std::string::npos; at = html.find("http", at + 1)) ++http;
  size_t ns = 0;
  for (const std::string n : {"xmlns=\"http://www.w3.org/1999/xhtml\"", "xmlns=\"http://www.w3.org/2000/svg\""}) {
    for (size_t at = html.find(n); at != std::string::npos; at = html.find(n, at + 1)) ++ns;
  }
  EXPECT_EQ(http, ns);
  EXPECT_EQ(x.find("//@src").size(), 0u);
  for (xmlNodePtr n : x.find("//*[@href]")) EXPECT_EQ(attr(n, "href").rfind("#", 0), 0u) << attr(n, "href");
  EXPECT_EQ(html.find("@import"), std::string::npos);
  EXPECT_EQ(html.find("url("), std::string::npos);
  // Parsed as HTML (what a browser does with .html), a self-closed non-void element would swallow
  // what follows it: there are none outside the SVGs.
  std::string outside_svg;
  for (size_t at = 0;;) {
    const size_t open = html.find("<svg", at);
    outside_svg += html.substr(at, open == std::string::npos ? std::string::npos : open - at);
    if (open == std::string::npos) break;
    at = html.find("</svg>", open) + 6;
  }
  EXPECT_FALSE(std::regex_search(outside_svg, std::regex("<(?!meta|br|hr|col|wbr)[a-z0-9]+\\b[^>]*/>")));
}

TEST_F(ReportRun, RunFileReaderIsStrict) {
  TempDir tmp;
  const std::string dir = copy_run(run_dir(), tmp);
  const json good = json::parse(slurp(dir + "/run.json"));
  const std::string run_json = dir + "/run.json";
  const auto expect_refused = [&](json j, const std::string& phrase) {
    std::ofstream(run_json) << j.dump(1);
    mpq::test::expect_one_line_error(run_mpq("report " + q(dir), tmp), run_json, phrase);
    EXPECT_FALSE(fs::exists(dir + "/report.html"));
  };
  json j = good;
  j["colour"] = "blue";
  expect_refused(j, "unknown key \"colour\"");
  j = good;
  j["candidates"][0]["extra"] = 1;
  expect_refused(j, "candidates[0]: unknown key \"extra\"");
  j = good;
  j["candidates"][1]["kind"] = "mystery";
  expect_refused(j, "unknown kind \"mystery\"");
  j = good;
  j["candidates"][0]["status"] = "ok";
  expect_refused(j, "unknown status \"ok\"");
  j = good;
  j["candidates"][2]["scheme"] = "int5_g7:rtn";
  expect_refused(j, "int5_g7");
  j = good;
  j["candidates"][4]["plan"] = "plans/q4.json";  // the llama.cpp candidate
  expect_refused(j, "a llama.cpp candidate has no plan file");
  j = good;
  j["candidates"][0].erase("ppl");
  expect_refused(j, "candidates[0].ppl: missing");
  j = good;
  j["candidates"][0]["top1_agree"] = 91.2;
  expect_refused(j, "top1_agree: must be a share in [0, 1]");
  j = good;
  j["chosen"] = "tiers-fisher";
  expect_refused(j, "did not finish");
  j = good;
  j["chosen"] = "nobody";
  expect_refused(j, "\"nobody\" is not among the candidates");
  j = good;
  j["target"] = "tensorrt";
  expect_refused(j, "unknown target 'tensorrt'");
  j = good;
  j["budget"]["bytes"] = 1000;
  expect_refused(j, "exactly one of");
  j = good;
  j["candidates"][0]["bits_per_weight"] = 4.0;
  expect_refused(j, "records 4.0");
  j = good;
  j["model"]["identity"]["sha256"] = std::string(64, '0');
  std::ofstream(run_json) << j.dump(1);
  mpq::test::expect_one_line_error(run_mpq("report " + q(dir), tmp), dir + "/sensitivity.json", "of another model");
  // The library round trip: what run_to_json writes, run_from_json reads back unchanged.
  const mpq::RunRecord rec = mpq::run_from_json(good, "run.json");
  EXPECT_EQ(mpq::run_to_json(rec), mpq::run_to_json(mpq::run_from_json(mpq::run_to_json(rec), "again")));
  EXPECT_EQ(mpq::run_to_json(rec)["candidates"][0], good["candidates"][0]);
}

TEST_F(ReportRun, WritesOnlyWhereItMay) {
  TempDir tmp;
  const std::string dir = copy_run(run_dir(), tmp);
  const std::string out = dir + "/report.html";
  std::ofstream(out) << "<html>my own notes</html>";
  mpq::test::expect_one_line_error(run_mpq("report " + q(dir), tmp), out, "not an earlier output");
  EXPECT_EQ(slurp(out), "<html>my own notes</html>");
  ASSERT_EQ(run_mpq("report " + q(dir) + " --force", tmp).status, 0);
  ASSERT_EQ(run_mpq("report " + q(dir), tmp).status, 0);  // its own earlier report: replaced
  EXPECT_EQ(slurp(out).rfind(mpq::kReportMagic, 0), 0u);
  for (const std::string input : {"run.json", "sensitivity.json", "sensitivity.bin", "plans/knapsack-fisher.json"}) {
    const std::string before = slurp(dir + "/" + input);
    mpq::test::expect_one_line_error(run_mpq("report " + q(dir) + " --out " + q(dir + "/" + input) + " --force", tmp),
                                     dir + "/" + input, "input");
    EXPECT_EQ(slurp(dir + "/" + input), before);
  }
  const auto r = run_mpq("report " + q(dir) + " --out " + q(tmp.file("elsewhere.html")), tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(slurp(tmp.file("elsewhere.html")), slurp(out));
}

TEST_F(ReportRun, ParetoFrontierSvgUsesTheModule) {
  TempDir tmp;
  const auto r = run_mpq("pareto " + q(run_dir() + "/sensitivity.json") + " --method knapsack --bits-range 3:6:0.5 --out " +
                             q(tmp.file("pareto")),
                         tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  Xml x(slurp(tmp.file("pareto/frontier.svg")));
  ASSERT_TRUE(x.ok()) << x.errors;
  const std::string csv = slurp(tmp.file("pareto/frontier.csv"));
  const size_t plans = static_cast<size_t>(std::count(csv.begin(), csv.end(), '\n')) - 1;
  EXPECT_EQ(x.find("//s:circle[s:title[contains(., 'bits/weight: predicted fisher')]]").size(), plans);
}

}  // namespace
