#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ with Clang (ASan + UBSan, build-clang-asan/), writes
# their seed corpora with the project's own writers, and fuzzes each harness for a while.
#
#   scripts/fuzz.sh [SECONDS] [HARNESS...]   SECONDS per harness (default 60), all harnesses
#   scripts/fuzz.sh --smoke [HARNESS...]     10 s per harness (the CI smoke run, .ci/run)
#
# Harnesses: gguf safetensors hf_config tokenizer_json quantized_dir plan sensitivity llama2c.
# Corpora grow in fuzz-out/corpus/<harness>/ (kept between runs); a crash, sanitizer report, leak,
# timeout (10 s per input) or out-of-memory (512 MB per allocation, 2 GB resident) leaves its
# input in fuzz-out/findings/<harness>/ (git-ignored). Prints executions per harness; exits 1
# when any harness had a finding. Reproduce one with: build-clang-asan/fuzz/fuzz_<harness> FILE
source "$(dirname "${BASH_SOURCE[0]}")/clang_asan.sh"

SECONDS_EACH=60
if [ "${1:-}" = "--smoke" ]; then
  SECONDS_EACH=10
  shift
elif [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  SECONDS_EACH=$1
  shift
fi
ALL_HARNESSES=(gguf safetensors hf_config tokenizer_json quantized_dir plan sensitivity llama2c)
HARNESSES=("$@")
if [ ${#HARNESSES[@]} -eq 0 ]; then HARNESSES=("${ALL_HARNESSES[@]}"); fi
for h in "${HARNESSES[@]}"; do
  if [[ ! " ${ALL_HARNESSES[*]} " =~ " $h " ]]; then
    echo "error: unknown harness '$h' (known: ${ALL_HARNESSES[*]})" >&2
    exit 2
  fi
done

# Only what fuzzing needs: the harnesses and the seed generator (sanitize.sh builds the rest).
targets=(mpq_fuzz_seeds)
for h in "${HARNESSES[@]}"; do targets+=("fuzz_$h"); done
mpq_build_clang_asan "${targets[@]}"
OUT="$MPQ_ROOT/fuzz-out"
SEEDS="$MPQ_ASAN_BUILD/fuzz-seeds"
echo "== seeds"
rm -rf "$SEEDS"
"$MPQ_ASAN_BUILD/fuzz/mpq_fuzz_seeds" "$SEEDS"

# One thread: the harnesses' inputs are tiny, and the two cores are better spent elsewhere.
export OMP_NUM_THREADS=1
declare -A DICT=([gguf]=gguf.dict [llama2c]=gguf.dict)
status=0
summary=()
for h in "${HARNESSES[@]}"; do
  corpus="$OUT/corpus/$h"
  findings="$OUT/findings/$h"
  mkdir -p "$corpus" "$findings"
  log="$OUT/$h.log"
  dict="$MPQ_ROOT/fuzz/${DICT[$h]:-json.dict}"
  before=$(find "$findings" -type f | wc -l)
  echo "== fuzz_$h: $SECONDS_EACH s (log: $log)"
  set +e
  "$MPQ_ASAN_BUILD/fuzz/fuzz_$h" "$corpus" "$SEEDS/$h" -dict="$dict" \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -artifact_prefix="$findings/" -print_final_stats=1 -close_fd_mask=3 >"$log" 2>&1
  rc=$?
  set -e
  after=$(find "$findings" -type f | wc -l)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  units=$(find "$corpus" -type f | wc -l)
  verdict="ok"
  if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
    verdict="FINDING (exit $rc, $((after - before)) new file(s) in fuzz-out/findings/$h/)"
    status=1
    grep -m1 -E "ERROR: |runtime error:|==ERROR|Test unit written|deadly signal|timeout|out-of-memory" "$log" || true
  fi
  summary+=("$(printf '%-15s %10s execs %7s/s  corpus %5s  %s' "$h" "${execs:-?}" "${rate:-?}" "$units" "$verdict")")
done
echo "== summary ($SECONDS_EACH s per harness)"
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
exit $status
