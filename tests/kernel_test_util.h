// Helpers shared by the kernel tests: the dispatch targets this CPU can run.
#pragma once

#include <cstdio>
#include <vector>

#include "kernel/gemv_f32.h"

namespace mpq::test {

// Every Isa the CPU supports (scalar first); prints the ones skipped.
inline std::vector<Isa> supported_isas() {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (cpu_supports(isa)) {
      isas.push_back(isa);
    } else {
      std::printf("[ info ] skipping %s: not supported by this CPU\n", isa_name(isa));
    }
  }
  return isas;
}

}  // namespace mpq::test
