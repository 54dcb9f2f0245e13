#!/usr/bin/env python3
"""By-hand check: gguf-py's numpy decoders against ggml's C decoders, bit for bit.

tests/data/gguf_blocks.gguf holds gguf-py's dequantization of random blocks, and mpq's decoders
are tested against it; this script checks that gguf-py itself agrees with ggml (the code
llama.cpp runs) on the same bytes, including the scale codes at the ends of their ranges.
It loads libggml-base.so from the llama.cpp build of scripts/build_llamacpp.sh and calls its
exported dequantize_row_<type> through ctypes.

  third_party/venv/bin/python scripts/check_gguf_py_decoders.py \
      --lib third_party/llama.cpp-b11434/build/bin/libggml-base.so \
      --gguf-py third_party/llama.cpp-b11434/gguf-py      # or omit: the installed gguf package

Prints one line per type and exits non-zero on any mismatch.
"""

import argparse
import ctypes
import sys

import numpy as np

QK_K = 256

# Byte offsets of fp16 fields inside one block (kept finite: a NaN payload is not a property of
# the format worth comparing), per type name.
FP16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [QK_K // 16 + QK_K // 4, QK_K // 16 + QK_K // 4 + 2],
    "Q3_K": [QK_K // 8 + QK_K // 4 + 12],
    "Q4_K": [0, 2], "Q5_K": [0, 2],
    "Q6_K": [QK_K // 2 + QK_K // 4 + QK_K // 16],
    "IQ4_NL": [0], "IQ4_XS": [0],
    "MXFP4": [], "NVFP4": [],
}


def finite_fp16(rng, n):
    mags = np.exp(rng.uniform(np.log(1e-4), np.log(4.0), size=n))
    v = (mags * rng.choice([-1.0, 1.0], size=n)).astype(np.float16)
    v[0] = 0.0
    if n > 1:
        v[1] = np.frombuffer(np.uint16(0x0123).tobytes(), dtype=np.float16)[0]  # subnormal
    return v


def make_blocks(rng, name, block_size, type_size, n_blocks):
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in FP16_FIELDS[name]:
        raw[:, off:off + 2] = finite_fp16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    if name == "MXFP4":
        # Every E8M0 code whose largest value (12 * 2^(e-128)) is finite: 0 ... 252, each at least
        # once; 253 and 254 overflow to inf in both decoders, 255 is refused by ggml's validator.
        e = np.concatenate([np.arange(253), rng.integers(0, 253, size=n_blocks - 253)])
        raw[:, 0] = e.astype(np.uint8)
    if name == "NVFP4":
        # All 256 UE4M3 byte values as sub-block scales (bit 7 set included: 0xFF is not 0x7F).
        codes = np.concatenate([np.arange(256), rng.integers(0, 256, size=4 * n_blocks - 256)])
        raw[:, 0:4] = rng.permutation(codes).astype(np.uint8).reshape(n_blocks, 4)
    return raw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True, help="libggml-base.so of the llama.cpp build")
    ap.add_argument("--gguf-py", default="", help="gguf-py folder (default: installed gguf)")
    ap.add_argument("--blocks", type=int, default=1024)
    args = ap.parse_args()
    if args.gguf_py:
        sys.path.insert(0, args.gguf_py)
    import gguf  # noqa: PLC0415
    from gguf import quants  # noqa: PLC0415

    lib = ctypes.CDLL(args.lib)
    rng = np.random.default_rng(17)
    bad = 0
    for name in FP16_FIELDS:
        qtype = gguf.GGMLQuantizationType[name]
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        raw = make_blocks(rng, name, block_size, type_size, args.blocks)
        n = args.blocks * block_size
        fn = getattr(lib, "dequantize_row_" + name.lower().replace("_k", "_K"))
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn.restype = None
        ref = np.empty(n, dtype=np.float32)
        fn(raw.ctypes.data, ref.ctypes.data, n)
        got = quants.dequantize(raw.reshape(-1), qtype).astype(np.float32).reshape(-1)
        same = (ref.view(np.uint32) == got.view(np.uint32)) | (np.isnan(ref) & np.isnan(got))
        n_inf = int(np.isinf(ref).sum())
        status = "ok" if same.all() else f"MISMATCH at {int((~same).sum())} values"
        print(f"{name:7s} {args.blocks} blocks, {n} values: {status}"
              + (f" ({n_inf} inf in both)" if n_inf else ""))
        bad += int(not same.all())
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
