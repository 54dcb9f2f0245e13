#!/usr/bin/env python3
"""Independent reference logits for by-hand cross-checks of mpq (not run in CI).

Runs ONE forward pass (positions 0..n-1, no KV cache reuse, no BOS added: the
ids are used exactly as given) with PyTorch + Hugging Face transformers and
writes every logit as raw little-endian float32 [n_ids, vocab] -- the same
layout as `mpq logits MODEL --ids "..." --out ours.bin`.

  python3 tools/reference_logits.py MODEL --ids "1 403 407" --out ref.bin [--json]
  python3 tools/reference_logits.py MODEL --text "Hello world" --out ref.bin

MODEL is a .gguf file or a Hugging Face model directory (config.json +
*.safetensors).  GGUF files are loaded by transformers' own GGUF loader
(gguf-py dequantizes every tensor to fp32, names are mapped to HF names and
q/k rows are permuted back to HF rotate-half order).  `--loader gguf-py` uses
this script's own independent loader instead (llama architecture only); it is
also the automatic fallback if transformers refuses the file.

--float64 runs the model in double precision: model.double() plus patched
RMSNorm / RoPE (transformers upcasts those to float32 only, which would
silently downcast a float64 model) and SDPA attention (the eager path does its
softmax in float32).  Logits are still written as float32.

NLL of position i is -log softmax(logits[i])[ids[i+1]] for i = 0..n-2, computed
in float64 from the logits.  Needs (pip, tested versions): torch 2.15.0,
transformers 5.23.0, accelerate (GGUF loading), gguf 0.19.0, numpy 2.4.6,
safetensors 0.8.0, tokenizers 0.23.3.  Runs offline (HF_HUB_OFFLINE=1).

Check: on ../shared/models/stories260K/hf with the golden ids,
--float64 gives mean_nll 0.3240996572646771 (golden 0.3240996572646769).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import types

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import torch


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def _quiet_transformers():
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:
        pass


# --------------------------------------------------------------------------
# Independent GGUF loader (llama architecture): gguf-py dequantize + own
# name mapping + q/k un-permutation.  Used for `--loader gguf-py` and as the
# fallback when transformers' GGUF loader fails.
# --------------------------------------------------------------------------

_GGUF_BLOCK_MAP = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GGUF_TOP_MAP = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def gguf_name_to_hf(name: str) -> str | None:
    if name in _GGUF_TOP_MAP:
        return _GGUF_TOP_MAP[name]
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _GGUF_BLOCK_MAP:
        return f"model.layers.{parts[1]}.{_GGUF_BLOCK_MAP[parts[2]]}.{parts[3]}"
    return None


def hf_name_to_gguf(name: str) -> str | None:
    inv_top = {v: k for k, v in _GGUF_TOP_MAP.items()}
    if name in inv_top:
        return inv_top[name]
    inv_blk = {v: k for k, v in _GGUF_BLOCK_MAP.items()}
    p = name.split(".")
    # model.layers.N.<a>.<b>.weight
    if len(p) == 6 and p[0] == "model" and p[1] == "layers":
        key = f"{p[3]}.{p[4]}"
        if key in inv_blk:
            return f"blk.{p[2]}.{inv_blk[key]}.{p[5]}"
    if len(p) == 5 and p[0] == "model" and p[1] == "layers" and p[3] in inv_blk:
        return f"blk.{p[2]}.{inv_blk[p[3]]}.{p[4]}"
    return None


def gguf_to_hf_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """GGUF interleaved-RoPE row order -> HF rotate-half row order.

    HF row h*hd + i*hd/2 + j  <-  GGUF row h*hd + 2*j + i   (i in {0,1}).
    """
    rows = w.shape[0]
    hd = rows // n_head
    return w.reshape(n_head, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_to_gguf_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of gguf_to_hf_qk (HF rotate-half order -> GGUF interleaved)."""
    rows = w.shape[0]
    hd = rows // n_head
    return w.reshape(n_head, 2, hd // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    try:
        return f.contents()
    except Exception:  # older gguf-py
        v = f.parts[f.data[0]]
        return v.tolist()[0] if hasattr(v, "tolist") and len(v) == 1 else v


def load_gguf_manual(path: str, dtype=torch.float32):
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from transformers import LlamaConfig, LlamaForCausalLM

    r = GGUFReader(path)
    arch = _field(r, "general.architecture")
    if arch != "llama":
        raise SystemExit(f"gguf-py loader supports llama only, file has {arch!r}")
    a = "llama"
    n_embd = int(_field(r, f"{a}.embedding_length"))
    n_head = int(_field(r, f"{a}.attention.head_count"))
    n_kv = int(_field(r, f"{a}.attention.head_count_kv", n_head))
    n_layer = int(_field(r, f"{a}.block_count"))
    n_ff = int(_field(r, f"{a}.feed_forward_length"))
    eps = float(_field(r, f"{a}.attention.layer_norm_rms_epsilon", 1e-5))
    theta = float(_field(r, f"{a}.rope.freq_base", 10000.0))
    ctx = int(_field(r, f"{a}.context_length", 2048))
    head_dim = int(_field(r, f"{a}.attention.key_length", n_embd // n_head))

    tensors = {}
    for t in r.tensors:
        hf = gguf_name_to_hf(t.name)
        if hf is None:
            log(f"[gguf-py] skipping unmapped tensor {t.name}")
            continue
        w = np.array(dequantize(t.data, t.tensor_type), dtype=np.float32, copy=True)
        # gguf shape lists ne0 first; numpy rows are the last ne
        w = w.reshape([int(x) for x in reversed(t.shape)]) if w.ndim != len(t.shape) else w
        if ".q_proj." in hf:
            w = gguf_to_hf_qk(w, n_head)
        elif ".k_proj." in hf:
            w = gguf_to_hf_qk(w, n_kv)
        tensors[hf] = torch.from_numpy(np.ascontiguousarray(w))  # writable copy
    vocab = tensors["model.embed_tokens.weight"].shape[0]
    tied = "lm_head.weight" not in tensors
    cfg_kw = dict(
        vocab_size=vocab,
        hidden_size=n_embd,
        intermediate_size=n_ff,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        num_key_value_heads=n_kv,
        head_dim=head_dim,
        rms_norm_eps=eps,
        max_position_embeddings=ctx,
        tie_word_embeddings=tied,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=_field(r, "tokenizer.ggml.bos_token_id", 1),
        eos_token_id=_field(r, "tokenizer.ggml.eos_token_id", 2),
    )
    try:
        cfg = LlamaConfig(**cfg_kw, rope_parameters={"rope_type": "default", "rope_theta": theta})
    except TypeError:  # transformers < 5
        cfg = LlamaConfig(**cfg_kw, rope_theta=theta)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    missing, unexpected = model.load_state_dict(tensors, strict=False, assign=True)
    missing = [m for m in missing if not (tied and m == "lm_head.weight")]
    if missing or unexpected:
        raise SystemExit(f"[gguf-py] state dict mismatch: missing={missing} unexpected={unexpected}")
    if tied:
        model.tie_weights()
    # non-persistent buffers (rotary inv_freq) were created on meta: rebuild them
    for mod in model.modules():
        if type(mod).__name__.endswith("RotaryEmbedding"):
            inv, scale = mod.rope_init_fn(cfg) if hasattr(mod, "rope_init_fn") else mod.compute_default_rope_parameters(cfg)
            mod.inv_freq = inv
            mod.original_inv_freq = inv.clone()
            mod.attention_scaling = scale
    assert not any(p.is_meta for p in model.parameters())
    return model.to(dtype).eval()


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def is_gguf(path: str) -> bool:
    return os.path.isfile(path) and path.endswith(".gguf")


def load_model(path: str, loader: str = "auto", float64: bool = False):
    """Returns (model, loader_used). Always float32 weights, then .double() if asked."""
    _quiet_transformers()
    from transformers import AutoModelForCausalLM

    attn = "sdpa"  # eager softmax is forced to float32; sdpa honours float64
    used = loader
    if is_gguf(path):
        d, n = os.path.split(os.path.abspath(path))
        model = None
        if loader in ("auto", "transformers"):
            try:
                model = AutoModelForCausalLM.from_pretrained(
                    d, gguf_file=n, dtype=torch.float32, attn_implementation=attn
                )
                used = "transformers-gguf"
            except TypeError:
                model = AutoModelForCausalLM.from_pretrained(
                    d, gguf_file=n, torch_dtype=torch.float32, attn_implementation=attn
                )
                used = "transformers-gguf"
            except Exception as e:  # noqa: BLE001
                if loader == "transformers":
                    raise
                log(f"transformers GGUF loader failed ({type(e).__name__}: {e}); using gguf-py fallback")
        if model is None:
            model = load_gguf_manual(path)
            used = "gguf-py"
            try:
                model.config._attn_implementation = attn
            except Exception:
                pass
    else:
        if loader == "gguf-py":
            raise SystemExit("--loader gguf-py needs a .gguf file")
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn)
        except TypeError:
            model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, attn_implementation=attn)
        used = "transformers-hf"
    model.eval()
    if float64:
        model = model.double()
        patch_float64(model)
    return model, used


def patch_float64(model):
    """Make RMSNorm and RoPE keep float64 (transformers computes them in fp32)."""

    def rms_forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.variance_epsilon))

    def gemma_rms_forward(self, x):  # Gemma3RMSNorm: x / rms * (1 + w), eps in `eps`
        var = x.pow(2).mean(-1, keepdim=True)
        return (1.0 + self.weight) * (x * torch.rsqrt(var + self.eps))

    def per_type_rope_forward(self, x, position_ids, layer_type):  # Gemma3RotaryEmbedding
        inv = getattr(self, f"{layer_type}_inv_freq").to(device=x.device, dtype=torch.float64)
        scaling = getattr(self, f"{layer_type}_attention_scaling")
        freqs = position_ids[..., None].to(torch.float64) * inv
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * scaling).to(x.dtype), (emb.sin() * scaling).to(x.dtype)

    def rope_forward(self, x, position_ids):
        inv = self.inv_freq.to(device=x.device, dtype=torch.float64)
        freqs = position_ids[..., None].to(torch.float64) * inv
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)

    n_rms = n_rope = 0
    for mod in model.modules():
        cname = type(mod).__name__
        if cname.endswith("RMSNorm") and hasattr(mod, "variance_epsilon"):
            mod.forward = types.MethodType(rms_forward, mod)
            n_rms += 1
        elif cname == "Gemma3RMSNorm":
            mod.forward = types.MethodType(gemma_rms_forward, mod)
            n_rms += 1
        elif cname == "Gemma3RotaryEmbedding":
            # One table per layer type (sliding_attention / full_attention), each its own base.
            cfg = model.config
            dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
            for lt in mod.layer_types:
                rp = cfg.rope_parameters[lt]
                if rp["rope_type"] != "default":
                    raise SystemExit(f"--float64: rope_type {rp['rope_type']} of {lt} layers not patched")
                base = float(rp["rope_theta"])
                setattr(mod, f"{lt}_inv_freq", 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)))
            mod.forward = types.MethodType(per_type_rope_forward, mod)
            n_rope += 1
        elif cname.endswith("RotaryEmbedding") and hasattr(mod, "inv_freq"):
            rope_type = getattr(mod, "rope_type", "default")
            if rope_type == "default":
                cfg = model.config
                rp = getattr(cfg, "rope_parameters", None) or {}
                base = rp.get("rope_theta", getattr(cfg, "rope_theta", None))
                dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
                if base is not None:
                    mod.inv_freq = 1.0 / (float(base) ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
            mod.forward = types.MethodType(rope_forward, mod)
            n_rope += 1
    log(f"[float64] patched {n_rms} RMSNorm and {n_rope} rotary modules")


def load_tokenizer(path: str):
    _quiet_transformers()
    from transformers import AutoTokenizer

    if is_gguf(path):
        d, n = os.path.split(os.path.abspath(path))
        return AutoTokenizer.from_pretrained(d, gguf_file=n)
    return AutoTokenizer.from_pretrained(path)


def parse_ids(s: str) -> list[int]:
    return [int(x) for x in s.replace(",", " ").split()]


# --------------------------------------------------------------------------
# Forward + stats
# --------------------------------------------------------------------------


@torch.no_grad()
def forward_logits(model, ids: list[int]) -> torch.Tensor:
    dt = next(model.parameters()).dtype
    x = torch.tensor([ids], dtype=torch.long)
    pos = torch.arange(len(ids), dtype=torch.long)[None]
    out = model(input_ids=x, position_ids=pos, use_cache=False)
    logits = out.logits[0]
    assert logits.dtype == dt, (logits.dtype, dt)
    return logits


def logits_stats(logits: torch.Tensor, ids: list[int]) -> dict:
    l64 = logits.to(torch.float64)
    lp = torch.log_softmax(l64, dim=-1)
    n = len(ids)
    nll = [-lp[i, ids[i + 1]].item() for i in range(n - 1)]
    mean = sum(nll) / len(nll) if nll else float("nan")
    return {
        "n_ids": n,
        "vocab": int(logits.shape[1]),
        "nll_per_token": nll,
        "mean_nll": mean,
        "ppl": math.exp(mean) if nll else float("nan"),
        "argmax_per_pos": l64.argmax(-1).tolist(),
        "logits_pos0_first8": [round(v, 6) for v in l64[0, :8].tolist()],
    }


def versions() -> dict:
    import importlib.metadata as md

    v = {}
    for p in ("torch", "transformers", "gguf", "numpy", "safetensors", "accelerate", "tokenizers"):
        try:
            v[p] = md.version(p)
        except Exception:
            v[p] = None
    return v


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help=".gguf file or HF directory")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--ids", help='token ids, e.g. "1 403 407" (used exactly as given)')
    g.add_argument("--text", help="text to tokenize with the model's own tokenizer (transformers)")
    ap.add_argument("--add-special", action="store_true",
                    help="--text: let the tokenizer add special tokens (BOS) per its config; default: none")
    ap.add_argument("--out", help="write logits as raw little-endian float32 [n_ids, vocab]")
    ap.add_argument("--json", action="store_true", help="print the full JSON document on stdout (logs go to stderr)")
    ap.add_argument("--json-out", help="also write the JSON document to this file")
    ap.add_argument("--float64", action="store_true", help="run the forward pass in float64")
    ap.add_argument("--loader", choices=("auto", "transformers", "gguf-py"), default="auto",
                    help="GGUF loader: transformers (default, with gguf-py fallback) or this script's own")
    args = ap.parse_args(argv)

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.text is not None:
        tok = load_tokenizer(args.model)
        ids = tok(args.text, add_special_tokens=args.add_special)["input_ids"]
        log("ids:", " ".join(map(str, ids)))
    else:
        ids = parse_ids(args.ids)
    if not ids:
        raise SystemExit("no ids")

    model, used = load_model(args.model, args.loader, args.float64)
    vocab = model.config.vocab_size
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise SystemExit(f"ids out of range [0,{vocab}): {bad[:10]}")
    logits = forward_logits(model, ids)

    if args.out:
        arr = logits.detach().to(torch.float32).contiguous().numpy().astype("<f4", copy=False)
        with open(args.out, "wb") as f:
            f.write(arr.tobytes())
        log(f"wrote {args.out}: float32 LE [{arr.shape[0]}, {arr.shape[1]}] ({arr.nbytes} bytes)")

    doc = {
        "model": os.path.abspath(args.model),
        "loader": used,
        "dtype": "float64" if args.float64 else "float32",
        "ids": ids,
    }
    if args.text is not None:
        doc["text"] = args.text
    doc.update(logits_stats(logits, ids))
    doc["versions"] = versions()
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(doc, f, indent=1)
    if args.json:
        print(json.dumps(doc))
    else:
        if args.text is not None:
            print("ids:", " ".join(map(str, ids)))
        print(f"loader={used} dtype={doc['dtype']} n_ids={doc['n_ids']} vocab={doc['vocab']}")
        print("nll_per_token:", " ".join(f"{v:.6f}" for v in doc["nll_per_token"]))
        print("argmax_per_pos:", " ".join(map(str, doc["argmax_per_pos"])))
        print(f"mean_nll={doc['mean_nll']:.10f} ppl={doc['ppl']:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
