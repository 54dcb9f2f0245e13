#!/usr/bin/env python3
"""Markdown tables of scripts/qwen15b.sh: fp reference, resources per step, the MixLLM table."""
import json
import pathlib
import re
import sys

out = pathlib.Path(sys.argv[1])


def load(name):
    f = out / f"{name}.json"
    return json.loads(f.read_text()) if f.exists() and f.stat().st_size else None


def resources(name):
    """(wall seconds, peak RSS GiB) from /usr/bin/time -v, or None."""
    f = out / f"{name}.time"
    if not f.exists():
        return None
    text = f.read_text()
    if "Maximum resident set size" not in text:  # still running, or killed
        return None
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    return secs, rss / 2**20


fp = load("fp-gptq")
lc = load("fp-llamacpp")
print("| reference (fp, dequantized Q4_K_M) | protocol | ctx | chunks | scored tokens | PPL |")
print("|---|---|---|---|---|---|")
for r in (lc, fp):
    if r:
        print(f"| fp32 | {r['protocol']} | {r['ctx']} | {r['n_chunks']} | {r['n_tokens']} | {r['ppl']:.4f} |")
print()
print("| step | wall | peak RSS |")
print("|---|---|---|")
for f in sorted(out.glob("*.time")):
    name = f.name[: -len(".time")]
    if not resources(name):
        continue
    wall, rss = resources(name)
    print(f"| {name} | {wall / 60:.1f} min | {rss:.2f} GiB |")
print()
print("| scheme | p (8-bit channels) | bits/weight (Linear) | PPL | PPL / fp | mean KLD | top-1 agree |")
print("|---|---|---|---|---|---|---|")
rows = [("int4_g128 RTN (= channels RTN p 0)", "int4_g128-rtn", "0"),
        ("int4_g128 GPTQ (= channels GPTQ p 0)", "int4_g128-gptq", "0")]
for f in sorted(out.glob("channels-*.ppl.json")):
    name = f.name[: -len(".ppl.json")]
    plan = json.loads((out / f"{name}.plan.json").read_text())
    quantizers = {e.get("quantizer", "rtn") for e in plan["tensors"].values()}
    rows.append((f"channels {'/'.join(sorted(quantizers)).upper()}", name, ""))
for label, name, p in rows:
    q, r = load(f"{name}.quant"), load(f"{name}.ppl")
    if not q or not r:
        continue
    if name.startswith("channels-"):
        plan = json.loads((out / f"{name}.plan.json").read_text())
        p = f"{plan['solver']['high_fraction'] * 100:.2f} %"
    print(f"| {label} | {p} | {q['bits_per_weight']:.4f} | {r['ppl']:.4f} | {r['ppl_ratio']:.4f} | "
          f"{r['kld_mean']:.5f} | {r['top1_agree']:.4f} |")

benches = [b for b in (load(f"bench.{i}") for i in range(1, 10)) if b]
if benches:
    import statistics
    print()
    print(f"Decode from packed weights, int4_g128 + int8_channel head, int8 activations ({len(benches)} runs, median):")
    print()
    print("| weight MiB read per token | decode tok/s | prompt tok/s | probed GB/s | roofline fraction |")
    print("|---|---|---|---|---|")
    med = lambda k: statistics.median(b[k] for b in benches)
    print(f"| {med('weight_bytes_per_token') / 2**20:.1f} | {med('tg_tok_s'):.2f} | {med('pp_tok_s'):.1f} | "
          f"{med('bandwidth_gb_s'):.1f} | {100 * med('roofline_fraction'):.1f} % |")

s_file = out / "S.json"
if s_file.exists():
    summary = json.loads(s_file.read_text()).get("channels")
    if summary:
        print()
        print("Channel salience: share of each projection's output channels in the global top 10%:")
        print()
        kinds = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        print("| " + " | ".join(kinds) + " |")
        print("|" + "---|" * len(kinds))
        print("| " + " | ".join(f"{summary['by_kind'][k]['share'] * 100:.1f} %" for k in kinds) + " |")
        layers = summary["by_layer"]
        print()
        print("Per layer (share of the layer's channels in the top 10%): " +
              ", ".join(f"{l['share'] * 100:.0f}" for l in layers) + " (layers 0.." + str(len(layers) - 1) + ", %)")
