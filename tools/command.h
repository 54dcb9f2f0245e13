// The `mpq` CLI is a set of subcommands; each lives in its own tools/cmd_<name>.cpp and registers
// itself here, so adding a command touches no shared file.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace mpq::cli {

struct Command {
  std::string name;         // subcommand name: "info", "ppl", ...
  std::string description;  // one line for --help
  // Adds options to `sub` and returns the function that runs the command (returns exit code).
  std::function<std::function<int()>(CLI::App& sub)> setup;
};

std::vector<Command>& registry();

// The command line mpq was started with (argv[1..]), for the records of outputs.
std::vector<std::string>& command_line();

// Static registration helper: `static Registrar r{{"info", "...", setup}};`
struct Registrar {
  explicit Registrar(Command command) { registry().push_back(std::move(command)); }
};

}  // namespace mpq::cli
