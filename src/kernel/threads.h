// What a fork of the OpenMP threads costs, for the decisions of when to split small work.
#pragma once

namespace mpq {

// True unless the OpenMP workers sleep as soon as they are idle (OMP_WAIT_POLICY=passive, or
// libgomp's GOMP_SPINCOUNT=0). Measured here (docs/RUNTIME.md): a fork/join costs ~8 us when the
// workers sleep and ~1 us when they spin (libgomp's default: spin a while, then sleep), so the
// small products and the attention heads of a decode step are split only when they spin.
bool omp_workers_spin();

}  // namespace mpq
