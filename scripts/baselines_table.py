#!/usr/bin/env python3
"""Markdown table of the uniform baselines written by scripts/baselines.sh."""
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
ref = json.loads((out / "ref.json").read_text())
print(f"Reference (fp): PPL {ref['ppl']:.4f} over {ref['n_tokens']} scored tokens ({ref['n_chunks']} chunks of {ref['ctx']}).\n")
print("| scheme | quantizer | bits/weight (Linear) | model.safetensors MB | PPL | PPL ratio | mean KLD | KLD p99 | top-1 agree | quantize s |")
print("|---|---|---|---|---|---|---|---|---|---|")
for quant in sorted(out.glob("*.quant.json")):
    name = quant.name[: -len(".quant.json")]
    ppl_file = out / f"{name}.ppl.json"
    if not ppl_file.exists() or ppl_file.stat().st_size == 0:
        continue
    q = json.loads(quant.read_text())
    p = json.loads(ppl_file.read_text())
    scheme, quantizer = q["scheme"].split(":")
    print(f"| {scheme} | {quantizer} | {q['bits_per_weight']:.4f} | {q['file_bytes'] / 1e6:.1f} | {p['ppl']:.4f} | "
          f"{p['ppl_ratio']:.4f} | {p['kld_mean']:.5f} | {p['kld_p99']:.4f} | {p['top1_agree']:.4f} | {q['seconds']:.1f} |")
