#!/usr/bin/env python3
"""Independent numpy forward of the GGUF SmolLM2 model, for checking the C
forward of `stem eval` on short windows where no GPU is at hand.

Independent of the C code in the places that matter: weights are
dequantised by the `gguf` Python package, Q/K rows are un-permuted back to
the Hugging Face layout and rotated with HF's half-split RoPE (the C code
keeps the GGUF layout and rotates adjacent pairs), attention is plain
softmax in float64.

usage: reference_forward.py MODEL.gguf LOGITS.npy   (LOGITS.npy.ids.npy beside it,
       both written by `stem eval --dump-logits`)
needs: numpy, gguf (pip install gguf)
"""
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def tensor(reader, name):
    for t in reader.tensors:
        if t.name == name:
            w = dequantize(t.data, t.tensor_type)
            return np.asarray(w, dtype=np.float32).reshape([int(x) for x in reversed(t.shape)])
    raise KeyError(name)


def field(reader, key):
    return reader.fields[key].contents()


def unpermute(w, n_head):
    # llama.cpp's converter stored permute(w_hf); invert it to get HF's rows
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def forward(reader, ids):
    n_layer = int(field(reader, "llama.block_count"))
    n_head = int(field(reader, "llama.attention.head_count"))
    n_kv = int(field(reader, "llama.attention.head_count_kv"))
    base = float(field(reader, "llama.rope.freq_base"))
    eps = float(field(reader, "llama.attention.layer_norm_rms_epsilon"))
    emb = tensor(reader, "token_embd.weight")
    d = emb.shape[1]
    dh = d // n_head
    n = len(ids)
    inv = base ** (-np.arange(0, dh, 2, dtype=np.float64) / dh)
    ang = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]
    ang = np.concatenate([ang, ang], axis=-1)
    cos, sin = np.cos(ang), np.sin(ang)
    x = emb[ids].astype(np.float64)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for l in range(n_layer):
        p = f"blk.{l}."
        h = rms_norm(x, tensor(reader, p + "attn_norm.weight"), eps)
        wq = unpermute(tensor(reader, p + "attn_q.weight"), n_head)
        wk = unpermute(tensor(reader, p + "attn_k.weight"), n_kv)
        wv = tensor(reader, p + "attn_v.weight")
        q = (h @ wq.T).reshape(n, n_head, dh).transpose(1, 0, 2)
        k = (h @ wk.T).reshape(n, n_kv, dh).transpose(1, 0, 2)
        v = (h @ wv.T).reshape(n, n_kv, dh).transpose(1, 0, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = n_head // n_kv
        k = np.repeat(k, g, axis=0)
        v = np.repeat(v, g, axis=0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(dh) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(1, 0, 2).reshape(n, d)
        x = x + o @ tensor(reader, p + "attn_output.weight").T
        h = rms_norm(x, tensor(reader, p + "ffn_norm.weight"), eps)
        gate = h @ tensor(reader, p + "ffn_gate.weight").T
        up = h @ tensor(reader, p + "ffn_up.weight").T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ tensor(reader, p + "ffn_down.weight").T
    x = rms_norm(x, tensor(reader, "output_norm.weight"), eps)
    return x @ emb.T.astype(np.float64)


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def compare(ref, got, label):
    lr, lg = log_softmax(ref.astype(np.float64)), log_softmax(got.astype(np.float64))
    kl = (np.exp(lr) * (lr - lg)).sum(-1)
    top1 = (ref.argmax(-1) == got.argmax(-1)).mean()
    print(f"{label}: rows {ref.shape[0]}, top-1 agreement {top1:.4f}, "
          f"max |logit diff| {np.abs(ref - got).max():.3e} (logit scale {np.abs(ref).max():.1f}), "
          f"mean KL(ref||C) {kl.mean():.3e}, max KL {kl.max():.3e}")
    return top1, kl.mean()


def main():
    model, logits_path = sys.argv[1], sys.argv[2]
    got = np.load(logits_path)
    ids = np.load(logits_path + ".ids.npy")
    ref = forward(GGUFReader(model), ids)
    top1, kl = compare(ref, got, "numpy reference vs C forward")
    ok = top1 >= 0.98 and kl < 1e-3
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
