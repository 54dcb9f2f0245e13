// The sensitivity file (docs/SENSITIVITY.md): a JSON summary S.json plus a binary sidecar S.bin
// holding the per-output-channel saliences as little-endian float32 arrays whose byte offsets
// the JSON records. Both are written atomically (tmp + rename) and carry no timestamps: the same
// model, calibration and seed give byte-identical files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calib/calibration.h"
#include "calib/sensitivity.h"
#include "io/output.h"
#include "mpq/model.h"

namespace mpq {

constexpr int kSensitivityFileVersion = 1;
constexpr char kSensitivityBinMagic[8] = {'M', 'P', 'Q', 'S', 'E', 'N', 'S', '\0'};
constexpr int64_t kSensitivityBinHeaderBytes = 32;

// SHA-256 of a byte string, lowercase hex.
std::string sha256_hex(const void* data, size_t size);

// {"path", "identity_source", "sha256", "parameter_count", "arch", "n_layers"}: the sha256 is of
// config.json for a directory (Hugging Face), else of the file's first MiB (GGUF, llama2.c).
nlohmann::json sensitivity_model_identity(const Model& model, const std::string& path);

// The sidecar path of a summary path: "S.json" -> "S.bin", anything else -> path + ".bin".
std::string sensitivity_sidecar_path(const std::string& json_path);

// Before any work: the summary, its sidecar and the progress file of a resumable run may be
// written at `json_path` under `rules` (io/output.h): an existing summary must be an mpq
// sensitivity file, an existing sidecar the one it names (or --force). Throws mpq::Error.
void check_sensitivity_output(const std::string& json_path, const OutputRules& rules);
// The progress file of a resumable analysis writing `json_path`.
std::string sensitivity_progress_path(const std::string& json_path);

// Writes the summary and its sidecar. Throws mpq::Error naming the file on I/O errors.
// Returns the summary that was written.
nlohmann::json write_sensitivity_file(const SensitivityResult& result, const nlohmann::json& model_identity,
                                      const CalibrationOptions& calibration, const std::string& json_path);

}  // namespace mpq
