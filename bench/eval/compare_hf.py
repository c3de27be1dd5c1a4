#!/usr/bin/env python3
"""Checks the C forward of `stem eval` against Hugging Face transformers,
which reads the same GGUF file on its own (dequantisation, Q/K un-permute,
half-split RoPE, its own tokenizer). Run by compare_on_device.sh.

usage: compare_hf.py MODEL.gguf LOGITS.npy TEXT [--device cuda|cpu]
  LOGITS.npy and LOGITS.npy.ids.npy come from
  `stem eval --tokens N --dump-logits LOGITS.npy --text TEXT` (window offset 0).
Prints tokenizer agreement, top-1 agreement, max |logit diff| and KL, and
exits 1 when they are out of bounds.
"""
import argparse
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("logits")
    ap.add_argument("text")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    got = np.load(a.logits).astype(np.float64)
    ids = np.load(a.logits + ".ids.npy").astype(np.int64)
    n = len(ids)
    folder, name = os.path.split(os.path.abspath(a.model))

    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    text = open(a.text, encoding="utf-8", newline="").read()
    hf_ids = tok(text, add_special_tokens=False)["input_ids"][:n]
    same = sum(int(x == y) for x, y in zip(hf_ids, ids.tolist()))
    first_diff = next((i for i, (x, y) in enumerate(zip(hf_ids, ids.tolist())) if x != y), None)
    print(f"tokenizer: {same}/{n} ids equal to transformers' GGUF tokenizer"
          + ("" if first_diff is None else f" (first difference at {first_diff}: "
             f"HF {hf_ids[first_diff:first_diff + 5]} vs C {ids[first_diff:first_diff + 5].tolist()})"))

    try:  # transformers >= 4.56 names it dtype
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                     torch_dtype=torch.float32)
    model.to(a.device).eval()
    with torch.no_grad():
        ref = model(torch.tensor(ids[None, :], device=a.device)).logits[0].double().cpu().numpy()

    lr = ref - ref.max(-1, keepdims=True)
    lr -= np.log(np.exp(lr).sum(-1, keepdims=True))
    lg = got - got.max(-1, keepdims=True)
    lg -= np.log(np.exp(lg).sum(-1, keepdims=True))
    kl = (np.exp(lr) * (lr - lg)).sum(-1)
    top1 = float((ref.argmax(-1) == got.argmax(-1)).mean())
    nll_ref = -lr[np.arange(n - 1), ids[1:]].mean()
    nll_c = -lg[np.arange(n - 1), ids[1:]].mean()
    print(f"logits: {n} positions, top-1 agreement {top1:.4f}, max |diff| "
          f"{np.abs(ref - got).max():.3e} (max |logit| {np.abs(ref).max():.1f}), mean KL(HF||C) "
          f"{kl.mean():.3e}, max KL {kl.max():.3e}; ppl HF {np.exp(nll_ref):.4f} C {np.exp(nll_c):.4f}")
    print(f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, "
          f"device {a.device}" + (f" ({torch.cuda.get_device_name()})" if a.device == "cuda" else ""))
    ok = top1 >= 0.98 and kl.mean() < 1e-3 and same == n
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
