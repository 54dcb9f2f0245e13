// Writing a model (quantized or not) for the engines people run: the output's name picks the
// writer. Every writer is fed the same in-memory Model and follows io/output.h's rules (staged,
// atomic, never over an input or over files mpq did not write).
//
//   DIR         a Hugging Face directory: config.json (with a compressed-tensors
//               quantization_config when Linear layers are quantized), model.safetensors, the
//               tokenizer files and mpq_report.json (docs/FORMAT.md).
//   NAME.gguf   a GGUF file llama.cpp runs (io/gguf_writer.cpp): ggml types per tensor, the
//               source's architecture and tokenizer metadata, mpq's report under "mpq.report".
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "format/dtype.h"
#include "io/output.h"
#include "mpq/model.h"

namespace mpq {

struct ModelWriteOptions {
  // Storage of the embedding and of an untied, unquantized output head: F32 keeps them exactly;
  // BF16/F16 halve the largest tensors of a small model's file.
  DType embedding_dtype = DType::F32;
  nlohmann::json report = nlohmann::json::object();  // written as mpq_report.json
  OutputRules rules;  // the model's own source is always added to the inputs
  // A GGUF larger than this is refused before anything is written (a plan's budget.file_bytes);
  // 0: no limit.
  uint64_t max_file_bytes = 0;
};

// Before any work: refuses an output `write_model` would refuse (io/output.h), naming `out`.
void check_model_output(const Model& model, const std::string& out, const ModelWriteOptions& options);

// Writes `model` to `out`. Throws mpq::Error naming the output or the tensor that cannot be
// written (e.g. a format the output layout cannot express).
void write_model(const Model& model, const std::string& out, const ModelWriteOptions& options);

// The Hugging Face directory writer (write_model's choice for a directory name).
void write_hf_directory(const Model& model, const std::string& out_dir, const ModelWriteOptions& options);
// The GGUF writer (write_model's choice for a name ending in ".gguf").
void write_gguf_model(const Model& model, const std::string& path, const ModelWriteOptions& options);
// True when `path` is a GGUF file mpq wrote (general.quantized_by = "mpq"): what an output may replace.
bool is_mpq_gguf(const std::string& path);

// Bytes of the GGUF write_gguf_model would write for `model` (default options), without the
// data of the tensors a plan chooses (every decoder Linear and the output head, which is the
// embedding when tied) and without the mpq.report string: header, metadata, tokenizer, tensor
// infos, norms and an untied embedding, with their alignment padding. A plan's whole-file size
// adds the planned tensors (each padded to 32 bytes) and gguf_report_reserve. Throws mpq::Error
// when the model has no GGUF form.
uint64_t gguf_fixed_bytes(const Model& model);
// Bytes a whole-file budget keeps for mpq's report in the GGUF of a model with `planned_tensors`
// planned tensors: the writer keeps the report compact (provenance, one quantizer name per
// module), and refuses to exceed a plan's file budget anyway (max_file_bytes).
constexpr uint64_t gguf_report_reserve(uint64_t planned_tensors) { return 4096 + 128 * planned_tensors; }
// True when `out` names a GGUF output.
bool is_gguf_output(const std::string& out);

}  // namespace mpq
