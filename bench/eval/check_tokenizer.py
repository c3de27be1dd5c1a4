#!/usr/bin/env python3
"""Checks the C tokenizer of `stem eval` against Hugging Face `tokenizers`
(Rust BPE) built from the same GGUF vocabulary and merges with SmolLM2's
pre-tokenizer (Digits(individual_digits) then ByteLevel without prefix space).
usage: check_tokenizer.py MODEL.gguf TEXT IDS.npy   (IDS from `stem eval --dump-ids`)
needs: numpy, gguf, tokenizers"""
import sys

import numpy as np
from gguf import GGUFReader
from tokenizers import Tokenizer, decoders, models, pre_tokenizers


def main():
    model, text_path, ids_path = sys.argv[1:4]
    r = GGUFReader(model)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    merges = [tuple(m.split(" ", 1)) for m in r.fields["tokenizer.ggml.merges"].contents()]
    vocab = {t: i for i, t in reversed(list(enumerate(tokens)))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    text = open(text_path, encoding="utf-8", newline="").read()
    ref = tok.encode(text).ids
    got = np.load(ids_path).tolist()
    same = len(ref) == len(got) and ref == got
    first = next((i for i, (a, b) in enumerate(zip(ref, got)) if a != b), None)
    print(f"{text_path}: tokenizers {len(ref)} ids, C {len(got)} ids, "
          + ("identical" if same else f"first difference at {first}"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
