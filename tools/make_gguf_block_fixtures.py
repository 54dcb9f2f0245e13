#!/usr/bin/env python3
"""Makes the GGUF fixtures of tests/test_gguf.cpp from an independent implementation (gguf-py).

Run by hand once; the outputs are committed:

  tests/data/gguf_blocks.gguf
      For each block type T in Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K:
        "<t>.raw"      tensor of type T: random block bytes with finite fp16 scale fields
        "<t>.expected" F32 tensor, same shape: gguf-py's numpy dequantization of "<t>.raw"
      Written by gguf-py's GGUFWriter, so the fixture also checks our reader against theirs.

  tests/data/smollm2_q4_1_expected.gguf  (only when the SmolLM2 model file is present)
      For blk.0.attn_q.weight and token_embd.weight of models/SmolLM2-135M-Instruct.Q4_1.gguf:
        "<name>.rows"   I32: row indices (outermost dimension) that were dequantized
        "<name>.values" F32 [len(rows), row length]: gguf-py's dequantization of those rows
      and metadata "<name>.sum" (FLOAT64): the float64 sum of the whole dequantized tensor.

Usage: python3 tools/make_gguf_block_fixtures.py [--model PATH] [--out DIR]
Requires: pip install gguf numpy
"""

import argparse
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import quants

QK_K = 256

# Byte offsets of the fp16 scale fields inside one block, per type (see src/format/gguf_blocks.h).
FP16_FIELDS = {
    Q.Q4_0: [0],
    Q.Q4_1: [0, 2],
    Q.Q5_0: [0],
    Q.Q5_1: [0, 2],
    Q.Q8_0: [0],
    Q.Q2_K: [QK_K // 16 + QK_K // 4, QK_K // 16 + QK_K // 4 + 2],
    Q.Q3_K: [QK_K // 8 + QK_K // 4 + 12],
    Q.Q4_K: [0, 2],
    Q.Q5_K: [0, 2],
    Q.Q6_K: [QK_K // 2 + QK_K // 4 + QK_K // 16],
}

BLOCKS_PER_TYPE = {32: 16, 256: 4}  # legacy types get 16 blocks (512 values), k-quants 4 (1024)


def random_scales(rng, n):
    """Finite fp16 scales: mostly normal values of both signs, plus a zero and a subnormal."""
    mags = np.exp(rng.uniform(np.log(1e-4), np.log(4.0), size=n))
    values = (mags * rng.choice([-1.0, 1.0], size=n)).astype(np.float16)
    values[0] = np.float16(0.0)
    if n > 1:
        values[1] = np.frombuffer(np.uint16(0x0123).tobytes(), dtype=np.float16)[0]  # subnormal
    return values


def make_blocks(rng, qtype):
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = BLOCKS_PER_TYPE[block_size]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for offset in FP16_FIELDS[qtype]:
        scales = random_scales(rng, n_blocks)
        rng.shuffle(scales)
        raw[:, offset:offset + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    expected = quants.dequantize(raw.reshape(-1), qtype).astype(np.float32)
    assert expected.size == n_blocks * block_size and np.all(np.isfinite(expected))
    # Two rows, so that the tensor is 2-D and each row is a whole number of blocks.
    rows = 2
    raw = raw.reshape(rows, -1)
    expected = expected.reshape(rows, -1)
    return raw, expected


def write_block_fixture(out_dir):
    rng = np.random.default_rng(20240607)
    path = os.path.join(out_dir, "gguf_blocks.gguf")
    w = gguf.GGUFWriter(path, arch="fixture")
    w.add_string("fixture.generator", "tools/make_gguf_block_fixtures.py (gguf-py dequantize)")
    for qtype in FP16_FIELDS:
        raw, expected = make_blocks(rng, qtype)
        name = qtype.name.lower()
        w.add_tensor(f"{name}.raw", raw, raw_dtype=qtype)
        w.add_tensor(f"{name}.expected", expected)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote", path, os.path.getsize(path), "bytes")


def write_model_fixture(model_path, out_dir):
    reader = gguf.GGUFReader(model_path)
    tensors = {t.name: t for t in reader.tensors}
    path = os.path.join(out_dir, "smollm2_q4_1_expected.gguf")
    w = gguf.GGUFWriter(path, arch="fixture")
    picks = {
        "blk.0.attn_q.weight": [0, 1, 2, 287, 288, 575],
        "token_embd.weight": [0, 1, 2, 100, 12345, 49151],
    }
    for name, rows in picks.items():
        t = tensors[name]
        full = quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32)
        full = full.reshape(-1, int(t.shape[0]))  # ne[0] is the row length
        w.add_tensor(f"{name}.rows", np.array(rows, dtype=np.int32))
        w.add_tensor(f"{name}.values", np.ascontiguousarray(full[rows]))
        w.add_float64(f"{name}.sum", float(full.astype(np.float64).sum()))
        print(name, t.tensor_type.name, full.shape, "sum", full.astype(np.float64).sum())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote", path, os.path.getsize(path), "bytes")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=os.path.join(here, "..", "models",
                                                        "SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "data"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    write_block_fixture(args.out)
    if os.path.exists(args.model):
        write_model_fixture(args.model, args.out)
    else:
        print("model not found, skipping the SmolLM2 fixture:", args.model)


if __name__ == "__main__":
    main()
