// Errors that reach the user. Every message names the file (or input) and what is wrong with it,
// so that the CLI can print it on one line and exit non-zero.
#pragma once

#include <stdexcept>
#include <string>

namespace mpq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws Error("<where>: <what>"). `where` is usually a file path.
[[noreturn]] void fail(const std::string& where, const std::string& what);

// Throws Error(what) when `condition` is false.
inline void check(bool condition, const std::string& where, const std::string& what) {
  if (!condition) fail(where, what);
}

}  // namespace mpq
