#include "io/read_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "mpq/error.h"

namespace mpq {

std::string read_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail(path, "is a directory, expected a " + what);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open " + what + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(path, "read error");
  return ss.str();
}

nlohmann::json read_json_file(const std::string& path, const std::string& what) {
  const std::string text = read_file(path, what);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(path, "invalid JSON: " + std::string(e.what()));
  }
}

}  // namespace mpq
