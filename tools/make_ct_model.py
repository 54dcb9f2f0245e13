#!/usr/bin/env python3
"""A real compressed-tensors checkpoint written by the compressed-tensors library itself, from a
dense Hugging Face model: someone else's quantization for `mpq ppl --kl-base` to measure on the
same ruler as mpq's own (docs/RESULTS.md, "Interoperability").

By hand, not in CI, in the interop venv of docs/INTEROP.md:

    # 1. a dense Hugging Face directory of a GGUF model (transformers' GGUF loader dequantizes
    #    every tensor to float32; transformers 5 writes config.json with rope_parameters)
    python tools/make_ct_model.py dense models/SmolLM2-135M-Instruct.Q4_1.gguf OUT_DENSE
    # 2. quantize it with the library: weight-only int, min-max qparams per group
    python tools/make_ct_model.py quantize OUT_DENSE OUT_CT [--bits 4] [--group-size 64] [--asym]
        [--dtype float32|bfloat16|float16]

`quantize` is the library's own path, as tools/make_ct_fixtures.py runs it on its tiny models:
apply_quantization_config (one group, targets Linear, lm_head ignored), every weight's scale /
zero point from `calculate_qparams` on the group's min and max (what llm-compressor's memoryless
min-max weight observer gives; no GPTQ), ModelCompressor.compress_model, save_pretrained,
ModelCompressor.update_config. The scales are in the model's dtype (--dtype, default the dense
model's). Neither step writes tokenizer files: copy the ones `mpq tokenize SOURCE --hf-out` writes
(transformers' GGUF tokenizer is not SmolLM2's; docs/INTEROP.md).

Both outputs are built in a temporary directory next to OUT and renamed into place; an existing
OUT is refused.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_ct_fixtures import group, int_args, quantized_modules, set_qparams  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def staged(out):
    """A temporary directory beside `out` (same file system, so the final rename is atomic)."""
    if os.path.exists(out):
        raise SystemExit(f"{out}: already exists (refusing to overwrite)")
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", dir=parent)


def finish(tmp, out):
    os.chmod(tmp, 0o755)
    for f in os.listdir(tmp):
        os.chmod(os.path.join(tmp, f), 0o644)
    os.rename(tmp, out)
    print(f"{out}: " + ", ".join(f"{f} {os.path.getsize(os.path.join(out, f))}" for f in sorted(os.listdir(out))))


def write_dense(gguf, out):
    from transformers import AutoModelForCausalLM
    loaded = AutoModelForCausalLM.from_pretrained(os.path.dirname(os.path.abspath(gguf)),
                                                  gguf_file=os.path.basename(gguf), dtype=torch.float32)
    # transformers refuses to save a model it loaded from GGUF ("quantized with gguf and is not
    # serializable"), although its weights are plain float32 tensors by now: the same weights in
    # a model built from the config alone save like any other.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=True)
    if missing or unexpected:
        raise SystemExit(f"{gguf}: state dict does not match its config: {missing} {unexpected}")
    tmp = staged(out)
    try:
        model.save_pretrained(tmp)
        finish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_quantized(dense, out, bits, group_size, symmetric, dtype):
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig, apply_quantization_config
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(dense, dtype=DTYPES[dtype] if dtype else "auto").eval()
    qconfig = QuantizationConfig(config_groups={"group_0": group(["Linear"], int_args(bits, symmetric, group_size))},
                                 ignore=["lm_head"])
    apply_quantization_config(model, qconfig)
    mods = quantized_modules(model)
    if not mods:
        raise SystemExit(f"{dense}: no Linear module to quantize")
    with torch.no_grad():
        for _, m in mods:
            set_qparams(m)
    compressor = ModelCompressor.from_pretrained_model(model)
    compressor.compress_model(model)
    tmp = staged(out)
    try:
        model.save_pretrained(tmp)
        compressor.update_config(tmp)
        finish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"{len(mods)} modules: int{bits} {'sym' if symmetric else 'asym'} group {group_size}, "
          f"model dtype {next(model.parameters()).dtype}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dense", help="GGUF -> dense Hugging Face directory (float32), by transformers")
    d.add_argument("gguf")
    d.add_argument("out")
    q = sub.add_parser("quantize", help="dense Hugging Face directory -> compressed-tensors, by the library")
    q.add_argument("dense")
    q.add_argument("out")
    q.add_argument("--bits", type=int, default=4)
    q.add_argument("--group-size", type=int, default=64, help="values per group along a row (0: per channel)")
    q.add_argument("--asym", action="store_true", help="asymmetric (zero points); default symmetric")
    q.add_argument("--dtype", choices=sorted(DTYPES), help="model (and scale) dtype (default: the dense model's)")
    args = ap.parse_args(argv)
    if args.cmd == "dense":
        write_dense(args.gguf, args.out)
    else:
        write_quantized(args.dense, args.out, args.bits, args.group_size or None, not args.asym, args.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
