#!/usr/bin/env python3
"""Reference weight gradients for by-hand cross-checks of mpq (not run in CI).

  python3 tools/reference_grad.py MODEL --ids "1 403 407 ..." --out grads.safetensors [--float64] [--json]

Loss = mean over positions i = 0..n-2 of  -log softmax(logits[i])[ids[i+1]]
(the same mean NLL that tools/reference_logits.py prints), one forward pass over
the ids exactly as given (no BOS added).  Writes d loss / d W for every
nn.Linear weight as float32 tensors with Hugging Face names and HF layout
([out_features, in_features], q/k rows in HF rotate-half order) into a
safetensors file; metadata holds ids, loss, dtype, loader.

Tied embeddings: the lm_head is untied (its own copy of the embedding matrix)
before the backward pass, so "lm_head.weight" is the gradient through the
output projection only.  --embedding also writes "model.embed_tokens.weight"
(the gradient through the input lookup; nonzero only in rows of used ids).
For a tied model the gradient of the single shared matrix is the sum of both.

--gguf-names writes GGUF names (blk.N.attn_q.weight, output.weight, ...) and
permutes q/k gradient rows back to GGUF's interleaved RoPE order, so they line
up with the rows of the GGUF tensors (shape is still [rows=out, cols=in]).
MODEL and loader options are as in tools/reference_logits.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_logits as rl  # noqa: E402  (sets offline env vars)

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description="weight gradients of mean next-token cross-entropy")
    ap.add_argument("model", help=".gguf file or HF directory")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--ids", help="token ids, used exactly as given")
    g.add_argument("--text", help="text to tokenize with the model's tokenizer (no special tokens)")
    ap.add_argument("--out", required=True, help="output .safetensors (float32 gradients)")
    ap.add_argument("--float64", action="store_true", help="forward/backward in float64 (written as float32)")
    ap.add_argument("--loader", choices=("auto", "transformers", "gguf-py"), default="auto")
    ap.add_argument("--embedding", action="store_true", help="also write model.embed_tokens.weight gradient")
    ap.add_argument("--gguf-names", action="store_true", help="GGUF names and GGUF q/k row order")
    ap.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    args = ap.parse_args(argv)

    from safetensors.torch import save_file

    if args.text is not None:
        ids = rl.load_tokenizer(args.model)(args.text, add_special_tokens=False)["input_ids"]
        rl.log("ids:", " ".join(map(str, ids)))
    else:
        ids = rl.parse_ids(args.ids)
    if len(ids) < 2:
        raise SystemExit("need at least 2 ids")

    model, used = rl.load_model(args.model, args.loader, args.float64)
    cfg = model.config

    # Untie the output projection so its gradient is separate from the lookup's.
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is emb.weight
    if tied:
        head.weight = torch.nn.Parameter(emb.weight.detach().clone())

    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = None

    x = torch.tensor([ids], dtype=torch.long)
    pos = torch.arange(len(ids), dtype=torch.long)[None]
    with torch.enable_grad():
        logits = model(input_ids=x, position_ids=pos, use_cache=False).logits[0]
        lp = torch.log_softmax(logits, dim=-1)
        tgt = torch.tensor(ids[1:], dtype=torch.long)
        loss = -lp[:-1].gather(1, tgt[:, None]).mean()
        loss.backward()

    name_of = {id(p): n for n, p in model.named_parameters()}
    grads = {}
    for mname, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            n = f"{mname}.weight"
            assert name_of.get(id(mod.weight)) == n, (n, name_of.get(id(mod.weight)))
            grads[n] = mod.weight.grad
    if args.embedding:
        grads["model.embed_tokens.weight"] = emb.weight.grad

    n_kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    out = {}
    for n, gt in grads.items():
        if gt is None:
            raise SystemExit(f"no gradient for {n}")
        a = gt.detach().to(torch.float32).contiguous()
        if args.gguf_names:
            gn = rl.hf_name_to_gguf(n)
            if gn is None:
                raise SystemExit(f"no GGUF name for {n}")
            if ".q_proj." in n:
                a = torch.from_numpy(np.ascontiguousarray(rl.hf_to_gguf_qk(a.numpy(), cfg.num_attention_heads)))
            elif ".k_proj." in n:
                a = torch.from_numpy(np.ascontiguousarray(rl.hf_to_gguf_qk(a.numpy(), n_kv)))
            n = gn
        out[n] = a

    meta = {
        "ids": " ".join(map(str, ids)),
        "loss_mean_nll": repr(float(loss.item())),
        "dtype": "float64" if args.float64 else "float32",
        "loader": used,
        "model": os.path.abspath(args.model),
        "tied_embeddings_untied_for_grad": str(bool(tied)),
        "names": "gguf" if args.gguf_names else "hf",
    }
    save_file(out, args.out, metadata=meta)
    summary = {
        "out": args.out,
        "n_ids": len(ids),
        "loss": float(loss.item()),
        "n_tensors": len(out),
        "tensors": {k: {"shape": list(v.shape), "l2": float(v.double().norm()), "maxabs": float(v.abs().max())}
                    for k, v in out.items()},
        **{k: v for k, v in meta.items() if k not in ("ids",)},
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"loss(mean NLL)={summary['loss']:.10f} n_ids={len(ids)} tensors={len(out)} -> {args.out}")
        for k, v in summary["tensors"].items():
            print(f"  {k:48s} {str(v['shape']):14s} l2={v['l2']:.6g} maxabs={v['maxabs']:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
