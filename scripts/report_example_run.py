#!/usr/bin/env python3
"""Writes run.json (docs/REPORT.md) for the run directory scripts/report_example.sh made, from the
JSON that mpq's own commands printed there: plans, `mpq ppl --json`, `mpq bench --json`, the
files on disk. Keeps the candidate with the lowest mean KL divergence within the budget.

usage: report_example_run.py OUT MODEL BITS CALIB EVAL CHUNKS
"""
import json
import os
import sys

out, model, bits, calib, eval_text, chunks = sys.argv[1:7]
bits = float(bits)


def load(path):
    with open(path) as f:
        return json.load(f)


def dir_bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)
               if os.path.isfile(os.path.join(path, n)))


sens = load(os.path.join(out, "sensitivity.json"))
tensors = sens["tensors"]
weights = sum(t["rows"] * t["cols"] for t in tensors)


def uniform_bits(fmt):
    return sum(t["bits_per_weight"][fmt] * t["rows"] * t["cols"] for t in tensors) / weights


def first_number(obj, keys):
    for k in keys:
        if isinstance(obj, dict) and isinstance(obj.get(k), (int, float)):
            return float(obj[k])
    return None


candidates = []
plans = {"knapsack-fisher": "knapsack-fisher", "knapsack-output": "knapsack-output", "channels": "channels", "rule": "rule"}
uniform = {"uniform-int4_g128": "int4_g128:rtn", "uniform-int4_g64": "int4_g64:rtn", "uniform-nvfp4": "nvfp4:rtn"}
for name in list(plans) + list(uniform):
    ev = os.path.join(out, "eval")
    c = {"name": name, "model": "candidates/" + name}
    if name in plans:
        plan = load(os.path.join(out, "plans", plans[name] + ".json"))
        c.update(kind="plan", method=plan["method"], cost=plan["cost"], plan="plans/%s.json" % plans[name],
                 bits_per_weight=plan["bits_per_weight"])
    else:
        c.update(kind="uniform", method="uniform", scheme=uniform[name],
                 bits_per_weight=uniform_bits(uniform[name].split(":")[0]))
    try:
        ppl = load(os.path.join(ev, name + ".ppl.json"))
        bench = load(os.path.join(ev, name + ".bench.json"))
        secs = load(os.path.join(ev, name + ".seconds.json"))
        c.update(status="done", file_bytes=dir_bytes(os.path.join(out, c["model"])), ppl=ppl["ppl"],
                 kld_mean=ppl["kld_mean"], kld_p99=ppl["kld_p99"], top1_agree=ppl["top1_agree"],
                 decode_tok_s=first_number(bench.get("decode", bench), ["tg_tok_s", "tokens_per_s", "tok_s"]),
                 seconds=secs)
    except (OSError, KeyError, ValueError) as e:
        c.update(status="failed: %s" % e)
    candidates.append(c)

eligible = [c for c in candidates if c["status"] == "done" and c["bits_per_weight"] <= bits + 1e-12]
chosen = min(eligible, key=lambda c: c["kld_mean"])["name"]
ref = load(os.path.join(out, "eval", "reference.json"))
with open(os.path.join(out, "eval", "commands.txt")) as f:
    commands = [line.rstrip("\n") for line in f if line.strip()]
run = {
    "format": "mpq-auto-run", "version": 1,
    "model": {"path": model, "arch": sens["model"]["arch"], "parameters": sens["model"]["parameter_count"],
              "linear_weights": weights, "identity": sens["model"]},
    "budget": {"bits_per_weight": bits},
    "target": "mpq",
    "calibration": {"files": sens["calibration"]["files"], "samples": sens["calibration"]["n_samples"],
                    "len": sens["calibration"]["seq_len"], "seed": sens["calibration"]["seed"]},
    "evaluation": {"text": eval_text, "protocol": "mpq ppl --protocol llamacpp --kl-base", "ctx": 512,
                   "chunks": int(chunks)},
    "reference": {"ppl": ref["ppl"], "file_bytes": os.path.getsize(model)},
    "sensitivity": "sensitivity.json",
    "candidates": candidates,
    "chosen": chosen,
    "commands": commands,
}
with open(os.path.join(out, "run.json.tmp"), "w") as f:
    json.dump(run, f, indent=1, sort_keys=True)
os.replace(os.path.join(out, "run.json.tmp"), os.path.join(out, "run.json"))
print("%s/run.json: %d candidates, kept %s" % (out, len(candidates), chosen))
