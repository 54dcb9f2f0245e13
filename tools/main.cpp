// mpq: importance-aware mixed-precision quantization of LLMs. Thin front-end: parse the command
// line, run one subcommand, turn mpq::Error into a one-line message and a non-zero exit.
#include <cstdio>
#include <exception>
#include <memory>

#include "command.h"
#include "mpq/error.h"

namespace mpq::cli {
std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}
std::vector<std::string>& command_line() {
  static std::vector<std::string> args;
  return args;
}
}  // namespace mpq::cli

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) mpq::cli::command_line().push_back(argv[i]);
  CLI::App app{"mpq: importance-aware mixed-precision quantization of LLMs"};
  app.require_subcommand(1);
  std::function<int()> run;
  for (auto& command : mpq::cli::registry()) {
    CLI::App* sub = app.add_subcommand(command.name, command.description);
    auto runner = command.setup(*sub);
    sub->callback([&run, runner] { run = runner; });
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version print and succeed; every other parse error is one line and status 1
    // (not CLI11's own codes and usage dump), like the errors of the commands themselves.
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    std::fprintf(stderr, "mpq: error: %s\n", e.what());
    return 1;
  }
  try {
    return run ? run() : 1;
  } catch (const mpq::Error& e) {
    std::fprintf(stderr, "mpq: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "mpq: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpq: error: %s\n", e.what());
    return 1;
  }
}
