// mpq report: the self-contained HTML report of an `mpq auto` run directory (docs/REPORT.md).
#include <cstdio>

#include "command.h"
#include "common.h"
#include "report/report.h"

namespace mpq::cli {
namespace {

struct ReportArgs {
  std::string run_dir;
  std::string out;  // default RUN_DIR/report.html
  bool force = false;
};

int run_report(const ReportArgs& args) {
  const std::string out = args.out.empty() ? default_report_path(args.run_dir) : args.out;
  write_report(args.run_dir, out, args.force);
  std::printf("%s\n", out.c_str());
  return 0;
}

Registrar report_cmd{{"report", "HTML report (inline SVG figures, no network) of an mpq auto run directory",
                      [](CLI::App& app) {
                        auto args = std::make_shared<ReportArgs>();
                        app.add_option("RUN_DIR", args->run_dir, "run directory holding run.json")->required();
                        app.add_option("--out", args->out, "output file (default RUN_DIR/report.html)");
                        add_force_flag(app, args->force);
                        return std::function<int()>([args] { return run_report(*args); });
                      }}};

}  // namespace
}  // namespace mpq::cli
