#!/usr/bin/env bash
# By hand (not in CI): mpq's ggml encoders against llama-quantize on a whole model. Needs a
# llama.cpp build (llama-quantize, llama-imatrix; LLAMA_BIN) and mpq built (build/libmpq_core.a).
#   1. REF = the model as F32 GGUF (llama-quantize --allow-requantize MODEL REF F32);
#   2. an imatrix from WikiText-2 validation (CHUNKS chunks of 512);
#   3. llama-quantize --pure REF to each type, without and with the imatrix;
#   4. scripts/ggml_vs_llama_quantize.cpp compares every tensor, block by block.
#   LLAMA_BIN=/path/to/llama.cpp/build/bin bash scripts/ggml_vs_llama_quantize.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LLAMA_BIN="${LLAMA_BIN:?set LLAMA_BIN to a llama.cpp build/bin folder}"
MODEL="${MODEL:-$MPQ_MODELS/SmolLM2-135M-Instruct.Q4_1.gguf}"
OUT="${OUT:-$MPQ_MODELS/ggml_vs_llama_quantize}"
CHUNKS="${CHUNKS:-4}"
TYPES="${TYPES:-Q4_K Q5_K Q6_K Q3_K Q2_K Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 IQ4_NL IQ4_XS}"
export LD_LIBRARY_PATH="$LLAMA_BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p "$OUT"
[ -f "$OUT/ref-f32.gguf" ] || "$LLAMA_BIN/llama-quantize" --allow-requantize "$MODEL" "$OUT/ref-f32.gguf" F32 2 >"$OUT/ref.log" 2>&1
[ -f "$OUT/imatrix.gguf" ] || "$LLAMA_BIN/llama-imatrix" -m "$OUT/ref-f32.gguf" \
  -f "$MPQ_ROOT/../shared/text/wikitext-2-raw-v1/wiki.valid.raw" -o "$OUT/imatrix.gguf" --chunks "$CHUNKS" -c 512 \
  -t 2 >"$OUT/imatrix.log" 2>&1
OPENBLAS_DIR=/usr/lib/$(gcc -dumpmachine)/openblas-openmp
g++ -O2 -std=c++20 -fopenmp -I "$MPQ_ROOT/src" -I "$MPQ_ROOT/include" "$MPQ_ROOT/scripts/ggml_vs_llama_quantize.cpp" \
  "$MPQ_BUILD/libmpq_core.a" -L"$OPENBLAS_DIR" -Wl,-rpath,"$OPENBLAS_DIR" -lopenblas -lpcre2-8 -o "$OUT/compare"
for t in $TYPES; do
  [ -f "$OUT/plain-$t.gguf" ] || "$LLAMA_BIN/llama-quantize" --pure "$OUT/ref-f32.gguf" "$OUT/plain-$t.gguf" "$t" 2 \
    >"$OUT/plain-$t.log" 2>&1
  [ -f "$OUT/imatrix-$t.gguf" ] || "$LLAMA_BIN/llama-quantize" --pure --imatrix "$OUT/imatrix.gguf" \
    "$OUT/ref-f32.gguf" "$OUT/imatrix-$t.gguf" "$t" 2 >"$OUT/imatrix-$t.log" 2>&1
  OMP_WAIT_POLICY=passive "$OUT/compare" "$OUT/ref-f32.gguf" "$OUT/plain-$t.gguf"
  OMP_WAIT_POLICY=passive "$OUT/compare" "$OUT/ref-f32.gguf" "$OUT/imatrix-$t.gguf" "$OUT/imatrix.gguf"
done
