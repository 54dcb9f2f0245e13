#!/usr/bin/env python3
"""Check Hugging Face tokenizer files written by mpq against `mpq tokenize` on their source.

Run by hand (not in CI), with a Python that has transformers (docs/INTEROP.md, the interop venv):
    build/mpq tokenize MODEL.gguf --hf-out DIR [--max-context N]
    python tools/check_hf_tokenizer.py DIR MODEL.gguf [--file TEXT ...] [--mpq build/mpq]

For each text file (default: WikiText-2 test), AutoTokenizer.from_pretrained(DIR)(text) ids
against `mpq tokenize MODEL --file TEXT --json`: both add BOS/EOS as the model declares. Hugging
Face always turns special-token text into special tokens, which mpq does with --parse-special, so
that is the comparison; whether plain `mpq tokenize` gives the same ids is reported too (it does
on text holding no special-token text). Then, for information, whether HF decodes the ids
(without BOS/EOS, special tokens rendered) back to the text. When the tokenizer has a chat template, a conversation is rendered with
apply_chat_template and its ids compared with mpq's on the rendered text.
Prints one line per check; exit status 1 when any check fails.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_TEXT = os.path.join(ROOT, "..", "shared", "text", "wikitext-2-raw-v1", "wiki.test.raw")
CONVERSATION = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is 12 + 30? Answer in digits."},
    {"role": "assistant", "content": "42"},
    {"role": "user", "content": "And  with two spaces?\n"},
]


def mpq_ids(mpq, model, path, *flags):
    out = subprocess.run([mpq, "tokenize", model, "--file", path, "--json", *flags],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["ids"]


def first_difference(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def compare(what, ours, theirs):
    if ours == theirs:
        print(f"ok   {what}: {len(ours)} ids identical")
        return True
    i = first_difference(ours, theirs)
    print(f"FAIL {what}: ids differ at {i} (mpq {ours[i:i + 3]} vs HF {theirs[i:i + 3]}; "
          f"{len(ours)} vs {len(theirs)} tokens)")
    return False


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="directory holding the tokenizer files mpq wrote")
    ap.add_argument("model", help="the source mpq tokenized from (GGUF, ...)")
    ap.add_argument("--file", action="append", help="text file (repeatable; default WikiText-2 test)")
    ap.add_argument("--mpq", default=os.path.join(ROOT, "build", "mpq"))
    args = ap.parse_args(argv)

    import tempfile
    import transformers
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(args.dir)
    print(f"transformers {transformers.__version__}, {type(tok).__name__}, vocabulary {len(tok)}")
    ok = True
    for path in args.file or [DEFAULT_TEXT]:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")  # bytes as they are: no newline translation
        name = os.path.basename(path)
        theirs = tok(text)["input_ids"]
        ok &= compare(f"{name} (mpq --parse-special)", mpq_ids(args.mpq, args.model, path, "--parse-special"), theirs)
        plain = mpq_ids(args.mpq, args.model, path)
        print(f"     {name}: plain mpq tokenize {'gives the same ids' if plain == theirs else 'differs (special-token text in the file)'}")
        decoded = tok.decode(tok(text, add_special_tokens=False)["input_ids"], skip_special_tokens=False)
        # Informative: decoding is lossy where the ids are (unknown tokens, the SentencePiece
        # space added after a special token), and the ids are what must match.
        if decoded == text:
            print(f"     {name}: HF decode gives the text back")
        else:
            print(f"     {name}: HF decode differs from the text at char {first_difference(decoded, text)}")
    if tok.chat_template:
        rendered = tok.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
        print("     chat template renders " + json.dumps(rendered))
        theirs = tok.apply_chat_template(CONVERSATION, tokenize=True, add_generation_prompt=True)
        if isinstance(theirs, dict) or hasattr(theirs, "keys"):
            theirs = theirs["input_ids"]
        with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
            f.write(rendered.encode("utf-8"))
        try:
            ours = mpq_ids(args.mpq, args.model, f.name, "--parse-special", "--no-special")
        finally:
            os.unlink(f.name)
        ok &= compare("chat template (mpq --parse-special --no-special on the rendered text)", ours, list(theirs))
    else:
        print("     no chat template")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
