#!/usr/bin/env python3
"""Markdown table of docs/RESULTS.md ("Plans"): the plans of scripts/plans.sh next to the uniform
schemes of scripts/baselines.sh with the same quantizer (RTN), grouped by budget."""
import json
import pathlib
import sys

plans, base = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
GROUPS = [
    ("≈ 8 bpw", ["tiers-8", "tiers-7.75", "tiers-7.5", "tiers-7.25", "tiers-7"], ["fp8_e4m3_channel-rtn", "int8_channel-rtn"]),
    ("≈ 4.5 bpw", ["knapsack-4.5", "channels-4.5", "rule", "int4_g64-rtn", "int4_g32-rtn"],
     ["int4_g128-rtn", "int4_g128-gptq"]),
    ("≈ 3 bpw", ["bqp-3", "knapsack-3-kld", "knapsack-3-fisher", "int3_g64-rtn"], ["int3_g128-rtn", "int2_g64-rtn"]),
]


def row(label, what, quant, ppl, bpw):
    print(f"| {label} | {what} | {bpw:.4f} | {quant['file_bytes'] / 1e6:.1f} | {ppl['ppl']:.4f} | {ppl['ppl_ratio']:.4f} | "
          f"{ppl['kld_mean']:.5f} | {ppl['top1_agree']:.4f} |")


print("| budget | model | bits/weight (Linear, exact) | model.safetensors MB | PPL | PPL ratio | mean KLD | top-1 agree |")
print("|---|---|---|---|---|---|---|---|")
for label, plan_names, uniform in GROUPS:
    for name in plan_names:
        p = plans / f"{name}.ppl.json"
        if not p.exists():
            continue
        quant = json.loads((plans / f"{name}.quant.json").read_text())
        if (plans / f"{name}.plan.json").exists():
            plan = json.loads((plans / f"{name}.plan.json").read_text())
            what = f"plan `{name}` ({plan['method']}, cost {plan.get('cost') or '-'})"
        else:
            what = f"uniform {name.replace('-', ' ')}"
        row(label, what, quant, json.loads(p.read_text()), quant["bits_per_weight"])
    for name in uniform:
        p = base / f"{name}.ppl.json"
        if not p.exists():
            continue
        quant = json.loads((base / f"{name}.quant.json").read_text())
        row(label, f"uniform {name.replace('-', ' ')}", quant, json.loads(p.read_text()), quant["bits_per_weight"])
