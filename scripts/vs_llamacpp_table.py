#!/usr/bin/env python3
"""Tables of scripts/vs_llamacpp.sh: reads the GGUFs and logs in OUT, writes OUT/table.csv and
OUT/types.md, and prints the Markdown table.

For every NAME.gguf in OUT (ref, llama-<T>, mpq-<T>, llama-plan-<T>):
  size         file size in bytes (and MB = 1e6 bytes)
  bpw          8 * (bytes of all tensor data) / (number of weights of all tensors), as
               llama-quantize prints it
  linear bpw   the same over the transformer blocks' Linear weights only
               (blk.N.{attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down}.weight)
  head         the types of token_embd.weight (and output.weight when the head is not tied)
  PPL, mean KLD (with its +/-), KLD p99, same top p: from NAME.kld.log (llama-perplexity
               --kl-divergence); the reference's PPL from ref.ppl.log
  pp512, tg128 tokens/s from NAME.bench.json (llama-bench)
  mpq PPL / KLD from NAME.mpq.json when the script ran with MPQ_RULER=1

Needs numpy and gguf-py (the script puts the llama.cpp tree's gguf-py on PYTHONPATH).
"""

import argparse
import csv
import json
import os
import re
import sys
from collections import Counter

LINEAR = re.compile(r"^blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$")
ROLE = re.compile(r"^blk\.\d+\.(.+)$")


def ggml_name(gguf_py_name):
    """ggml's type name (q4_K, iq4_nl, f32) from gguf-py's enum name (Q4_K, IQ4_NL, F32)."""
    name = gguf_py_name.lower()
    return name[:-2] + "_K" if name.endswith("_k") else name


def gguf_stats(path):
    import gguf  # noqa: PLC0415 (imported here so that --help works without numpy)

    reader = gguf.GGUFReader(path)
    total_bytes = total_n = lin_bytes = lin_n = 0
    head = {}
    mix = Counter()  # (role, type) -> count
    for t in reader.tensors:
        n, nbytes = int(t.n_elements), int(t.n_bytes)
        ttype = ggml_name(t.tensor_type.name)
        total_bytes += nbytes
        total_n += n
        if LINEAR.match(t.name):
            lin_bytes += nbytes
            lin_n += n
        if t.name in ("token_embd.weight", "output.weight"):
            head[t.name.split(".")[0]] = ttype
        m = ROLE.match(t.name)
        mix[(m.group(1) if m else t.name, ttype)] += 1
    return {
        "size": os.path.getsize(path),
        "n_weights": total_n,
        "bpw": 8.0 * total_bytes / total_n,
        "linear_bpw": 8.0 * lin_bytes / lin_n if lin_n else float("nan"),
        "head": "/".join(f"{k}:{v}" for k, v in sorted(head.items())),
        "mix": mix,
    }


def grab(pattern, text, cast=float):
    m = re.search(pattern, text, re.MULTILINE)
    return cast(m.group(1)) if m else None


def kld_stats(path):
    if not os.path.exists(path):
        return {}
    text = open(path, encoding="utf-8", errors="replace").read()
    return {
        "ppl": grab(r"^Mean PPL\(Q\)\s*:\s*([0-9.]+)", text),
        "ppl_base": grab(r"^Mean PPL\(base\)\s*:\s*([0-9.]+)", text),
        "kld": grab(r"^Mean\s+KLD:\s*([0-9.]+)", text),
        "kld_err": grab(r"^Mean\s+KLD:\s*[0-9.]+\s*±\s*([0-9.]+)", text),
        "kld_p99": grab(r"^99\.0%\s+KLD:\s*([0-9.]+)", text),
        "top1": grab(r"^Same top p:\s*([0-9.]+)", text),
    }


def ref_ppl(path):
    if not os.path.exists(path):
        return None
    return grab(r"Final estimate: PPL = ([0-9.]+)", open(path, encoding="utf-8", errors="replace").read())


def bench_stats(path):
    if not os.path.exists(path):
        return {}
    out = {}
    for row in json.load(open(path, encoding="utf-8")):
        if row.get("n_prompt", 0) > 0 and row.get("n_gen", 0) == 0:
            out["pp"] = (row["avg_ts"], row["stddev_ts"], row["n_prompt"])
        elif row.get("n_gen", 0) > 0 and row.get("n_prompt", 0) == 0:
            out["tg"] = (row["avg_ts"], row["stddev_ts"], row["n_gen"])
    return out


def mpq_stats(path):
    if not os.path.exists(path):
        return {}
    data = json.load(open(path, encoding="utf-8"))
    return {"mpq_ppl": data.get("ppl"), "mpq_kld": data.get("kld_mean")}


def fmt(v, spec):
    return "" if v is None else format(v, spec)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--llamacpp-dir", default="")
    parser.add_argument("--chunks", type=int, default=60)
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.llamacpp_dir:
        sys.path.insert(0, os.path.join(args.llamacpp_dir, "gguf-py"))

    names = sorted(f[:-5] for f in os.listdir(args.out)
                   if f.endswith(".gguf") and not f.endswith(".tmp.gguf") and f != "imatrix.gguf")
    rows = []
    for name in names:
        row = {"name": name, **gguf_stats(os.path.join(args.out, name + ".gguf"))}
        row.update(kld_stats(os.path.join(args.out, name + ".kld.log")))
        if name == "ref":
            row["ppl"] = ref_ppl(os.path.join(args.out, "ref.ppl.log"))
        row.update(bench_stats(os.path.join(args.out, name + ".bench.json")))
        row.update(mpq_stats(os.path.join(args.out, name + ".mpq.json")))
        rows.append(row)
    rows.sort(key=lambda r: (r["name"] != "ref", r["size"]))

    with open(os.path.join(args.out, "table.csv.tmp"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["name", "size_bytes", "bpw", "linear_bpw", "head", "ppl", "kld_mean", "kld_err",
                    "kld_p99", "same_top_p_pct", "pp512_tps", "tg128_tps", "mpq_ppl", "mpq_kld"])
        for r in rows:
            w.writerow([r["name"], r["size"], f"{r['bpw']:.4f}", f"{r['linear_bpw']:.4f}", r["head"],
                        r.get("ppl"), r.get("kld"), r.get("kld_err"), r.get("kld_p99"), r.get("top1"),
                        r["pp"][0] if "pp" in r else None, r["tg"][0] if "tg" in r else None,
                        r.get("mpq_ppl"), r.get("mpq_kld")])
    os.replace(os.path.join(args.out, "table.csv.tmp"), os.path.join(args.out, "table.csv"))

    with open(os.path.join(args.out, "types.md.tmp"), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(f"### {r['name']}.gguf\n\n| tensor | type | count |\n|---|---|---:|\n")
            for (role, ttype), count in sorted(r["mix"].items()):
                f.write(f"| {role} | {ttype} | {count} |\n")
            f.write("\n")
    os.replace(os.path.join(args.out, "types.md.tmp"), os.path.join(args.out, "types.md"))

    has_mpq = any("mpq_ppl" in r and r["mpq_ppl"] is not None for r in rows)
    print(f"WikiText-2 test, first {args.chunks} chunks of {args.ctx} tokens; KL divergence against "
          f"ref.gguf (F32); llama-bench with {args.threads} threads (tokens/s, mean ± sd).\n")
    head = ("| file | size (MB) | bpw | Linear bpw | head | PPL | mean KLD | KLD p99 | same top p (%) "
            "| pp512 (t/s) | tg128 (t/s) |")
    sep = "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
    if has_mpq:
        head += " mpq PPL | mpq KLD |"
        sep += "---:|---:|"
    print(head)
    print(sep)
    for r in rows:
        kld = "" if r.get("kld") is None else f"{r['kld']:.5f} ± {r['kld_err']:.5f}"
        pp = "" if "pp" not in r else f"{r['pp'][0]:.0f} ± {r['pp'][1]:.0f}"
        tg = "" if "tg" not in r else f"{r['tg'][0]:.1f} ± {r['tg'][1]:.1f}"
        line = (f"| {r['name']} | {r['size'] / 1e6:.2f} | {r['bpw']:.3f} | {r['linear_bpw']:.3f} | "
                f"{r['head']} | {fmt(r.get('ppl'), '.4f')} | {kld} | {fmt(r.get('kld_p99'), '.4f')} | "
                f"{fmt(r.get('top1'), '.2f')} | {pp} | {tg} |")
        if has_mpq:
            line += f" {fmt(r.get('mpq_ppl'), '.4f')} | {fmt(r.get('mpq_kld'), '.5f')} |"
        print(line)


if __name__ == "__main__":
    main()
