// Reading whole small files (text, JSON, plans, tokenizer files) with the project's errors: one
// line naming the file and what is wrong ("is a directory", "cannot open", "read error").
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace mpq {

// The bytes of the file at `path`; `what` says what it was expected to be ("text file", ...).
std::string read_file(const std::string& path, const std::string& what = "file");

// The file parsed as JSON; throws mpq::Error naming the file on invalid JSON.
nlohmann::json read_json_file(const std::string& path, const std::string& what = "JSON file");

}  // namespace mpq
