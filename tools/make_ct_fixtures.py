#!/usr/bin/env python3
"""Write compressed-tensors fixtures made by the compressed-tensors library itself.

Run by hand (not in CI), in the interop venv of docs/INTEROP.md:

    /work/venvs/interop/bin/python tools/make_ct_fixtures.py [--out tests/data/ct] [--check]

For every scheme below it builds the same tiny random LlamaForCausalLM (seed 0), attaches the
scheme with compressed_tensors.quantization.apply_quantization_config, computes each weight's
scale / zero point / global scale with the library's own calculate_qparams / generate_gparam from
the weight's min and max (what a memoryless min-max observer gives), compresses with
ModelCompressor.compress_model, saves with save_pretrained + ModelCompressor.update_config
(the library's save path, as llm-compressor drives it), and writes to tests/data/ct/:

    <scheme>/config.json, model.safetensors   the checkpoint as the library wrote it
    <scheme>.reference.safetensors   (beside the directory, not in it: vLLM loads every
                                     *.safetensors of a model directory that has no index)
                                     for every quantized module <m>, from the library's own
                                     decompressor run on the saved tensors:
        <m>.weight        F32 [out, in]     BaseCompressor.decompress(...)["weight"] upcast to
                                            f32 (the library computes it in the scale's dtype)
        <m>.weight_q      I8  [out, in]     int formats: unpack_from_int32(weight_packed) (signed)
        <m>.weight_q_x2   I8  [out, in]     fp4 formats: 2 x unpack_fp4_from_uint8(...) (2 x E2M1)
        <m>.weight_zero_point_q I8 [out, groups]  asymmetric int: the unpacked zero points
    README.md is written next to the fixtures (how, versions, sizes).

--check reloads every fixture with transformers (default path and dequantize=True) and compares
the Linear weights with <scheme>.reference.safetensors; the result is printed, not asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

import torch

import compressed_tensors
import safetensors
import transformers
from compressed_tensors.compressors import BaseCompressor, ModelCompressor
from compressed_tensors.compressors.nvfp4.helpers import unpack_fp4_from_uint8
from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
from compressed_tensors.quantization import (
    QuantizationArgs,
    QuantizationConfig,
    QuantizationScheme,
    QuantizationStatus,
    QuantizationStrategy,
    apply_quantization_config,
)
from compressed_tensors.quantization.utils import calculate_qparams, generate_gparam
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

# The tiny model. head_dim 32 is the smallest vLLM's CPU attention takes. in_features are 32
# (q/k/v/gate/up) and 64 (o/down), multiples of every group size used below (compressed-tensors
# refuses to quantize a group that does not divide a row; so does vLLM). A scheme may override dims.
MODEL = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=32,
    vocab_size=96,
    max_position_embeddings=128,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
)
SEED = 0


def int_args(bits, symmetric, group_size=None):
    if group_size is None:
        return QuantizationArgs(num_bits=bits, type="int", symmetric=symmetric, strategy="channel")
    return QuantizationArgs(
        num_bits=bits, type="int", symmetric=symmetric, strategy="group", group_size=group_size
    )


FP8_CHANNEL = QuantizationArgs(num_bits=8, type="float", symmetric=True, strategy="channel")
NVFP4_ARGS = QuantizationArgs(
    num_bits=4, type="float", symmetric=True, strategy="tensor_group", group_size=16,
    scale_dtype=torch.float8_e4m3fn, zp_dtype=torch.float8_e4m3fn,
)
MXFP4_ARGS = QuantizationArgs(
    num_bits=4, type="float", symmetric=True, strategy="group", group_size=32,
    scale_dtype=torch.uint8, zp_dtype=torch.uint8,
)


def group(targets, weights, fmt=None):
    return QuantizationScheme(targets=targets, weights=weights, format=fmt)


# name -> (model dtype, config groups, ignore list[, model overrides]). Formats left None are inferred by the
# library (compressed_tensors.compressors.format.infer_module_format); weight-only FP8 would be
# inferred as "naive-quantized" (float-quantized only matches W8A8), so it is set explicitly.
SCHEMES = {
    # f16 model: f16 scales, the scale type mpq writes for int formats.
    "w4a16_asym_g32": (torch.float16, {"group_0": group(["Linear"], int_args(4, False, 32))}, ["lm_head"]),
    "w4a16_sym_g32": (torch.bfloat16, {"group_0": group(["Linear"], int_args(4, True, 32))}, ["lm_head"]),
    "w8a16_channel": (torch.bfloat16, {"group_0": group(["Linear"], int_args(8, True))}, ["lm_head"]),
    "w4a16_asym_channel": (torch.bfloat16, {"group_0": group(["Linear"], int_args(4, False))}, ["lm_head"]),
    # intermediate 80: gate/up have 80 rows (80 * 3 bits = 7.5 words: the zero points end
    # mid-word) and down_proj 80 columns (each row's codes end mid-word too).
    "w3a16_asym_g16": (torch.bfloat16, {"group_0": group(["Linear"], int_args(3, False, 16))}, ["lm_head"],
                       {"intermediate_size": 80}),
    "fp8_channel": (torch.bfloat16, {"group_0": group(["Linear"], FP8_CHANNEL, "float-quantized")}, ["lm_head"]),
    "nvfp4a16": (torch.bfloat16, {"group_0": group(["Linear"], NVFP4_ARGS)}, ["lm_head"]),
    "mxfp4a16": (torch.bfloat16, {"group_0": group(["Linear"], MXFP4_ARGS)}, ["lm_head"]),
    # Two groups of different formats, exact module names and a regex, one module left dense.
    "mixed_int4_fp8": (
        torch.bfloat16,
        {
            "group_0": group(["re:.*self_attn\\.(q|k|v|o)_proj$"], int_args(4, True, 32)),
            "group_1": group(
                [f"model.layers.{i}.mlp.{n}" for i in range(2) for n in ("gate_proj", "up_proj", "down_proj")],
                FP8_CHANNEL, "float-quantized",
            ),
        },
        ["lm_head", "model.layers.1.mlp.down_proj"],
    ),
    # Two groups, both pack-quantized (int4 group + int8 channel): what vLLM's CPU backend runs.
    "mixed_int4_int8": (
        torch.bfloat16,
        {
            "group_0": group(["re:.*self_attn\\.(q|k|v|o)_proj$"], int_args(4, False, 32)),
            "group_1": group(["re:.*mlp\\.(gate|up|down)_proj$"], int_args(8, True)),
        },
        ["lm_head"],
    ),
}


def build_model(dtype, overrides=None):
    torch.manual_seed(SEED)
    config = LlamaConfig(**{**MODEL, **(overrides or {})})
    model = LlamaForCausalLM(config)
    # Larger-than-default weights (std 0.02 would make every group nearly the same): a spread
    # of magnitudes per row, deterministic.
    with torch.no_grad():
        g = torch.Generator().manual_seed(SEED + 1)
        for name, p in model.named_parameters():
            if p.ndim == 2:
                row_scale = torch.exp(torch.randn(p.shape[0], 1, generator=g) * 0.5)
                p.copy_(torch.randn(p.shape, generator=g) * 0.05 * row_scale)
    return model.to(dtype).eval()


def set_qparams(module):
    """Scale / zero point / global scale of one weight, from its min and max, by the library."""
    args: QuantizationArgs = module.quantization_scheme.weights
    w = module.weight.detach()
    global_scale = None
    if args.strategy == QuantizationStrategy.TENSOR_GROUP:
        global_scale = generate_gparam(w.min(), w.max())  # f32 [1], a divisor of the scale
        module.weight_global_scale.data.copy_(global_scale)
    if args.strategy == QuantizationStrategy.CHANNEL:
        lo, hi = w.amin(dim=-1, keepdim=True), w.amax(dim=-1, keepdim=True)
    elif args.strategy in (QuantizationStrategy.GROUP, QuantizationStrategy.TENSOR_GROUP):
        wg = w.unflatten(-1, (w.shape[-1] // args.group_size, args.group_size))
        lo, hi = wg.amin(dim=-1), wg.amax(dim=-1)
    else:
        raise SystemExit(f"strategy {args.strategy} not used by these fixtures")
    scale, zero = calculate_qparams(lo, hi, args, global_scale=global_scale)
    module.weight_scale.data.copy_(scale.to(module.weight_scale.dtype))
    if hasattr(module, "weight_zero_point"):
        module.weight_zero_point.data.copy_(zero.to(module.weight_zero_point.dtype))
    module.quantization_status = QuantizationStatus.FROZEN


def quantized_modules(model):
    return [(n, m) for n, m in model.named_modules() if getattr(m, "quantization_scheme", None) is not None
            and m.quantization_scheme.weights is not None]


def write_fixture(name, out_root):
    dtype, groups, ignore, *overrides = SCHEMES[name]
    model = build_model(dtype, overrides[0] if overrides else None)
    qconfig = QuantizationConfig(config_groups=groups, ignore=ignore)
    apply_quantization_config(model, qconfig)
    mods = quantized_modules(model)
    for _, m in mods:
        set_qparams(m)
    compressor = ModelCompressor.from_pretrained_model(model)
    compressor.compress_model(model)
    # compress_model attaches a decompress-on-forward hook; it is not saved.
    final = os.path.join(out_root, name)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", dir=out_root)
    model.save_pretrained(tmp)
    compressor.update_config(tmp)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(tmp, extra)):
            os.remove(os.path.join(tmp, extra))
    ref_tmp = os.path.join(out_root, f".{name}.reference.safetensors.tmp")
    write_reference(tmp, qconfig_from_dir(tmp), ref_tmp)
    os.chmod(tmp, 0o755)
    for f in os.listdir(tmp):
        os.chmod(os.path.join(tmp, f), 0o644)
    if os.path.exists(final):
        shutil.rmtree(final)
    os.rename(tmp, final)
    os.chmod(ref_tmp, 0o644)
    os.replace(ref_tmp, reference_path(final))
    return final


def qconfig_from_dir(path):
    with open(os.path.join(path, "config.json")) as f:
        qc = json.load(f)["quantization_config"]
    return QuantizationConfig.model_validate(qc)


def scheme_of(qconfig, module_name):
    """The config group a saved module belongs to (exact names first, then regexes / classes)."""
    from compressed_tensors.utils.match import match_name
    for scheme in qconfig.config_groups.values():
        for target in scheme.targets:
            if target == "Linear" or match_name(module_name, target):
                return scheme
    return None


def reference_path(fixture_dir):
    return fixture_dir.rstrip("/") + ".reference.safetensors"


def write_reference(path, qconfig, out):
    tensors = load_file(os.path.join(path, "model.safetensors"))
    modules = sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith(("weight_packed", "weight_scale"))})
    ref = {}
    for m in modules:
        scheme = scheme_of(qconfig, m)
        fmt = scheme.format or qconfig.format
        local = {k[len(m) + 1:]: v for k, v in tensors.items() if k.startswith(m + ".")}
        compressor = BaseCompressor.get_value_from_registry(fmt)
        dec = compressor.decompress(dict(local), scheme)
        ref[f"{m}.weight"] = dec["weight"].to(torch.float32).contiguous()
        args = scheme.weights
        if "weight_packed" in local and args.type == "int":
            shape = torch.Size(local["weight_shape"].tolist())
            ref[f"{m}.weight_q"] = unpack_from_int32(local["weight_packed"], args.num_bits, shape).contiguous()
            if "weight_zero_point" in local:
                zshape = (shape[0], local["weight_scale"].shape[-1])
                ref[f"{m}.weight_zero_point_q"] = unpack_from_int32(
                    local["weight_zero_point"], args.num_bits, zshape, packed_dim=0).contiguous()
        elif "weight_packed" in local:
            # E2M1 values times 2 are the integers -12..12: stored as I8 to keep the file small.
            rows, half = local["weight_packed"].shape
            values = unpack_fp4_from_uint8(local["weight_packed"], rows, 2 * half).to(torch.float32)
            ref[f"{m}.weight_q_x2"] = (values * 2).round().to(torch.int8).contiguous()
    # One metadata key: safetensors writes a metadata map in no fixed order, and the fixtures
    # should come out byte-identical on every run.
    save_file(ref, out, metadata={
        "made_by": f"tools/make_ct_fixtures.py, compressed-tensors {compressed_tensors.__version__}",
    })


def check_fixture(path):
    """Load with transformers both ways; max |W - reference| over the quantized modules."""
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig
    ref = load_file(reference_path(path))
    out = {}
    for label, kwargs in (("default", {}), ("dequantize", {"quantization_config": CompressedTensorsConfig(dequantize=True)})):
        try:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
            ids = torch.tensor([[1, 5, 9, 17, 33]])
            with torch.no_grad():
                model(ids)  # the default path decompresses on the first forward
            sd = model.state_dict()
            diff = 0.0
            for k, v in ref.items():
                if k.endswith(".weight"):
                    diff = max(diff, (sd[k].float() - v).abs().max().item())
            out[label] = f"max|dW|={diff:.3g}"
        except Exception as e:  # report, do not stop: this is a survey
            out[label] = f"FAIL {type(e).__name__}: {str(e).splitlines()[0][:160]}"
    return out


def dir_size(path):
    return {f: os.path.getsize(os.path.join(path, f)) for f in sorted(os.listdir(path))}


def write_readme(out_root, names):
    lines = [
        "# compressed-tensors fixtures",
        "",
        "Made by the compressed-tensors library itself with `tools/make_ct_fixtures.py` (see its",
        "docstring and docs/INTEROP.md): a random LlamaForCausalLM (hidden 32, intermediate 64 (80 for",
        "`w3a16_asym_g16`), 2 layers, 2 heads / 1 KV head, head_dim 32, vocab 96, tied embeddings, seed 0), qparams from",
        "`calculate_qparams` / `generate_gparam` on each weight's min/max, compressed with",
        "`ModelCompressor.compress_model`, saved with `save_pretrained` + `ModelCompressor.update_config`.",
        "`<fixture>.reference.safetensors` (beside the directory: vLLM would load it as a shard) holds",
        "the library's own decompression of every quantized module",
        "(`<m>.weight` F32) and the unpacked codes (`<m>.weight_q`, `<m>.weight_q_x2`, `<m>.weight_zero_point_q`).",
        "",
        f"Versions: compressed-tensors {compressed_tensors.__version__}, transformers {transformers.__version__},"
        f" torch {torch.__version__}, safetensors {safetensors.__version__}.",
        "",
        "| fixture | format | bytes (config.json, model.safetensors; reference) |",
        "|---|---|---|",
    ]
    for n in names:
        p = os.path.join(out_root, n)
        with open(os.path.join(p, "config.json")) as f:
            fmt = json.load(f)["quantization_config"]["format"]
        sizes = ", ".join(str(v) for v in dir_size(p).values()) + f"; {os.path.getsize(reference_path(p))}"
        lines.append(f"| `{n}` | `{fmt}` | {sizes} |")
    lines.append("")
    with open(os.path.join(out_root, "README.md.tmp"), "w") as f:
        f.write("\n".join(lines))
    os.replace(os.path.join(out_root, "README.md.tmp"), os.path.join(out_root, "README.md"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "ct"))
    ap.add_argument("--only", nargs="*", help="scheme names (default: all)")
    ap.add_argument("--check", action="store_true", help="reload each with transformers and compare")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    names = args.only or list(SCHEMES)
    for n in names:
        if n not in SCHEMES:
            raise SystemExit(f"unknown scheme {n}; known: {', '.join(SCHEMES)}")
        path = write_fixture(n, args.out)
        total = sum(dir_size(path).values()) + os.path.getsize(reference_path(path))
        print(f"{n}: {path} ({total} bytes)")
        if args.check:
            print("   ", check_fixture(path))
    write_readme(args.out, [n for n in SCHEMES if os.path.isdir(os.path.join(args.out, n))])


if __name__ == "__main__":
    sys.exit(main())
