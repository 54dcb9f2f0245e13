#!/usr/bin/env python3
"""Compare two raw little-endian float32 logit dumps of shape [n, vocab].

  python3 tools/compare_logits.py ref.bin ours.bin --vocab 49152 [--ids "..."] [--json]

Prints (a = first file, the reference; b = second):
  max_abs_diff        max |a - b| over all entries (and where)
  max_rel_diff        max over rows of  max_j |a - b| / max_j |a|   (row-normalised)
  mean_kl / max_kl    KL(softmax a || softmax b) per row, in float64, in nats
  argmax_agree        rows whose argmax is equal
With --ids (the ids both dumps were run on) also the mean NLL of the next id
under a and under b.  Only numpy is needed.  Exit status 0 always unless the
files cannot be compared (size mismatch -> 2); use --max-kl / --max-rel to make
it fail (exit 1) above a threshold.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def load(path: str, vocab: int) -> np.ndarray:
    a = np.fromfile(path, dtype="<f4")
    if a.size % vocab:
        raise SystemExit(f"{path}: {a.size} floats is not a multiple of vocab={vocab}")
    return a.reshape(-1, vocab).astype(np.float64)


def log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def main(argv=None):
    ap = argparse.ArgumentParser(description="compare two float32 [n, vocab] logit dumps")
    ap.add_argument("a", help="reference logits (raw float32 LE)")
    ap.add_argument("b", help="logits to check (raw float32 LE)")
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--ids", help="ids the logits were computed for (adds mean NLL of a and b)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--per-row", action="store_true", help="also print per-row stats")
    ap.add_argument("--max-kl", type=float, help="exit 1 if mean KL exceeds this")
    ap.add_argument("--max-rel", type=float, help="exit 1 if max_rel_diff exceeds this")
    args = ap.parse_args(argv)

    a = load(args.a, args.vocab)
    b = load(args.b, args.vocab)
    if a.shape != b.shape:
        print(f"shape mismatch: {args.a} {a.shape} vs {args.b} {b.shape}", file=sys.stderr)
        return 2
    n = a.shape[0]
    finite = bool(np.isfinite(a).all() and np.isfinite(b).all())

    d = np.abs(a - b)
    flat = int(d.argmax())
    r_abs, c_abs = divmod(flat, args.vocab)
    row_maxdiff = d.max(axis=1)
    row_scale = np.maximum(np.abs(a).max(axis=1), 1e-30)
    row_rel = row_maxdiff / row_scale

    la, lb = log_softmax(a), log_softmax(b)
    pa = np.exp(la)
    kl = (pa * (la - lb)).sum(axis=1)
    am_a, am_b = a.argmax(axis=1), b.argmax(axis=1)
    agree = am_a == am_b

    res = {
        "n": n,
        "vocab": args.vocab,
        "finite": finite,
        "max_abs_diff": float(d.max()),
        "max_abs_diff_at": [r_abs, c_abs],
        "mean_abs_diff": float(d.mean()),
        "max_rel_diff": float(row_rel.max()),
        "max_rel_diff_row": int(row_rel.argmax()),
        "mean_kl": float(kl.mean()),
        "max_kl": float(kl.max()),
        "max_kl_row": int(kl.argmax()),
        "argmax_agree": int(agree.sum()),
        "argmax_agree_frac": float(agree.mean()),
        "argmax_disagree_rows": [int(i) for i in np.nonzero(~agree)[0]],
    }
    if args.ids:
        ids = [int(x) for x in args.ids.replace(",", " ").split()]
        if len(ids) != n:
            print(f"--ids has {len(ids)} ids but dumps have {n} rows", file=sys.stderr)
            return 2
        if n > 1:
            tgt = np.array(ids[1:])
            nll_a = -la[np.arange(n - 1), tgt]
            nll_b = -lb[np.arange(n - 1), tgt]
            res["mean_nll_a"] = float(nll_a.mean())
            res["mean_nll_b"] = float(nll_b.mean())
            res["max_abs_nll_diff"] = float(np.abs(nll_a - nll_b).max())

    if args.json:
        print(json.dumps(res))
    else:
        print(f"rows={n} vocab={args.vocab} finite={finite}")
        print(f"max_abs_diff   = {res['max_abs_diff']:.6g}  at row {r_abs} col {c_abs} "
              f"(a={a[r_abs, c_abs]:.6g} b={b[r_abs, c_abs]:.6g})")
        print(f"mean_abs_diff  = {res['mean_abs_diff']:.6g}")
        print(f"max_rel_diff   = {res['max_rel_diff']:.6g}  (row {res['max_rel_diff_row']}; |a-b| / max|a| per row)")
        print(f"mean_kl(a||b)  = {res['mean_kl']:.6g}  max_kl = {res['max_kl']:.6g} (row {res['max_kl_row']})")
        print(f"argmax_agree   = {res['argmax_agree']}/{n} ({100 * res['argmax_agree_frac']:.2f}%)"
              + (f"  disagree rows: {res['argmax_disagree_rows']}" if res['argmax_disagree_rows'] else ""))
        if "mean_nll_a" in res:
            print(f"mean_nll a={res['mean_nll_a']:.10f} b={res['mean_nll_b']:.10f} "
                  f"max|dnll|={res['max_abs_nll_diff']:.3g}")
        if args.per_row:
            for i in range(n):
                print(f"  row {i:4d}: maxabs={row_maxdiff[i]:.4g} rel={row_rel[i]:.4g} kl={kl[i]:.4g} "
                      f"argmax a={am_a[i]} b={am_b[i]}")
    bad = (args.max_kl is not None and res["mean_kl"] > args.max_kl) or (
        args.max_rel is not None and res["max_rel_diff"] > args.max_rel) or not finite
    return 1 if (bad and (args.max_kl is not None or args.max_rel is not None)) else 0


if __name__ == "__main__":
    sys.exit(main())
