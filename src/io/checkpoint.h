// A model checkpoint opened for reading, whatever its layout (GGUF file, Hugging Face directory,
// llama2.c file): raw tensors under canonical Hugging Face names and an HF-style config, so that
// one model builder serves every layout. Owns the memory mappings its records point into.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/tensor_record.h"

namespace mpq {

class GgufFile;

struct Checkpoint {
  std::string path;    // what the user named (file or directory)
  std::string layout;  // "gguf", "hf" or "llama2c"
  // Tensors under Hugging Face names ("model.layers.0.self_attn.q_proj.weight", ...), shapes
  // outermost first.
  std::map<std::string, TensorRecord> tensors;
  // Every tensor of a safetensors checkpoint, whatever its dtype (quantized checkpoints hold U8,
  // F8_E4M3, I32 tensors that are not weights by themselves): name -> raw view.
  struct RawTensor {
    std::string dtype;           // safetensors dtype name
    std::vector<int64_t> shape;  // outermost first
    const uint8_t* data = nullptr;
    uint64_t nbytes = 0;
    std::string file;            // the file holding it
  };
  std::map<std::string, RawTensor> raw;
  // True when q_proj/k_proj rows are in the interleaved (Meta / GGUF-llama) RoPE order rather
  // than Hugging Face's rotate-half order; the model builder permutes them.
  bool qk_rope_interleaved = false;
  // HF config.json content. GGUF metadata and the llama2.c header are translated into the same
  // keys (model_type, hidden_size, num_hidden_layers, ...).
  nlohmann::json config;
  // Keep-alive for the mapped files the records point into.
  std::vector<std::shared_ptr<const void>> owners;
  // The GGUF file when layout == "gguf" (its metadata also holds the tokenizer).
  std::shared_ptr<const GgufFile> gguf;
};

// Opens `path`: a directory is read as a Hugging Face checkpoint; a file starting with "GGUF" as
// GGUF; any other file as a llama2.c checkpoint. Throws mpq::Error naming the file.
Checkpoint open_checkpoint(const std::string& path);

// llama.cpp's GGUF name of a Hugging Face tensor name ("model.layers.3.mlp.down_proj.weight" ->
// "blk.3.ffn_down.weight"), "" when there is none. The inverse of what the GGUF reader maps;
// `arch` (a GGUF architecture / mpq family: "gemma3") selects that architecture's norm names.
std::string gguf_tensor_name(const std::string& hf_name, const std::string& arch = "");

// Per-layout openers (used by open_checkpoint).
Checkpoint open_gguf_checkpoint(const std::string& path);
Checkpoint open_hf_checkpoint(const std::string& dir);
Checkpoint open_llama2c_checkpoint(const std::string& path);

}  // namespace mpq
