// The scale searches behind llama.cpp's quantizers (ggml-quants.c), re-derived from its
// algorithms for the ggml block codecs (format/ggml_legacy.h, ggml_kquants.h, ggml_iq4.h).
//
// Each search picks the scale (and min) of a run of n values: it rounds the values onto a few
// candidate grids and, for the codes of each candidate, solves the weighted least-squares fit
//     minimise Σ_i w_i (x_i − (scale·l_i − min))²   over scale (and min, when there is one),
// keeping the candidate with the lowest weighted error. The arithmetic is fp32 and in ggml's
// order, so encoders built on these functions write the bytes llama-quantize writes (tested
// against fixtures made with ggml's own code, tools/make_gguf_block_fixtures.py).
#pragma once

#include <cstdint>

namespace mpq::ggml {

// A run whose absolute maximum is below this is all zero (ggml's GROUP_MAX_EPS).
inline constexpr float kZeroRunMax = 1e-15f;

// Nearest integer, ties to even (ggml's nearest_int: 1.5·2^23 added, mantissa read). Exact for
// |v| <= 2^22 − 1; ggml leaves larger values undefined, here they are clamped to that range (and
// a NaN gives its lower end) so a degenerate scale cannot produce an arbitrary code.
int nearest_int(float v);

// Symmetric codes (ggml's make_qx_quants, rmse_type 1): l_i in [−nmax, nmax−1], value =
// scale·l_i, stored as l_i + nmax in L[i]. Candidates: the grid whose −nmax level lands on the
// value of largest magnitude, and 18 grids with nmax ± 0.1·k (k = 1..9) levels over that range;
// weights nullptr means w_i = x_i². Returns the scale (0 for an all-zero run, codes 0).
float symmetric_search(int n, int nmax, const float* x, const float* weights, uint8_t* L);

// Symmetric codes with weights x_i² refined one code at a time (ggml's make_q3_quants with
// do_rmse; Q3_K without an importance matrix): up to 5 passes move single codes to their
// optimum given the others while the weighted fit improves. L[i] = l_i + nmax.
float coordinate_search(int n, int nmax, const float* x, uint8_t* L);

// Asymmetric codes (ggml's make_qkx2_quants / make_qkx3_quants): l_i in [0, nmax], value =
// scale·l_i − min with min >= 0 (the range always contains 0). Candidates: the min/max grid and
// nstep + 1 grids of (nmax + rmin + rdelta·k) levels over [min(x, 0), max(x)], each refitted by
// weighted least squares for scale and min (min clamped to >= 0 with the scale refitted);
// use_mad scores candidates by Σ w |error| instead of Σ w error². Returns the scale and sets
// *min_out. The two ggml variants differ only in how they round degenerate (infinite or NaN)
// candidates; this one never rounds those (qkx3's guard), which gives qkx2's results too.
float asymmetric_search(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                        float* min_out, float rmin, float rdelta, int nstep, bool use_mad);

// Non-negative values (k-quants' sub-block scales and mins) onto codes l_i in [0, nmax] with
// one scale (ggml's make_qp_quants): 9 candidate grids scored by Σ w (x − scale·l)², then up
// to 5 passes of single-code moves. Returns the scale. L is uint8 as in ggml, including its
// wrap-around for (degenerate) negative inputs.
float positive_search(int n, int nmax, const float* x, uint8_t* L, const float* weights);

}  // namespace mpq::ggml
