#!/usr/bin/env python3
"""XAttention block masks by the official threshold rule, and agreement with `stem run`.

Usage:
  xattn_official.py Q.npy K.npy [--tau 0.9] [--stride 8] [--block 128] [--norm 1]
                    [--mass f64|bf16p|torch] [--rule official|strict] [--chunk-tokens C]
                    [--stem-blocks blocks.npy] [--save-masks out.npy]

Q is [B, Hq, N, d], K [B, Hkv, N, d] (any float dtype; computed in float64).
The masses follow docs/semantics.md section 3 (strided antidiagonal logits,
row softmax over the causal strided columns, block sums); --mass picks how the
softmax is rounded before the block sums, to model the official code's dtypes:
  f64    no rounding (libstem's own definition),
  bf16p  each probability rounded to bf16, sums exact,
  torch  the official torch path: probabilities rounded to bf16, the sum over a
         block's key columns rounded to bf16, then the sum over its query rows
         rounded to bf16 (the reductions of a bf16 tensor return bf16).
The selection is written here from the published semantics of the official
`find_blocks_chunked` (mit-han-lab/x-attention, xattn/src/utils.py), prefill,
causal, threshold mode, one query chunk that starts at key block 0
(current_index = 0) unless --chunk-tokens splits the rows, and mirrors its
tensor steps:
  forced     mask[.., 0] = 1, then the chunk's diagonal written as an identity
             (so at current_index 0 only the diagonal stays forced),
  values     the non-forced masses sorted descending, prefixed by 0 and the
             forced mass, the last two dropped; an exclusive cumulative sum,
  order      forced blocks first, then the rest by mass descending,
  keep       position p kept iff cumsum[p] < tau * row total; rejected
             positions point at block 0, so block 0 is always set,
  causal     lower block triangle.
--rule strict gives the paper-literal rule (forced {0, I}; o_r kept iff
F + W(o_1) + ... + W(o_{r-1}) < T) for comparison.
With --stem-blocks (the blocks.npy of `stem run`), prints the per-row recall
|ours & official| / |official| and precision |ours & official| / |ours|.
"""
import argparse
import sys

import numpy as np


def bf16_round(x):
    """Round float32 values to the nearest bf16 (ties to even), returned as float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def block_masses(q, k, S, B, norm, scale, mass):
    """W [n, n] for one (query head, its KV head): q, k [N, d] float64."""
    N, d = q.shape
    G = B // S
    n = -(-N // B)
    M = n * G  # strided rows/cols padded to whole blocks
    Np = M * S
    qp = np.zeros((Np, d))
    kp = np.zeros((Np, d))
    qp[:N] = q
    kp[:N] = k
    # segment t of strided query row m is token m*S + S-1-t; of key col c, token c*S + t
    qs = np.concatenate([qp[S - 1 - t::S] for t in range(S)], axis=1)
    ks = np.concatenate([kp[t::S] for t in range(S)], axis=1)
    A = (qs @ ks.T) * (scale / (S * norm))
    rows = -(-N // S)  # real strided rows: m*S < N
    A[np.triu_indices(M, 1)] = -np.inf
    A[rows:] = -np.inf
    mx = A.max(axis=1, keepdims=True)
    mx[~np.isfinite(mx)] = 0.0
    P = np.exp(A - mx)
    s = P.sum(axis=1, keepdims=True)
    s[s == 0] = 1.0
    P = P / s
    P[rows:] = 0.0
    if mass == "f64":
        return P.reshape(n, G, n, G).sum(axis=(1, 3))
    Pb = bf16_round(P.astype(np.float32)).astype(np.float64)
    if mass == "bf16p":
        return Pb.reshape(n, G, n, G).sum(axis=(1, 3))
    # torch: sum over the block's key columns, round; over its query rows, round
    colsum = bf16_round(Pb.reshape(M, n, G).sum(axis=2).astype(np.float32))
    rowsum = colsum.astype(np.float64).reshape(n, G, n).sum(axis=1)
    return bf16_round(rowsum.astype(np.float32)).astype(np.float64)


def desc_order(v):
    """Indices by value descending, ties to the lower index."""
    return np.argsort(-v, kind="stable")


def official_mask(W, tau, offset=0):
    """The official threshold selection on W [chunk, nk] (query row r is key block offset+r)."""
    chunk, nk = W.shape
    keep = np.zeros((chunk, nk), dtype=bool)
    for r in range(chunk):
        w = W[r].astype(np.float64)
        forced = np.zeros(nk, dtype=bool)
        forced[0] = True
        # the diagonal identity is written over the chunk's columns, block 0 included
        forced[offset:offset + chunk] = False
        forced[offset + r] = True
        target = w.sum() * tau
        other = np.where(forced, 0.0, w)
        svals = -np.sort(-other)
        vals = np.concatenate([[0.0, w[forced].sum()], svals[:-2]])
        excl = np.concatenate([[0.0], np.cumsum(vals[:-1])])
        key = np.where(forced, 100000.0 * (1.0 + w), w)
        order = desc_order(key)
        idx = np.where(excl < target, order, 0)
        keep[r] = forced
        keep[r, idx] = True
        keep[r, offset + chunk:] = False
    # causal lower triangle over the chunk's own columns
    for r in range(chunk):
        keep[r, offset + r + 1:offset + chunk] = False
    return keep


def strict_mask(W, tau):
    n = W.shape[0]
    keep = np.zeros((n, n), dtype=bool)
    for I in range(n):
        w = W[I, :I + 1]
        keep[I, 0] = keep[I, I] = True
        F = w[0] + (w[I] if I > 0 else 0.0)
        T = tau * w.sum()
        others = np.arange(1, I)
        order = others[desc_order(w[1:I])]
        run = F
        for j in order:
            if run < T:
                keep[I, j] = True
            run += w[j]
    return keep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("q")
    ap.add_argument("k")
    ap.add_argument("--tau", type=float, default=0.9)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--norm", type=float, default=1.0)
    ap.add_argument("--scale", type=float, default=0.0, help="softmax scale (0: 1/sqrt(d))")
    ap.add_argument("--mass", choices=("f64", "bf16p", "torch"), default="f64")
    ap.add_argument("--rule", choices=("official", "strict"), default="official")
    ap.add_argument("--bf16-inputs", action="store_true", help="round Q and K to bf16 first")
    ap.add_argument("--chunk-tokens", type=int, default=0,
                    help="official query chunk (chunk_size); 0 = one chunk for the whole "
                         "sequence. Chunks after the first start at a key block offset > 0")
    ap.add_argument("--stem-blocks")
    ap.add_argument("--save-masks")
    a = ap.parse_args()

    q = np.load(a.q).astype(np.float64)
    k = np.load(a.k).astype(np.float64)
    if q.ndim == 3:
        q, k = q[None], k[None]
    if a.bf16_inputs:
        q = bf16_round(q.astype(np.float32)).astype(np.float64)
        k = bf16_round(k.astype(np.float32)).astype(np.float64)
    Bt, Hq, N, d = q.shape
    g = Hq // k.shape[1]
    scale = a.scale if a.scale > 0 else 1.0 / np.sqrt(d)
    n = -(-N // a.block)
    masks = np.zeros((Bt, Hq, n, n), dtype=bool)
    for b in range(Bt):
        for h in range(Hq):
            W = block_masses(q[b, h], k[b, h // g], a.stride, a.block, a.norm, scale, a.mass)
            if a.rule == "strict":
                masks[b, h] = strict_mask(W, a.tau)
                continue
            cb = a.chunk_tokens // a.block if a.chunk_tokens > 0 else n
            for off in range(0, n, cb):
                rows = min(cb, n - off)
                masks[b, h, off:off + rows] = official_mask(W[off:off + rows], a.tau, off)
    if a.save_masks:
        np.save(a.save_masks, masks)
    dens = masks.sum() / (Bt * Hq * n * (n + 1) / 2)
    print(f"N={N} n={n} heads={Bt * Hq} tau={a.tau} mass={a.mass} rule={a.rule} "
          f"density={dens:.4f}")
    if a.stem_blocks:
        blocks = np.load(a.stem_blocks)
        ours = np.zeros_like(masks)
        for b in range(Bt):
            for h in range(Hq):
                for I in range(n):
                    lst = blocks[b, h, I]
                    ours[b, h, I, lst[lst >= 0]] = True
        inter = (ours & masks).sum(axis=-1)
        rec = inter / masks.sum(axis=-1)
        prec = inter / np.maximum(ours.sum(axis=-1), 1)
        differ = (ours != masks).any(axis=-1)
        print(f"  vs stem: mean row recall {rec.mean():.5f} (min {rec.min():.4f}), "
              f"mean row precision {prec.mean():.5f} (min {prec.min():.4f}), "
              f"rows differing {int(differ.sum())} / {differ.size}, "
              f"stem density {ours.sum() / (Bt * Hq * n * (n + 1) / 2):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
