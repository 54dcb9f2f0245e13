// Hugging Face checkpoint directories:
//   <dir>/config.json                   required; kept as-is in Checkpoint::config
//   <dir>/model.safetensors             one file holding every tensor, or
//   <dir>/model.safetensors.index.json  {"metadata": {...},
//                                        "weight_map": {"<tensor>": "<shard file>", ...}}
//   <dir>/<shard files>                 e.g. model-00001-of-00002.safetensors
// Tensor names are already the canonical HF names; q/k rows are in HF's rotate-half order.
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "io/checkpoint.h"
#include "io/read_file.h"
#include "io/safetensors.h"
#include "mpq/error.h"

namespace mpq {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;


// Adds every tensor of `file` to `ck`. A name already present came from another shard.
void add_tensors(Checkpoint& ck, const std::shared_ptr<const SafetensorsFile>& file,
                 const std::string& index_path) {
  for (const SafetensorsTensor& t : file->tensors()) {
    auto [it, inserted] = ck.raw.emplace(t.name, Checkpoint::RawTensor{t.dtype, t.shape, t.data, t.nbytes, file->path()});
    if (!inserted)
      fail(index_path,
           "tensor '" + t.name + "' is in two shards: " + it->second.file + " and " + file->path());
    // Tensors of types mpq reads as weights are also records; the others (U8, F8_E4M3, ...) are
    // parts of quantized modules, read through `raw`.
    if (t.type) ck.tensors.emplace(t.name, file->record(t));
  }
  ck.owners.push_back(file);
}

// Opens the shards listed in model.safetensors.index.json and checks that each tensor of the
// weight map is in the shard it names.
void open_sharded(Checkpoint& ck, const fs::path& dir, const std::string& index_path) {
  const json index = read_json_file(index_path);
  if (!index.is_object() || !index.contains("weight_map") || !index.at("weight_map").is_object())
    fail(index_path, "expected an object with a 'weight_map' object");

  std::map<std::string, std::vector<std::string>> by_shard;  // shard file -> tensor names
  for (const auto& [name, shard] : index.at("weight_map").items()) {
    if (!shard.is_string())
      fail(index_path,
           "weight_map entry '" + name + "' is " + shard.type_name() + ", expected a file name");
    const std::string file = shard.get<std::string>();
    // Shards live in the checkpoint directory: refuse paths that would leave it.
    if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..")
      fail(index_path,
           "weight_map entry '" + name + "' names an invalid shard file '" + file + "'");
    by_shard[file].push_back(name);
  }
  if (by_shard.empty()) fail(index_path, "weight_map is empty");

  for (const auto& [shard, names] : by_shard) {
    const std::string shard_path = (dir / shard).string();
    if (!fs::is_regular_file(shard_path))
      fail(shard_path, "shard is missing (model.safetensors.index.json lists it for tensor '" +
                           names.front() + "')");
    auto file = std::make_shared<const SafetensorsFile>(shard_path);
    for (const std::string& name : names)
      if (file->find(name) == nullptr)
        fail(shard_path,
             "has no tensor '" + name + "' (model.safetensors.index.json maps it to this shard)");
    add_tensors(ck, file, index_path);
  }
}

}  // namespace

Checkpoint open_hf_checkpoint(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(dir, "not a directory");
  const fs::path root(dir);

  Checkpoint ck;
  ck.path = dir;
  ck.layout = "hf";
  ck.qk_rope_interleaved = false;  // HF checkpoints store q/k rows in rotate-half order

  const std::string config_path = (root / "config.json").string();
  if (!fs::is_regular_file(config_path, ec))
    fail(config_path, "missing (a Hugging Face checkpoint directory needs config.json)");
  ck.config = read_json_file(config_path);
  if (!ck.config.is_object()) fail(config_path, "expected a JSON object");

  const std::string single = (root / "model.safetensors").string();
  const std::string index = (root / "model.safetensors.index.json").string();
  if (fs::is_regular_file(single, ec)) {
    add_tensors(ck, std::make_shared<const SafetensorsFile>(single), single);
  } else if (fs::is_regular_file(index, ec)) {
    open_sharded(ck, root, index);
  } else {
    fail(dir, "no model.safetensors or model.safetensors.index.json");
  }
  // A missing lm_head.weight with "tie_word_embeddings" is left to the model builder.
  return ck;
}

}  // namespace mpq
