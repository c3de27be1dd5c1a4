#!/usr/bin/env python3
"""Independent numpy forward of Gemma-3-270M (GGUF), for checking the C
forward of `stem eval --model gemma3` on windows where no GPU is at hand.

Written from the Hugging Face Gemma 3 text model's definition, sharing no
code with tools/model: weights dequantised by the `gguf` Python package,
float64 everywhere but the final vocabulary projection (float32), attention
as a full masked softmax matrix per head (causal for the global layers,
causal with a sliding window of 512 keys, self included, for the others),
RMSNorm computed as x * rsqrt(mean(x^2) + eps) * w. Gemma's (1 + w) is
already folded into the GGUF's norm weights by llama.cpp's converter
(output_norm.weight has mean ~26), so w is used as stored.

usage: gemma3_ref.py MODEL.gguf LOGITS.npy   (LOGITS.npy.ids.npy beside it,
       both written by `stem eval --model gemma3 --dump-logits`)
needs: numpy, gguf
"""
import math
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def main():
    model, logits_path = sys.argv[1:3]
    r = GGUFReader(model)
    tens = {t.name: t for t in r.tensors}

    def w(name, dtype=np.float64):
        t = tens[name]
        return np.asarray(dequantize(t.data, t.tensor_type), dtype=dtype).reshape(
            [int(x) for x in reversed(t.shape)])

    def f(key, default=None):
        return r.fields[key].contents() if key in r.fields else default

    L = int(f("gemma3.block_count"))
    D = int(f("gemma3.embedding_length"))
    H = int(f("gemma3.attention.head_count"))
    HKV = int(f("gemma3.attention.head_count_kv"))
    DH = int(f("gemma3.attention.key_length"))
    WIN = int(f("gemma3.attention.sliding_window"))
    EPS = float(f("gemma3.attention.layer_norm_rms_epsilon"))
    THETA_GLOBAL = float(f("gemma3.rope.freq_base"))
    THETA_LOCAL = 10000.0            # Gemma 3 config rope_local_base_freq
    PATTERN = 6                      # sliding_window_pattern: every 6th layer global
    SCALE = 256 ** -0.5              # query_pre_attn_scalar = 256 (config of the 270M model)

    ids = np.load(logits_path + ".ids.npy").astype(np.int64)
    got = np.load(logits_path)
    n = len(ids)
    print(f"{n} tokens, {L} layers, d {D}, heads {H}/{HKV} x {DH}, window {WIN}")

    emb = w("token_embd.weight", np.float32)
    x = emb[ids].astype(np.float64) * math.sqrt(D)

    def rms(v, wt):
        return v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + EPS) * wt

    def rope(v, theta):  # v [heads, n, DH]; HF rotate_half
        inv = theta ** (-np.arange(0, DH, 2, dtype=np.float64) / DH)
        ang = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]
        cos = np.concatenate([np.cos(ang)] * 2, axis=-1)
        sin = np.concatenate([np.sin(ang)] * 2, axis=-1)
        rot = np.concatenate([-v[..., DH // 2:], v[..., :DH // 2]], axis=-1)
        return v * cos + rot * sin

    def gelu_tanh(v):
        return 0.5 * v * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v ** 3)))

    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    causal = j <= i
    windowed = causal & (i - j < WIN)
    for layer in range(L):
        p = f"blk.{layer}."
        is_global = (layer + 1) % PATTERN == 0
        h = rms(x, w(p + "attn_norm.weight"))
        q = (h @ w(p + "attn_q.weight").T).reshape(n, H, DH).transpose(1, 0, 2)
        k = (h @ w(p + "attn_k.weight").T).reshape(n, HKV, DH).transpose(1, 0, 2)
        v = (h @ w(p + "attn_v.weight").T).reshape(n, HKV, DH).transpose(1, 0, 2)
        q = rms(q, w(p + "attn_q_norm.weight"))
        k = rms(k, w(p + "attn_k_norm.weight"))
        theta = THETA_GLOBAL if is_global else THETA_LOCAL
        q, k = rope(q, theta), rope(k, theta)
        mask = causal if is_global else windowed
        out = np.empty((H, n, DH))
        for hh in range(H):
            kv = hh // (H // HKV)
            s = (q[hh] @ k[kv].T) * SCALE
            s = np.where(mask, s, -np.inf)
            s -= s.max(axis=1, keepdims=True)
            pr = np.exp(s)
            pr /= pr.sum(axis=1, keepdims=True)
            out[hh] = pr @ v[kv]
        a = out.transpose(1, 0, 2).reshape(n, H * DH) @ w(p + "attn_output.weight").T
        x = x + rms(a, w(p + "post_attention_norm.weight"))
        h = rms(x, w(p + "ffn_norm.weight"))
        g = h @ w(p + "ffn_gate.weight").T
        u = h @ w(p + "ffn_up.weight").T
        m = (gelu_tanh(g) * u) @ w(p + "ffn_down.weight").T
        x = x + rms(m, w(p + "post_ffw_norm.weight"))
    x = rms(x, w("output_norm.weight"))
    ref = x.astype(np.float32) @ emb.T  # tied output, no soft-capping in Gemma 3
    diff = np.abs(ref.astype(np.float64) - got)
    top_ref, top_got = ref.argmax(1), got.argmax(1)
    lr = ref.astype(np.float64)
    lr -= lr.max(1, keepdims=True)
    lr -= np.log(np.exp(lr).sum(1, keepdims=True))
    lg = got.astype(np.float64)
    lg -= lg.max(1, keepdims=True)
    lg -= np.log(np.exp(lg).sum(1, keepdims=True))
    kl = (np.exp(lr) * (lr - lg)).sum(1)
    late = np.arange(n) >= WIN
    print(f"top-1 agreement {np.mean(top_ref == top_got):.4f} ({np.sum(top_ref == top_got)}/{n}); "
          f"max |logit diff| {diff.max():.3e} (logits up to {np.abs(ref).max():.1f}); "
          f"mean KL {kl.mean():.2e}, max KL {kl.max():.2e}")
    if late.any():
        print(f"rows >= {WIN} (sliding window full): top-1 {np.mean(top_ref[late] == top_got[late]):.4f}, "
              f"max |logit diff| {diff[late].max():.3e}")
    nll = -lr[np.arange(n - 1), ids[1:]]
    print(f"perplexity of the window (reference forward): {math.exp(nll.mean()):.3f}")


if __name__ == "__main__":
    main()
