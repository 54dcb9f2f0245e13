// libFuzzer harness: a safetensors file (model.safetensors, or one shard). The input is the whole
// file. Exercised: SafetensorsFile (header length, JSON header, dtypes, shapes, offsets tiling the
// data section), lookups, and every tensor of a type mpq reads decoded to fp32 (which touches
// every byte the header claims).
#include <cstdint>
#include <string>
#include <vector>

#include "format/dtype.h"
#include "fuzz_util.h"
#include "json_mutator.h"
#include "io/safetensors.h"

using namespace mpq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::scratch().file("model.safetensors");
  fuzz::write_file(path, {reinterpret_cast<const char*>(data), size});

  fuzz::accepts([&] {
    const SafetensorsFile file(path);
    for (const auto& [key, value] : file.metadata()) (void)value.size();
    for (const SafetensorsTensor& t : file.tensors()) {
      if (file.find(t.name) != &t) __builtin_trap();  // the index must find every tensor
      fuzz::accepts([&] {
        const TensorRecord r = file.record(t);
        if (!dtype_traits(r.dtype).is_float_input) return;
        std::vector<float> values(static_cast<size_t>(r.numel()));
        dequantize_to_f32(r.dtype, r.data, values.data(), r.numel(), path);
      });
    }
  });
  return 0;
}

// JSON-aware mutations (json_mutator.h).
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned seed) {
  using mpq::fuzz::FileKind;
  return mpq::fuzz::mutate_files(data, size, max_size, seed, {FileKind::Safetensors});
}
