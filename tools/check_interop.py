#!/usr/bin/env python3
"""Do the directories mpq writes load, unchanged, in Hugging Face transformers and vLLM?

By hand, not in CI (needs the venvs of docs/INTEROP.md):

    /work/venvs/interop/bin/python tools/check_interop.py --mpq build/mpq \\
        [--source models/SmolLM2-135M-Instruct.Q4_1.gguf] [--vllm-python /work/venvs/vllm/bin/python] \\
        [--tokenize-file wiki.test.raw] DIR [DIR ...]

For every DIR (a quantized model directory written by `mpq quantize`):
  logits      `mpq logits DIR --text S --out F --json` for each fixed sentence S gives the token ids
              and mpq's float32 logits [n, vocab] (tools/cmd_model.cpp, run_logits: raw
              little-endian f32, row-major, one row per input position).
  tf          transformers `AutoModelForCausalLM.from_pretrained(DIR)` (the default path: the model
              is built compressed and compressed-tensors decompresses it on the first forward),
              in the config's dtype (what a user gets; a bf16 model is named in the cell), on
              mpq's ids; argmax agreement over all positions and the mean
              KL(mpq || transformers) per sentence. A load that reports missing / unexpected /
              mismatched keys is a failure even when it does not raise (such a model runs on
              random weights).
  tf-deq      the same with `CompressedTensorsConfig(dequantize=True)` (what `run_compressed=False`
              is called in transformers 5: the weights are dequantized while loading).
  tokenizer   `AutoTokenizer.from_pretrained(DIR)` ids == `mpq tokenize SOURCE --json` ids (or
              `mpq tokenize DIR` without --source) on the sentences and on --tokenize-file.
  vllm        (with --vllm-python) greedy 16 tokens (ignore_eos) from the first sentence's ids in
              vLLM's CPU build, in a subprocess of that venv; each checked against mpq's argmax
              on the same prefix (`mpq logits --ids`), and against `mpq generate DIR -n 16 --json`
              (which stops at an end token).
With --source, a first row checks the harness itself: mpq on the source GGUF against
transformers loading the same GGUF (gguf_file=..., dequantized to float32 by transformers).

Prints one markdown table row per directory; a failing cell says why.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import re
import subprocess
import sys
import tempfile

SENTENCES = [
    "The capital of France is Paris, and the capital of Germany is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "Once upon a time, a little robot learned to",
]
VLLM_TOKENS = 16


# ---------------------------------------------------------------------------------------------
# mpq


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def mpq_logits(mpq, model, text, tmpdir):
    """ids and float32 logits [n, vocab] of one sentence, from `mpq logits`."""
    import numpy as np
    # A new name each time: mpq refuses to overwrite a file it did not write in this run.
    fd, out = tempfile.mkstemp(suffix=".logits.bin", dir=tmpdir)
    os.close(fd)
    os.remove(out)
    try:
        r = run([mpq, "logits", model, "--text", text, "--out", out, "--json"])
        if r.returncode != 0:
            raise RuntimeError(f"mpq logits: {last_line(r.stderr or r.stdout)}")
        j = json.loads(r.stdout)
        logits = np.fromfile(out, dtype="<f4").reshape(j["n_ids"], j["vocab"])
    finally:
        if os.path.exists(out):
            os.remove(out)
    return j["ids"], logits


def mpq_tokenize(mpq, model, text=None, path=None):
    args = [mpq, "tokenize", model, "--json"] + (["--text", text] if path is None else ["--file", path])
    r = run(args)
    if r.returncode != 0:
        raise RuntimeError(f"mpq tokenize: {last_line(r.stderr or r.stdout)}")
    return json.loads(r.stdout)["ids"]


def mpq_logits_ids(mpq, model, ids, tmpdir):
    """float32 logits [n, vocab] of an id list, from `mpq logits --ids`."""
    import numpy as np
    fd, out = tempfile.mkstemp(suffix=".logits.bin", dir=tmpdir)
    os.close(fd)
    os.remove(out)
    try:
        r = run([mpq, "logits", model, "--ids", " ".join(map(str, ids)), "--out", out, "--json"])
        if r.returncode != 0:
            raise RuntimeError(f"mpq logits: {last_line(r.stderr or r.stdout)}")
        j = json.loads(r.stdout)
        return np.fromfile(out, dtype="<f4").reshape(j["n_ids"], j["vocab"])
    finally:
        if os.path.exists(out):
            os.remove(out)


def mpq_generate(mpq, model, text, n):
    r = run([mpq, "generate", model, "--prompt", text, "-n", str(n), "--json"])
    if r.returncode != 0:
        raise RuntimeError(f"mpq generate: {last_line(r.stderr or r.stdout)}")
    j = json.loads(r.stdout)
    return j["prompt_tokens"], j["tokens"]


def last_line(text):
    lines = [l.strip() for l in (text or "").strip().splitlines() if l.strip()]
    return lines[-1][:300] if lines else "(no output)"


# ---------------------------------------------------------------------------------------------
# comparisons


def compare(ref, other):
    """argmax agreement count and mean KL(ref || other) over the rows of two [n, vocab] arrays."""
    import numpy as np
    a = ref.astype(np.float64)
    b = other.astype(np.float64)
    if not np.isfinite(b).all():
        return 0, math.inf
    la = a - a.max(1, keepdims=True)
    la -= np.log(np.exp(la).sum(1, keepdims=True))
    lb = b - b.max(1, keepdims=True)
    lb -= np.log(np.exp(lb).sum(1, keepdims=True))
    kl = (np.exp(la) * (la - lb)).sum(1)
    return int((a.argmax(1) == b.argmax(1)).sum()), float(kl.mean())


def fmt_logit_result(per_sentence):
    agree = sum(a for a, _, _ in per_sentence)
    total = sum(n for _, _, n in per_sentence)
    kls = "/".join(f"{kl:.1e}" for _, kl, _ in per_sentence)
    ok = agree >= 0.8 * total and all(kl < 0.05 for _, kl, _ in per_sentence)
    return ("ok" if ok else "FAIL") + f": argmax {agree}/{total}, KL {kls}"


@contextlib.contextmanager
def captured_logs():
    """Collect what transformers / compressed-tensors log (the load report names the bad keys)."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger(n) for n in ("transformers", "compressed_tensors")]
    for lg in loggers:
        lg.addHandler(handler)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(err):
            yield buf, err
    finally:
        for lg in loggers:
            lg.removeHandler(handler)


def reason_from(exc, logs):
    """A one-line reason: the first report line naming a key problem or the root exception the
    load report quotes, else the exception itself."""
    lines = [l.strip() for l in logs.splitlines()]
    generic = ("We encountered some issues", "You set `ignore_mismatched_sizes`", "Error: CompressedTensorsDequantize")
    for line in lines:  # the root cause of a conversion error, e.g. "ValueError: tensor column ..."
        if re.match(r"^[A-Za-z_.]*(Error|Exception): \S", line) and not any(g in line for g in generic):
            return line[:220]
    for line in lines:  # a status row of the load report: "key | MISMATCH | why"
        if "|" in line and any(m in line for m in ("MISMATCH", "MISSING", "UNEXPECTED")):
            return " ".join(line.replace("|", " ").split())[:220]
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0][:220] if msg else ''}"


def tf_logits(path, sentences_ids, dequantize, gguf_file=None):
    """Load with transformers and run every id list; returns ([logits], note) or raises."""
    import torch
    from transformers import AutoModelForCausalLM
    # The dtype a user gets from `from_pretrained(DIR)`: the config's (mpq writes float32, and
    # bfloat16 for directories with fp4 groups, whose weights transformers decompresses to bf16).
    kwargs = {"output_loading_info": True}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
        kwargs["dtype"] = torch.float32
    if dequantize:
        from transformers import CompressedTensorsConfig
        kwargs["quantization_config"] = CompressedTensorsConfig(dequantize=True)
    with captured_logs() as (logs, err):
        try:
            model, info = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        except Exception as e:  # a survey: report and go on
            raise RuntimeError(reason_from(e, logs.getvalue() + err.getvalue())) from None
    bad = {k: sorted(info.get(k) or []) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    bad = {k: v for k, v in bad.items() if v}
    if bad:
        k, v = next(iter(bad.items()))
        first = v[0] if isinstance(v[0], str) else str(v[0])
        raise RuntimeError(f"loads on random weights: {len(v)} {k.replace('_', ' ')}, e.g. {first}")
    out = []
    with torch.no_grad():
        for ids in sentences_ids:
            out.append(model(torch.tensor([ids])).logits[0].float().numpy())
    return out, ("" if model.dtype == torch.float32 else f" ({str(model.dtype).replace('torch.', '')} model)")


def check_tf(path, ids_list, mpq_list, dequantize, gguf_file=None):
    try:
        logits, note = tf_logits(path, ids_list, dequantize, gguf_file)
    except Exception as e:
        return f"FAIL: {e}"
    per = []
    for ref, got, ids in zip(mpq_list, logits, ids_list):
        if got.shape != ref.shape:
            return f"FAIL: logits shape {got.shape} vs mpq {ref.shape}"
        a, kl = compare(ref, got)
        per.append((a, kl, len(ids)))
    return fmt_logit_result(per) + note


def check_tokenizer(mpq, path, tokenize_file, source=None):
    """AutoTokenizer on the directory against `mpq tokenize` on the source model when given (the
    directory's tokenizer must reproduce the source's), else on the directory itself."""
    from transformers import AutoTokenizer
    present = [f for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model") if os.path.exists(os.path.join(path, f))]
    if not present:
        return "FAIL: no tokenizer.json / tokenizer_config.json / tokenizer.model in the directory"
    with captured_logs() as (logs, err):
        try:
            tok = AutoTokenizer.from_pretrained(path)
        except Exception as e:
            return f"FAIL: {reason_from(e, '')}"
    texts = [(s, None) for s in SENTENCES] + ([(None, tokenize_file)] if tokenize_file else [])
    n_ok = 0
    for text, fpath in texts:
        if fpath:
            with open(fpath, encoding="utf-8") as f:
                text = f.read()
        ours = mpq_tokenize(mpq, source or path, text=None if fpath else text, path=fpath)
        theirs = tok(text)["input_ids"]
        if ours == theirs:
            n_ok += 1
            continue
        i = next((k for k, (x, y) in enumerate(zip(ours, theirs)) if x != y), min(len(ours), len(theirs)))
        where = os.path.basename(fpath) if fpath else repr(text[:30])
        return (f"FAIL: {where}: ids differ at {i} (mpq {ours[i:i + 3]} vs HF {theirs[i:i + 3]}; "
                f"{len(ours)} vs {len(theirs)} tokens)")
    return f"ok: {n_ok}/{len(texts)} texts identical"


def check_vllm(mpq, path, vllm_python, tmpdir):
    try:
        prompt, expected = mpq_generate(mpq, path, SENTENCES[0], VLLM_TOKENS)
    except Exception as e:
        return f"FAIL: {e}"
    env = dict(os.environ, VLLM_TARGET_DEVICE="cpu", VLLM_CPU_KVCACHE_SPACE="1",
               VLLM_ENABLE_V1_MULTIPROCESSING="0", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    r = run([vllm_python, os.path.abspath(__file__), "--vllm-worker", path,
             "--ids", " ".join(map(str, prompt))], env=env, timeout=900)
    lines = [l for l in r.stdout.splitlines() if l.startswith("VLLM_RESULT ")]
    if r.returncode != 0 or not lines:
        return f"FAIL: {vllm_reason(r.stderr + r.stdout)}"
    got = json.loads(lines[-1][len("VLLM_RESULT "):])["tokens"]
    # mpq generate stops at an end token; vLLM runs on (ignore_eos) to 16 tokens. Each of vLLM's
    # tokens is checked against mpq's argmax on the same prefix (prompt + vLLM's earlier tokens):
    # greedy decoding agrees up to the first miss.
    try:
        logits = mpq_logits_ids(mpq, path, prompt + got[:-1], tmpdir)
    except Exception as e:
        return f"FAIL: {e}"
    ours = logits[len(prompt) - 1:].argmax(1).tolist()
    agree = sum(int(a == b) for a, b in zip(ours, got))
    first = next((i for i, (a, b) in enumerate(zip(ours, got)) if a != b), len(got))
    same = next((i for i, (x, y) in enumerate(zip(expected, got)) if x != y), min(len(expected), len(got)))
    ok = "ok" if agree >= 0.8 * len(got) else "FAIL"
    return (f"{ok}: {len(got)} tokens; {agree}/{len(got)} = mpq's argmax on the same prefix (first miss at "
            f"{first if first < len(got) else '-'}); mpq generate's {len(expected)} tokens: first {same} equal")


def vllm_reason(text):
    """The root exception of a failed vLLM run, with the detail lines pydantic puts below it."""
    lines = [l[len("[rank0]: "):] if l.startswith("[rank0]: ") else l for l in text.splitlines()]
    lines = [l.strip() for l in lines]
    for i in range(len(lines) - 1, -1, -1):
        l = lines[i]
        if re.match(r"^[A-Za-z_.]*(Error|Exception): ", l) and "Tokenizer not available" not in l:
            if "validation error" in l:  # pydantic: the field and the message follow
                l += " " + " ".join(x for x in lines[i + 1:i + 3] if x)
            elif l.endswith("Reasons:"):  # vLLM's kernel search: one line per kernel follows
                reasons = [x for x in lines[i + 1:i + 8] if "cannot implement" in x]
                cpu = [x for x in reasons if x.startswith("CPU")]
                l += " " + ((cpu or reasons or [""])[0])
            return l[:300]
    return last_line(text)


def vllm_worker(path, ids):
    """Runs inside the vLLM venv: greedy tokens from `ids`, printed as one JSON line."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    has_tokenizer = os.path.exists(os.path.join(path, "tokenizer.json"))
    llm = LLM(model=path, skip_tokenizer_init=not has_tokenizer, max_model_len=512,
              enforce_eager=True, max_num_seqs=1)
    out = llm.generate([TokensPrompt(prompt_token_ids=ids)],
                       SamplingParams(max_tokens=VLLM_TOKENS, temperature=0, ignore_eos=True, detokenize=False))
    print("VLLM_RESULT " + json.dumps({"tokens": list(out[0].outputs[0].token_ids)}), flush=True)


# ---------------------------------------------------------------------------------------------


def describe(path):
    """mpq's formats of the directory's modules (a channel split as `split HIGH/LOW`)."""
    try:
        with open(os.path.join(path, "config.json")) as f:
            qc = json.load(f).get("quantization_config") or {}
    except OSError:
        return "gguf" if path.endswith(".gguf") else "?"
    formats = set()
    for m in (qc.get("mpq") or {}).get("modules", {}).values():
        if m.get("split"):
            formats.add(f"split {m.get('high_format')}/{m.get('format')}")
        elif m.get("format"):
            formats.add(m["format"])
    return ",".join(sorted(formats)) or qc.get("format", "dense")


def check_dir(args, path, tmpdir):
    cells = {"dir": os.path.basename(path.rstrip("/")), "mpq formats": describe(path)}
    try:
        mpq_out = [mpq_logits(args.mpq, path, s, tmpdir) for s in SENTENCES]
    except Exception as e:
        cells["tf"] = cells["tf-deq"] = f"FAIL: {e}"
        mpq_out = None
    if mpq_out:
        ids_list = [ids for ids, _ in mpq_out]
        mpq_list = [lg for _, lg in mpq_out]
        cells["tf"] = check_tf(path, ids_list, mpq_list, dequantize=False)
        cells["tf-deq"] = check_tf(path, ids_list, mpq_list, dequantize=True)
    try:
        cells["tokenizer"] = check_tokenizer(args.mpq, path, args.tokenize_file,
                                             os.path.abspath(args.source) if args.source else None)
    except Exception as e:
        cells["tokenizer"] = f"FAIL: {e}"
    cells["vllm"] = check_vllm(args.mpq, path, args.vllm_python, tmpdir) if args.vllm_python else "not run"
    return cells


def check_source(args, tmpdir):
    """The harness on the source GGUF: mpq vs transformers' own GGUF loader (both dequantize)."""
    src = os.path.abspath(args.source)
    cells = {"dir": f"source {os.path.basename(src)}", "mpq formats": "gguf"}
    mpq_out = [mpq_logits(args.mpq, src, s, tmpdir) for s in SENTENCES]
    ids_list = [ids for ids, _ in mpq_out]
    cells["tf"] = check_tf(os.path.dirname(src), ids_list, [lg for _, lg in mpq_out], False,
                           gguf_file=os.path.basename(src))
    cells["tf-deq"] = "—"
    try:
        from transformers import AutoTokenizer
        with captured_logs():
            tok = AutoTokenizer.from_pretrained(os.path.dirname(src), gguf_file=os.path.basename(src))
        texts = [(t, None) for t in SENTENCES] + ([(None, args.tokenize_file)] if args.tokenize_file else [])
        same, first_bad = 0, ""
        for text, fpath in texts:
            ours = mpq_tokenize(args.mpq, src, text=text, path=fpath)
            theirs = tok(open(fpath, encoding="utf-8").read() if fpath else text)["input_ids"]
            if ours == theirs:
                same += 1
            elif not first_bad:
                i = next((k for k, (x, y) in enumerate(zip(ours, theirs)) if x != y), min(len(ours), len(theirs)))
                where = os.path.basename(fpath) if fpath else repr(text[:30])
                first_bad = (f"; {where} differs at token {i} of {len(ours)} "
                             f"(mpq {ours[i:i + 2]} vs HF {theirs[i:i + 2]})")
        cells["tokenizer"] = (f"{'ok' if same == len(texts) else 'FAIL'}: {same}/{len(texts)} texts "
                              f"identical (HF GGUF tokenizer){first_bad}")
    except Exception as e:
        cells["tokenizer"] = f"FAIL: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    cells["vllm"] = "—"
    return cells


COLUMNS = ["dir", "mpq formats", "tf", "tf-deq", "tokenizer", "vllm"]


def main(argv=None):
    ap = argparse.ArgumentParser(description="load mpq's output in transformers / vLLM and compare with mpq")
    ap.add_argument("dirs", nargs="*", help="directories written by mpq quantize")
    ap.add_argument("--mpq", default="build/mpq")
    ap.add_argument("--source", help="the source GGUF the directories were quantized from (harness check row)")
    ap.add_argument("--vllm-python", help="python of the vLLM venv (e.g. /work/venvs/vllm/bin/python)")
    ap.add_argument("--tokenize-file", help="also compare tokenizers on this text file (e.g. wiki.test.raw)")
    ap.add_argument("--vllm-worker", help=argparse.SUPPRESS)
    ap.add_argument("--ids", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.vllm_worker:
        vllm_worker(args.vllm_worker, [int(x) for x in args.ids.split()])
        return 0
    args.mpq = os.path.abspath(args.mpq)
    import transformers.utils.logging as tf_logging
    tf_logging.disable_default_handler()  # the load report goes to captured_logs() only
    tf_logging.set_verbosity_warning()
    import compressed_tensors
    import torch
    import transformers
    versions = f"transformers {transformers.__version__}, compressed-tensors {compressed_tensors.__version__}, torch {torch.__version__}"
    if args.vllm_python:
        r = run([args.vllm_python, "-c", "import vllm, torch, compressed_tensors as c; "
                 "print(vllm.__version__, torch.__version__, c.__version__)"])
        versions += f"; vLLM venv: vllm, torch, compressed-tensors = {r.stdout.strip() or last_line(r.stderr)}"
    print(f"<!-- {versions} -->")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    with tempfile.TemporaryDirectory() as tmpdir:
        rows = []
        if args.source:
            rows.append(check_source(args, tmpdir))
            print("| " + " | ".join(rows[-1].get(c, "") for c in COLUMNS) + " |", flush=True)
        for d in args.dirs:
            rows.append(check_dir(args, os.path.abspath(d), tmpdir))
            print("| " + " | ".join(rows[-1].get(c, "").replace("|", "/").replace("\n", " ")
                                    for c in COLUMNS) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
