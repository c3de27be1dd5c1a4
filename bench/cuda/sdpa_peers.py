"""PyTorch SDPA peers for bench/results/cuda.md: FlashAttention-2 and cuDNN
backends, causal, GQA, one Llama-8B layer (Hq 32, Hkv 8, d 128, batch 1), bf16 or
SDPA_DTYPE=f16; SDPA_SHAPE=hq,hkv,d for another head shape. CUDA events, warm-up, median. Usage: python3 sdpa_peers.py [N ...]"""
import os
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def time_ms(fn, warm, reps):
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main():
    ns = [int(x) for x in sys.argv[1:]] or [8192, 16384, 32768, 65536, 131072]
    dt = torch.float16 if os.environ.get("SDPA_DTYPE") == "f16" else torch.bfloat16
    hq, hkv, d = (int(x) for x in os.environ.get("SDPA_SHAPE", "32,8,128").split(","))
    print("device:", torch.cuda.get_device_name(), "torch", torch.__version__, "dtype", dt,
          "shape", (hq, hkv, d))
    print("| N | peer | ms | TFLOP/s |")
    print("|---:|---|---:|---:|")
    for n in ns:
        g = torch.Generator(device="cuda").manual_seed(1)
        q = torch.randn(1, hq, n, d, device="cuda", dtype=dt, generator=g)
        k = torch.randn(1, hkv, n, d, device="cuda", dtype=dt, generator=g)
        v = torch.randn(1, hkv, n, d, device="cuda", dtype=dt, generator=g)
        flop = 2.0 * hq * n * n * d  # causal
        warm, reps = (1, 3) if n >= 65536 else (2, 7)
        for name, backend in (("sdpa flash", SDPBackend.FLASH_ATTENTION),
                              ("sdpa cudnn", SDPBackend.CUDNN_ATTENTION)):
            try:
                with sdpa_kernel(backend):
                    ms = time_ms(lambda: F.scaled_dot_product_attention(
                        q, k, v, is_causal=True, enable_gqa=True), warm, reps)
                print(f"| {n} | {name} | {ms:.3f} | {flop / ms * 1e-9:.1f} |", flush=True)
            except Exception as e:  # a backend may refuse a shape
                print(f"| {n} | {name} | failed: {type(e).__name__}: {str(e)[:80]} | |", flush=True)
        del q, k, v
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
