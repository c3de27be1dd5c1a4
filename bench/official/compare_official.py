#!/usr/bin/env python3
"""Compare libstem's block selection with the official Stem code (GPU, Triton).

Usage: compare_official.py STEM_DIR STEM_BIN OUT_DIR [N ...]
  STEM_DIR  the official package folder .../sparsity/algorithms/stem of a checkout
            (not part of this repo; fetched separately)
  STEM_BIN  our `stem` tool
For each N: make structured bf16 Q, K, V (RoPE'd shared directions: local band,
sinks, a few high-norm V rows), run the official scoring + schedule + mask
assembly (backends/torch_impl.py, loaded through stub packages so the heavy
package __init__ files are skipped), run `stem run` on the same bytes, and report
per-row recall / Jaccard of our lists against the official mask, and the
block-logit error. Prints a markdown table.
"""
import importlib.util
import json
import os
import subprocess
import sys
import types

import numpy as np
import torch


def load_official(stem_dir):
    for name, sub in (("stemref", ""), ("stemref.ops", "ops"), ("stemref.backends", "backends")):
        mod = types.ModuleType(name)
        mod.__path__ = [os.path.join(stem_dir, sub)]
        sys.modules[name] = mod
    spec = importlib.util.spec_from_file_location(
        "stemref.backends.torch_impl", os.path.join(stem_dir, "backends", "torch_impl.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def rope(x, theta=500000.0):
    n, d = x.shape[-2], x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d)
    ang = torch.arange(n, dtype=torch.float64, device=x.device)[:, None] * inv[None, :]
    cos, sin = ang.cos().float(), ang.sin().float()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out


def make_inputs(n, hq, hkv, d, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    dev = "cuda"
    shared = torch.randn(hkv, 1, d, generator=g, device=dev) * 1.5
    k = shared + torch.randn(1, hkv, n, d, generator=g, device=dev)
    q = shared.repeat_interleave(hq // hkv, 0) + torch.randn(1, hq, n, d, generator=g, device=dev)
    k[:, :, :16] += 3.0 * shared  # attention sinks
    stripes = torch.randint(0, n, (8,), generator=g, device=dev)
    k[:, :, stripes] += 2.5 * shared  # vertical stripes
    q, k = rope(q), rope(k)
    v = torch.randn(1, hkv, n, d, generator=g, device=dev)
    heavy = torch.randint(0, n, (n // 64,), generator=g, device=dev)
    v[:, :, heavy] *= 4.0  # high-norm V rows
    return q.bfloat16(), k.bfloat16(), v.bfloat16()


def official_mask(ref, q, k, v, layer_idx=5):
    hq, hkv = q.shape[1], k.shape[1]
    kr = k.repeat_interleave(hq // hkv, 1)
    vr = v.repeat_interleave(hq // hkv, 1)
    logits = ref._compute_triton_block_logits(q, kr, vr, block_size=128, stride=8,
                                              chunk_size=2048, norm=1.0, causal=True)
    nb = logits.shape[-1]
    sched = ref.generate_exact_k_schedule(nb, 0.7, layer_idx, q.device, num_heads=hq,
                                          keep_ratio=0.2)
    budget = sched.view(1, hq, -1, 1)
    needed = int(min(nb, max(0, int(torch.ceil(sched[:, 0].float()).max().item()))))
    mask = torch.zeros_like(logits, dtype=torch.bool)
    vals, idx = torch.topk(logits, needed, dim=-1)
    rank = torch.arange(needed, device=q.device).view(1, 1, 1, -1)
    mask.scatter_(3, idx, (rank < budget) & torch.isfinite(vals))
    qr = torch.arange(nb, device=q.device).view(1, 1, nb, 1)
    kr_ = torch.arange(nb, device=q.device).view(1, 1, 1, nb)
    causal = kr_ <= qr
    mask |= (kr_ < min(4, nb)) & causal
    mask |= (kr_ >= torch.clamp(qr - 3, min=0)) & causal
    mask &= causal
    return logits.float().cpu().numpy(), mask.cpu().numpy(), sched[0].cpu().numpy()


def save_bf16(path, t):
    np.save(path, t.view(torch.int16).cpu().numpy().view(np.uint16))


def main():
    stem_dir, stem_bin, out_dir = sys.argv[1:4]
    sizes = [int(x) for x in sys.argv[4:]] or [8192, 16384, 32768]
    os.makedirs(out_dir, exist_ok=True)
    ref = load_official(stem_dir)
    hq, hkv, d = 32, 8, 128
    print("| N | blocks | density (official) | density (libstem) | mean row recall | min row recall "
          "| mean Jaccard | rows with recall < 1 | max abs logit diff | schedule equal "
          "| misses within 2 bf16 ulps of the row's k-th logit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for i, n in enumerate(sizes):
        q, k, v = make_inputs(n, hq, hkv, d, seed=1234 + i)
        logits, mask, sched = official_mask(ref, q, k, v)
        work = os.path.join(out_dir, f"n{n}")
        os.makedirs(work, exist_ok=True)
        for name, t in (("q", q), ("k", k), ("v", v)):
            save_bf16(os.path.join(work, f"{name}.npy"), t)
        subprocess.run([stem_bin, "run", os.path.join(work, "q.npy"), os.path.join(work, "k.npy"),
                        os.path.join(work, "v.npy"), "--bf16", "-o", work], check=True,
                       stdout=subprocess.DEVNULL)
        blocks = np.load(os.path.join(work, "blocks.npy"))[0]
        counts = np.load(os.path.join(work, "counts.npy"))[0]
        scores = np.load(os.path.join(work, "scores.npy"))[0]
        ours = np.zeros_like(mask[0])
        for h in range(hq):
            for r in range(blocks.shape[1]):
                ours[h, r, blocks[h, r, :counts[h, r]]] = True
        theirs = mask[0]
        inter = (ours & theirs).sum(-1)
        recall = inter / theirs.sum(-1)
        jacc = inter / (ours | theirs).sum(-1)
        fin = np.isfinite(logits[0])
        diff = np.abs(scores[fin] - logits[0][fin]).max()
        causal = np.tril(np.ones(theirs.shape[1:], dtype=bool)).sum()
        info = json.load(open(os.path.join(work, "summary.json")))
        # Misses (official keeps, we do not): how far is their official logit from
        # the row's k-th largest official logit? bf16 logits tie often there.
        lg = logits[0]
        misses = np.argwhere(theirs & ~ours)
        near = 0
        for h, r, j in misses:
            row = np.sort(lg[h, r, :r + 1])[::-1]
            kth = row[min(int(sched[r]), r + 1) - 1]
            near += abs(lg[h, r, j] - kth) <= 2 * 2.0 ** -8 * max(abs(kth), 1e-30)
        boundary = f"{near} / {len(misses)}"
        our_budget = info.get("budget")
        same = "n/a" if our_budget is None else str(list(map(int, our_budget)) == list(map(int, sched)))
        print(f"| {n} | {theirs.shape[-1]} | {theirs.sum() / (causal * hq):.4f} | "
              f"{ours.sum() / (causal * hq):.4f} | {recall.mean():.4f} | {recall.min():.4f} | "
              f"{jacc.mean():.4f} | {(recall < 1).sum()} / {recall.size} | {diff:.3g} | {same} | "
              f"{boundary} |")
        for f in ("q.npy", "k.npy", "v.npy", "out.npy"):
            os.remove(os.path.join(work, f))


if __name__ == "__main__":
    main()
