// XML helpers shared by the tests that parse mpq's HTML report and SVG figures (libxml2):
// well-formedness, XPath queries with the XHTML (h:) and SVG (s:) namespaces, attributes and
// text, and numbers as the report displays them.
#pragma once

#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mpq::test {

// A parsed document; errors of the parse collected in `errors`.
struct Xml {
  xmlDocPtr doc = nullptr;
  std::string errors;
  explicit Xml(const std::string& text) {
    // Without XML_PARSE_RECOVER a document that is not well-formed gives no tree; namespace and
    // other recoverable errors leave the last error set. (xmlGetLastError, not a handler: its
    // signature changed between libxml2 2.9 and 2.12.)
    xmlResetLastError();
    doc = xmlReadMemory(text.data(), static_cast<int>(text.size()), "doc.xml", "UTF-8",
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    const auto* e = xmlGetLastError();
    if (e && e->code != XML_ERR_OK) errors = std::to_string(e->line) + ": " + (e->message ? e->message : "?");
    if (!doc && errors.empty()) errors = "not well-formed";
  }
  ~Xml() {
    if (doc) xmlFreeDoc(doc);
  }
  bool ok() const { return doc != nullptr && errors.empty(); }
  // Nodes matching an XPath (prefixes h: XHTML, s: SVG).
  std::vector<xmlNodePtr> find(const std::string& xpath) const {
    std::vector<xmlNodePtr> out;
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    xmlXPathRegisterNs(ctx, BAD_CAST "h", BAD_CAST "http://www.w3.org/1999/xhtml");
    xmlXPathRegisterNs(ctx, BAD_CAST "s", BAD_CAST "http://www.w3.org/2000/svg");
    xmlXPathObjectPtr r = xmlXPathEvalExpression(BAD_CAST xpath.c_str(), ctx);
    if (r && r->nodesetval) {
      for (int i = 0; i < r->nodesetval->nodeNr; ++i) out.push_back(r->nodesetval->nodeTab[i]);
    }
    xmlXPathFreeObject(r);
    xmlXPathFreeContext(ctx);
    return out;
  }
};

inline std::string attr(xmlNodePtr n, const char* name) {
  xmlChar* v = xmlGetProp(n, BAD_CAST name);
  if (!v) return "";
  std::string s(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return s;
}

inline std::string text_of(xmlNodePtr n) {
  xmlChar* v = xmlNodeGetContent(n);
  std::string s = v ? reinterpret_cast<const char*>(v) : "";
  xmlFree(v);
  return s;
}

// A number as the report displays it: "12.3", "0.0123", "1.5×10⁻⁵", "10⁻⁶", "93.45 %", "0.1274 MB".
inline double parse_display(std::string s) {
  for (const char* unit : {" MB", " %"}) {
    const size_t at = s.find(unit);
    if (at != std::string::npos) s = s.substr(0, at);
  }
  static const std::vector<std::string> kSup = {"⁰", "¹", "²", "³", "⁴", "⁵", "⁶", "⁷", "⁸", "⁹"};
  const size_t times = s.find("10");
  std::string mant = "1";
  std::string rest = s;
  if (s.find("×10") != std::string::npos) {
    mant = s.substr(0, s.find("×10"));
    rest = s.substr(s.find("×10") + std::string("×10").size());
  } else if (times == 0 && s.size() > 2 && (s.compare(2, 3, "⁻") == 0 || s.compare(2, 2, "¹") == 0 ||
                                            std::any_of(kSup.begin(), kSup.end(), [&](const std::string& d) { return s.compare(2, d.size(), d) == 0; }))) {
    rest = s.substr(2);
  } else {
    return std::stod(s);
  }
  bool neg = false;
  if (rest.rfind("⁻", 0) == 0) neg = true, rest = rest.substr(std::string("⁻").size());
  int e = 0;
  while (!rest.empty()) {
    bool matched = false;
    for (int d = 0; d < 10; ++d) {
      if (rest.rfind(kSup[d], 0) == 0) {
        e = e * 10 + d;
        rest = rest.substr(kSup[d].size());
        matched = true;
      }
    }
    if (!matched) break;
  }
  return std::stod(mant) * std::pow(10.0, neg ? -e : e);
}

// Every number of the report's candidates table (h:table id="candidates") equals run.json's:
// exactly in data-value, and as displayed within its rounding; the kept row marked, statuses as
// recorded, the unquantized reference row first, the commands verbatim.
inline void expect_table_matches_run(const Xml& x, const nlohmann::json& run) {
  using nlohmann::json;
  const std::vector<std::string> keys = {"file_bytes", "bits_per_weight", "ppl", "kld_mean", "kld_p99", "top1_agree",
                                         "decode_tok_s"};
  EXPECT_EQ(x.find("//h:table[@id='candidates']/h:tbody/h:tr").size(), run["candidates"].size() + 1);  // + reference
  for (const auto& c : run["candidates"]) {
    const std::string name = c["name"];
    const auto rows = x.find("//h:table[@id='candidates']//h:tr[@data-name='" + name + "']");
    ASSERT_EQ(rows.size(), 1u) << name;
    EXPECT_EQ(attr(rows[0], "class") == "chosen", name == run["chosen"].get<std::string>()) << name;
    const auto status = x.find("//h:tr[@data-name='" + name + "']/h:td[@data-key='status']");
    ASSERT_EQ(status.size(), 1u);
    EXPECT_EQ(text_of(status[0]), c["status"].get<std::string>());
    std::map<std::string, json> expected;
    for (const auto& k : keys) expected[k] = c.value(k, json(nullptr));
    if (c.contains("seconds")) {
      expected["seconds_quantize"] = c["seconds"]["quantize"];
      expected["seconds_evaluate"] = c["seconds"]["evaluate"];
    } else {
      expected["seconds_quantize"] = expected["seconds_evaluate"] = nullptr;
    }
    for (const auto& [k, v] : expected) {
      const auto cells = x.find("//h:tr[@data-name='" + name + "']/h:td[@data-key='" + k + "']");
      ASSERT_EQ(cells.size(), 1u) << name << " " << k;
      if (v.is_null()) {
        EXPECT_EQ(text_of(cells[0]), "—") << name << " " << k;
        continue;
      }
      // Exact: the value as run.json has it; shown: the same number, rounded for reading.
      EXPECT_EQ(std::stod(attr(cells[0], "data-value")), v.get<double>()) << name << " " << k;
      double shown = parse_display(text_of(cells[0]));
      double want = v.get<double>();
      if (k == "file_bytes") want /= 1e6;
      if (k == "top1_agree") want *= 100;
      // Four significant digits shown; wall times three (their last digits are noise).
      const double rel = k.rfind("seconds_", 0) == 0 ? 5e-3 : 1e-3;
      EXPECT_NEAR(shown, want, rel * std::fabs(want)) << name << " " << k << " shows " << text_of(cells[0]);
    }
  }
  const auto ref = x.find("//h:tr[@data-name='(unquantized)']/h:td[@data-key='ppl']");
  ASSERT_EQ(ref.size(), 1u);
  EXPECT_EQ(std::stod(attr(ref[0], "data-value")), run["reference"]["ppl"].get<double>());
  const auto pre = x.find("//h:pre[@id='commands-list']");
  ASSERT_EQ(pre.size(), 1u);
  std::string commands;
  for (const auto& c : run["commands"]) commands += c.get<std::string>() + "\n";
  EXPECT_EQ(text_of(pre[0]), commands);
}

}  // namespace mpq::test
