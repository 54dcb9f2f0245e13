#!/usr/bin/env python3
"""Markdown tables of docs/RESULTS.md ("Sensitivity") from the files of scripts/sensitivity.sh."""
import json
import math
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
KINDS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):  # average ranks over ties
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2.0
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = math.sqrt(sum((x - ma) ** 2 for x in ra))
    vb = math.sqrt(sum((y - mb) ** 2 for y in rb))
    return cov / (va * vb)


kld = json.loads((out / "kld.json").read_text())
tensors = kld["tensors"]
formats = kld["formats"]
print(f"Held-out set: {kld['heldout']['tokens']} tokens; KL of the unquantized model against itself: "
      f"{kld['kld_unquantized']:.2e}.\n")
print("### Rank correlation with kld (Spearman, over the 210 tensors)\n")
print("| format | fisher vs kld | output vs kld |")
print("|---|---|---|")
pooled = {"fisher": [], "output": [], "kld": []}
for f in formats:
    k = [t["kld"][f] for t in tensors]
    row = []
    for m in ("fisher", "output"):
        v = [t[m][f] for t in tensors]
        row.append(spearman(v, k))
        pooled[m] += v
    pooled["kld"] += k
    print(f"| {f} | {row[0]:.3f} | {row[1]:.3f} |")
print(f"| all {len(formats)} formats pooled ({len(pooled['kld'])} pairs) | {spearman(pooled['fisher'], pooled['kld']):.3f} | "
      f"{spearman(pooled['output'], pooled['kld']):.3f} |\n")

for f in ("int4_g128", "int2_g64"):
    if f not in formats:
        continue
    print(f"### kld per layer x projection, {f} (RTN), mean KL x 1e3 nats/token\n")
    print("| layer | " + " | ".join(KINDS) + " | sum |")
    print("|---|" + "---|" * (len(KINDS) + 1))
    n_layers = max(t["layer"] for t in tensors) + 1
    for layer in range(n_layers):
        vals = [next(t["kld"][f] for t in tensors if t["layer"] == layer and t["kind"] == k) for k in KINDS]
        print(f"| {layer} | " + " | ".join(f"{1e3 * v:.2f}" for v in vals) + f" | {1e3 * sum(vals):.2f} |")
    print()

allj = json.loads((out / "all.json").read_text())
ch = allj["channels"]
print(f"### MixLLM channel salience: share of each projection's channels in the global top 10% "
      f"({ch['n_top']} of {ch['n_channels']})\n")
print("| projection | channels | in top 10% | share |")
print("|---|---|---|---|")
for k in KINDS:
    e = ch["by_kind"][k]
    print(f"| {k} | {e['channels']} | {e['top']} | {e['share']:.3f} |")
print("\nPer layer (share of the layer's channels in the global top 10%):\n")
by_layer = ch["by_layer"]
print("| " + " | ".join(str(e["layer"]) for e in by_layer) + " |")
print("|" + "---|" * len(by_layer))
print("| " + " | ".join(f"{e['share']:.2f}" for e in by_layer) + " |\n")

sh = json.loads((out / "shapley.json").read_text())
s, e = sh["shapley"], sh["shapley"]["estimate"]
print(f"### Shapley values of layers, {s['high']} -> {s['low']} (RTN), mean KL on {sh['heldout']['tokens']} held-out tokens\n")
print(f"{e['chains']} permutations ({'antithetic pairs' if s['antithetic'] else 'independent'}), {e['evaluations']} "
      f"evaluations; L(all {s['high']}) = {e['base_cost']:.4f}, L(all {s['low']}) = {e['full_cost']:.4f}. Quadratic fit: "
      f"R² {e['fit_r2']:.4f}, rank {e['fit_rank']}/{e['fit_parameters']}, RMSE {e['fit_rmse']:.4f}"
      f"{'; ' + e['fit_note'] if e['fit_note'] else ''}.\n")
print("| layer | Shapley value (permutation mean) | std error | fitted a + ½Σb | std error | a (linear) | Σ_j b_ij |")
print("|---|---|---|---|---|---|---|")
for i, name in enumerate(s["players"]):
    sb = sum(e["interaction"][i]) if e["interaction"] else 0.0
    print(f"| {name} | {e['value'][i]:.4f} | {e['value_std_error'][i]:.4f} | {e['fitted_value'][i]:.4f} | "
          f"{e['fitted_value_std_error'][i]:.4f} | {e['linear'][i]:.4f} | {sb:.4f} |")
print("\nStd error of the values (mean over layers) against the number of permutations:\n")
print("| permutations | " + " | ".join(str(p["chains"]) for p in e["std_error_curve"]) + " |")
print("|---|" + "---|" * len(e["std_error_curve"]))
print("| mean std error | " + " | ".join(f"{p['mean_std_error']:.4f}" for p in e["std_error_curve"]) + " |\n")
if e["interaction"]:
    pairs = [(e["interaction"][i][j], i, j) for i in range(len(s["players"])) for j in range(i + 1, len(s["players"]))]
    pairs.sort(key=lambda p: -abs(p[0]))
    print("Largest pairwise interactions b_ij (± bootstrap std error):\n")
    print("| pair | b_ij | std error |")
    print("|---|---|---|")
    for b, i, j in pairs[:8]:
        print(f"| {s['players'][i]} × {s['players'][j]} | {b:+.4f} | {e['interaction_std_error'][i][j]:.4f} |")
