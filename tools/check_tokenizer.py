#!/usr/bin/env python3
"""Compare `mpq tokenize` with a reference tokenizer built independently of mpq's code.

Run by hand (not in CI):
    python3 tools/check_tokenizer.py MODEL.gguf [--file TEXT] [--mpq build-tok/mpq]

The reference is built from the GGUF's own vocabulary (read with the PyPI `gguf` package):
  - tokenizer.ggml.model "gpt2": Hugging Face `tokenizers` BPE with the vocab and merges and the
    pre-tokenizer that the model's tokenizer.json declares for its tokenizer.ggml.pre name
    (e.g. smollm: Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False)]).
  - tokenizer.ggml.model "llama": a Python port of llama2.c's encoder (run.c encode(): rescan
    for the best-scoring adjacent pair, merge, repeat). It is quadratic, so the text is cut where
    no token can span the cut (before each space and around each newline), which the script
    verifies against the vocabulary first.
A llama2.c tokenizer .bin works too (llama2.c reference, BOS=1).

Reports the token count and whether the ids match; on a mismatch, the first differing position
with the surrounding tokens decoded.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_TEXT = os.path.join(ROOT, "..", "shared", "text", "wikitext-2-raw-v1", "wiki.test.raw")
SPACE = "\u2581"

GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# As in the models' tokenizer.json files (HF original spelling with (?i:...)).
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
            r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def hf_pre_tokenizer(pre):
    from tokenizers import Regex, pre_tokenizers as P
    byte_level = P.ByteLevel(add_prefix_space=False, use_regex=False)
    if pre in ("default", "gpt2", "gpt-2"):
        return P.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("smollm", "starcoder", "refact"):
        return P.Sequence([P.Digits(individual_digits=True),
                           P.ByteLevel(add_prefix_space=False, use_regex=True)])
    if pre in ("llama3", "llama-bpe", "llama-v3"):
        return P.Sequence([P.Split(Regex(LLAMA3_RE), behavior="isolated"), byte_level])
    if pre in ("qwen2",):
        return P.Sequence([P.Split(Regex(QWEN2_RE), behavior="isolated"), byte_level])
    sys.exit(f"check_tokenizer: no reference pre-tokenizer for '{pre}'")


def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    from gguf import GGUFValueType
    if f.types[0] == GGUFValueType.ARRAY:
        if f.types[-1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    if f.types[0] == GGUFValueType.STRING:
        return bytes(f.parts[-1]).decode("utf-8")
    return f.parts[-1].tolist()[0]


class Llama2cRef:
    """llama2.c run.c encode(), over a SentencePiece vocabulary with scores."""

    def __init__(self, tokens, scores, bos_id, add_bos, add_space_prefix):
        self.scores = scores
        self.index = {}
        for i, t in enumerate(tokens):
            self.index.setdefault(t, i)
        self.byte_ids = [self.index.get("<0x%02X>" % b) for b in range(256)]
        self.bos_id, self.add_bos, self.add_space_prefix = bos_id, add_bos, add_space_prefix
        # The cut points below are only valid when no token spans them.
        for t in tokens:
            if SPACE in t[1:] or ("\n" in t and t not in ("<s>", "</s>")):
                sys.exit(f"check_tokenizer: token {t!r} spans a cut point; reference invalid")

    def encode_chunk(self, chunk, out):
        ids = []
        for ch in chunk:
            i = self.index.get(ch)
            if i is not None:
                ids.append(i)
            else:
                ids.extend(self.byte_ids[b] for b in ch.encode("utf-8"))
        texts = [None if i in self.byte_ids else t for i, t in
                 ((i, self._text(i)) for i in ids)]
        while True:
            best, best_i, best_id = -1e10, -1, -1
            for k in range(len(ids) - 1):
                if texts[k] is None or texts[k + 1] is None:
                    continue
                j = self.index.get(texts[k] + texts[k + 1])
                if j is not None and self.scores[j] > best:
                    best, best_i, best_id = self.scores[j], k, j
            if best_i < 0:
                break
            ids[best_i:best_i + 2] = [best_id]
            texts[best_i:best_i + 2] = [texts[best_i] + texts[best_i + 1]]
        out.extend(ids)

    def _text(self, i):
        if not hasattr(self, "_rev"):
            self._rev = {v: k for k, v in self.index.items()}
        return self._rev[i]

    def encode(self, text):
        out = [self.bos_id] if self.add_bos else []
        if not text:
            return out
        s = (" " + text if self.add_space_prefix else text).replace(" ", SPACE)
        chunk = ""
        for ch in s:
            if ch == "\n":
                if chunk:
                    self.encode_chunk(chunk, out)
                self.encode_chunk("\n", out)
                chunk = ""
            elif ch == SPACE and chunk:
                self.encode_chunk(chunk, out)
                chunk = ch
            else:
                chunk += ch
        if chunk:
            self.encode_chunk(chunk, out)
        return out


def load_reference(path):
    """Returns (encode(text) -> ids, decode_one(id) -> str, description)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":  # llama2.c tokenizer file
        data = open(path, "rb").read()
        off, tokens, scores = 4, [], []
        while off < len(data):
            score, n = struct.unpack_from("<fi", data, off)
            off += 8
            t = data[off:off + n].decode("utf-8").replace(" ", SPACE)
            off += n
            tokens.append(t.strip("\n") if t in ("\n<s>\n", "\n</s>\n") else t)
            scores.append(score)
        ref = Llama2cRef(tokens, scores, 1, True, True)
        return ref.encode, lambda i: tokens[i], f"llama2.c encode() port, {len(tokens)} tokens"

    import gguf
    r = gguf.GGUFReader(path)
    model = field(r, "tokenizer.ggml.model")
    tokens = field(r, "tokenizer.ggml.tokens")
    if model == "llama":
        scores = field(r, "tokenizer.ggml.scores")
        add_bos = field(r, "tokenizer.ggml.add_bos_token")
        add_prefix = field(r, "tokenizer.ggml.add_space_prefix")
        bos = field(r, "tokenizer.ggml.bos_token_id")
        ref = Llama2cRef(tokens, scores, 1 if bos is None else bos,
                         True if add_bos is None else add_bos,
                         True if add_prefix is None else add_prefix)
        return ref.encode, lambda i: tokens[i], f"llama2.c encode() port, {len(tokens)} tokens"
    if model != "gpt2":
        sys.exit(f"check_tokenizer: unsupported tokenizer.ggml.model {model!r}")
    from tokenizers import Tokenizer, models, decoders
    pre = field(r, "tokenizer.ggml.pre") or "default"
    merges = [tuple(m.split(" ", 1)) for m in field(r, "tokenizer.ggml.merges")]
    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges,
                               ignore_merges=pre in ("llama3", "llama-bpe", "llama-v3")))
    tok.pre_tokenizer = hf_pre_tokenizer(pre)
    tok.decoder = decoders.ByteLevel()
    add_bos = bool(field(r, "tokenizer.ggml.add_bos_token"))
    bos = field(r, "tokenizer.ggml.bos_token_id")

    def encode(text):
        ids = tok.encode(text, add_special_tokens=False).ids
        return ([bos] if add_bos else []) + ids

    return encode, lambda i: tok.decode([i]), f"HF tokenizers BPE, pre '{pre}', {len(tokens)} tokens"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="GGUF file or llama2.c tokenizer .bin")
    ap.add_argument("--file", default=DEFAULT_TEXT, help="text to tokenize (default: wiki.test.raw)")
    ap.add_argument("--mpq", default=os.path.join(ROOT, "build-tok", "mpq"), help="mpq binary")
    args = ap.parse_args()

    text = open(args.file, "rb").read().decode("utf-8")
    encode, decode_one, what = load_reference(args.model)
    t0 = time.time()
    ref = encode(text)
    t_ref = time.time() - t0
    t0 = time.time()
    res = subprocess.run([args.mpq, "tokenize", args.model, "--file", args.file, "--json"],
                         capture_output=True, text=True)
    t_ours = time.time() - t0
    if res.returncode != 0:
        sys.exit(f"mpq tokenize failed: {res.stderr.strip()}")
    ours = json.loads(res.stdout)["ids"]
    print(f"reference: {what}; {len(ref)} tokens in {t_ref:.1f} s")
    print(f"mpq:       {len(ours)} tokens in {t_ours:.2f} s (process total)")
    if ours == ref:
        print(f"MATCH: {len(ours)} tokens identical ({args.file})")
        return 0
    k = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), min(len(ours), len(ref)))
    lo = max(0, k - 8)
    print(f"MISMATCH at token {k}")
    print("  context:", repr("".join(decode_one(i) for i in ref[lo:k])))
    print("  ref:", ref[k:k + 8], [decode_one(i) for i in ref[k:k + 8]])
    print("  mpq:", ours[k:k + 8], [decode_one(i) for i in ours[k:k + 8]])
    return 1


if __name__ == "__main__":
    sys.exit(main())
