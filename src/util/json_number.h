// Whole numbers read from the JSON files a user feeds (tokenizer.json, plan and sensitivity files,
// config.json). nlohmann's get<int64_t>() converts a JSON float with a plain cast, which is
// undefined behaviour when it does not fit (1e300) and silently truncates otherwise (2.5 -> 2),
// and get<uint64_t>() turns -1 into 2^64 - 1. These accept JSON integers only, in a range the
// caller states, and refuse anything else with an mpq::Error naming the file and the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace mpq {

// `v` when it is a JSON integer in [lo, hi]; nullopt otherwise (a float, even 3.0, a string, an
// integer out of range).
std::optional<int64_t> json_integer(const nlohmann::json& v, int64_t lo, int64_t hi);

// The same, or mpq::Error "<where>: <what> must be an integer in [lo, hi], got <v>".
int64_t json_integer(const nlohmann::json& v, int64_t lo, int64_t hi, const std::string& where,
                     const std::string& what);

}  // namespace mpq
