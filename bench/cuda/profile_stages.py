"""Where the GPU time of one stem.prefill goes, kernel by kernel (CUPTI through
torch.profiler: durations on the GPU, no host gaps), for a Llama-8B layer
(Hq 32, Hkv 8, d 128, bf16) at each N given; and the host gaps between
calls of the Python wrapper against the bare C call (same plan, buffers
wrapped once), which is what the Python overhead check measures.

    python3 profile_stages.py [N ...]        (default 8192 32768)
STEM_LIBRARY picks the library; PYTHONPATH must reach python/."""
import ctypes
import sys
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

import stem
from stem import _core
from stem import _lib as L


def kernel_table(fn, calls):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    per = defaultdict(lambda: [0, 0.0])
    first, last, busy = None, None, 0.0
    for ev in prof.events():
        if ev.device_type != torch.autograd.DeviceType.CUDA:
            continue
        t0, dur = ev.time_range.start, ev.time_range.elapsed_us()
        first = t0 if first is None else min(first, t0)
        last = t0 + dur if last is None else max(last, t0 + dur)
        busy += dur
        per[ev.name][0] += 1
        per[ev.name][1] += dur
    return per, (last - first) if first is not None else 0.0, busy


def show(title, fn, calls=5):
    per, span, busy = kernel_table(fn, calls)
    print(f"\n#### {title}: {calls} calls, GPU span {span / calls / 1e3:.3f} ms/call, "
          f"kernels busy {busy / calls / 1e3:.3f} ms/call (gaps {100 * (1 - busy / span):.1f}%)")
    print("| kernel | launches/call | us/call |\n|---|---:|---:|")
    for name, (n, us) in sorted(per.items(), key=lambda kv: -kv[1][1]):
        print(f"| {name[:60]} | {n / calls:.0f} | {us / calls:.1f} |")


def main():
    ns = [int(x) for x in sys.argv[1:]] or [8192, 32768]
    hq, hkv, d = 32, 8, 128
    print(f"stem {stem.version()} from {stem.library_path()}; torch {torch.__version__}; "
          f"{torch.cuda.get_device_name()}")
    for n in ns:
        g = torch.Generator(device="cuda").manual_seed(n)
        q = torch.randn(1, hq, n, d, device="cuda", dtype=torch.bfloat16, generator=g)
        k = torch.randn(1, hkv, n, d, device="cuda", dtype=torch.bfloat16, generator=g)
        v = torch.randn(1, hkv, n, d, device="cuda", dtype=torch.bfloat16, generator=g)
        out = torch.empty_like(q)
        show(f"N={n} stem.prefill (stem)", lambda: stem.prefill(q, k, v, out=out))
        show(f"N={n} stem.prefill (dense)",
             lambda: stem.prefill(q, k, v, out=out, selector="dense"))
        # The bare C call on one plan and buffers made once.
        ctx = _core.pick_context([stem._arrays.adapt(q)], None, None)
        lib = L.lib()
        plan = ctx.plan(_core.make_desc(1, hq, hkv, n, d, L.DTYPE_BF16, None, -1),
                        _core.make_config("stem", 128, None, {}))
        bound = _core.Bound(ctx)
        ts = [bound.tensor(stem._arrays.adapt(x)) for x in (q, k, v, out)]
        ptrs = [ctypes.byref(t) for t in ts]
        show(f"N={n} bare C stem_prefill (stem)",
             lambda: _core.check(lib.stem_prefill(plan, *ptrs, None, None, None), "stem_prefill"))
        bound.close()


if __name__ == "__main__":
    main()
