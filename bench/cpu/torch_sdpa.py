"""Torch CPU SDPA, the peer of `stem bench --backend cpu`: the same shapes,
timed in the same script. Causal, GQA (enable_gqa=True), fp32, bf16, fp16;
median of the timed runs after warm-up. FLOPs as in stem bench: causal
dense = 2 * B * Hq * N^2 * d.

usage: python3 torch_sdpa.py --n 4096,8192 --d 128,64 --hq 32 --hkv 8
           [--dtypes fp32,bf16,fp16] [--repeat 2] [--warmup 1] [--threads T]
Prints one tab-separated line per run as soon as it is timed."""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="4096,8192,16384")
    ap.add_argument("--d", default="128")
    ap.add_argument("--hq", type=int, default=32)
    ap.add_argument("--hkv", type=int, default=8)
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--warmup-max-n", type=int, default=0,
                    help="warm up only at N up to this (0: every N); larger N run warm anyway")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"B=1 Hq={a.hq} Hkv={a.hkv}, causal, enable_gqa=True")
    print("dtype\td\tN\tms\tGFLOP/s")
    for dname in a.dtypes.split(","):
        for d in (int(x) for x in a.d.split(",")):
            for n in (int(x) for x in a.n.split(",")):
                g = torch.Generator().manual_seed(1)
                q = torch.randn(1, a.hq, n, d, generator=g).to(dtypes[dname])
                k = torch.randn(1, a.hkv, n, d, generator=g).to(dtypes[dname])
                v = torch.randn(1, a.hkv, n, d, generator=g).to(dtypes[dname])
                warm = a.warmup if a.warmup_max_n <= 0 or n <= a.warmup_max_n else 0
                times = []
                with torch.no_grad():
                    for r in range(warm + a.repeat):  # the first `warm` runs warm up
                        t0 = time.perf_counter()
                        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                        times.append(time.perf_counter() - t0)
                ms = statistics.median(times[warm:]) * 1e3
                flops = 2.0 * a.hq * n * n * d
                print(f"{dname}\t{d}\t{n}\t{ms:.1f}\t{flops / ms * 1e-6:.1f}", flush=True)


if __name__ == "__main__":
    main()
