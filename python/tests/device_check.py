"""Device check of the stem package on CUDA torch tensors (GPU machine).

Run by run_on_device.sh after the package is installed. Checks, each
printed as PASS/FAIL with its numbers:
  1. prefill on CUDA tensors (bf16, GQA, DENSE) matches torch SDPA;
     a BNHD view (transposed, no copy) gives the same output;
  2. STEM selections on CUDA equal those of libstem's CPU backend on the
     same tensors (same C API, another device), row by row;
  3. no synchronization: prefill returns while earlier work is still
     queued on the stream (first call on a new stream included), and
     the caller's current CUDA context is the same before and after;
  4. transformers: a small random-weight Llama built from a config (no
     download) with attn_implementation="stem": DENSE logits match SDPA at
     bf16 tolerance (STEM's distance is reported); prefill went through
     libstem and decode through SDPA (generate);
  5. overhead at 32K tokens: stem.prefill on CUDA tensors against the bare
     C call (stem_prefill through ctypes on prebuilt plan and buffers), same
     stream, CUDA events, median of repeats (target <= 2%).
Exit status 1 if any check fails.
"""

import ctypes
import statistics
import sys
import time

import torch

import stem
from stem import _lib as L
from stem import _core

results = []


def report(name, ok, detail):
    results.append((name, ok))
    print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)


def rel_err(a, b):
    a, b = a.float(), b.float()
    return ((a - b).norm() / b.norm()).item()


def sdpa(q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                            enable_gqa=True)


def check_dense():
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, 8, 4096, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    k = torch.randn(1, 2, 4096, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    v = torch.randn(1, 2, 4096, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    out = stem.prefill(q, k, v, selector="dense")
    ref = sdpa(q, k, v)
    e = rel_err(out, ref)
    report("dense prefill on CUDA vs torch SDPA (bf16, 4096 tokens, GQA 8/2, d 128)",
           out.device == q.device and e < 1e-2, f"relative L2 error {e:.2e}")
    o2 = stem.prefill(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                      selector="dense", layout="bnhd")
    e2 = rel_err(o2.transpose(1, 2), out)
    report("BNHD strided views (no copy)", e2 < 1e-3, f"relative L2 error {e2:.2e}")


def check_selection_vs_cpu():
    """The real SmolLM2 fixture (tests/fixtures/smollm2): CUDA tensors through
    the package against the CPU backend through the same C API on the same
    bytes (what `stem run` computes)."""
    import numpy as np
    from pathlib import Path
    fx = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "smollm2"
    for layer in ("02", "14"):
        q, k, v = (np.load(fx / f"layer{layer}_{t}.npy") for t in ("q", "k", "v"))
        qg, kg, vg = (torch.from_numpy(x).cuda() for x in (q, k, v))
        for block in (64, 128):
            _, ig, cg = stem.prefill(qg, kg, vg, block_size=block, softmax_scale=0.125,
                                     return_lists=True)
            torch.cuda.synchronize()
            _, ic, cc = stem.prefill(q, k, v, block_size=block, softmax_scale=0.125,
                                     return_lists=True, backend="cpu")
            ig, cg = ig.cpu().numpy(), cg.cpu().numpy()
            rows = cg.size
            ig2, ic2 = ig.reshape(rows, -1), ic.reshape(rows, -1)
            same = int(sum(np.array_equal(ig2[r], ic2[r]) for r in range(rows)))
            inter = kept = 0
            for r in range(rows):
                a = set(ig2[r][: cg.reshape(-1)[r]].tolist())
                b = set(ic2[r][: cc.reshape(-1)[r]].tolist())
                inter, kept = inter + len(a & b), kept + len(b)
            recall = inter / max(kept, 1)
            count_diff = int((cg != cc).sum())
            # f16 near-ties at the budget boundary may flip a block between
            # devices (bench/results/official-agreement.md): most rows agree.
            report(f"STEM selection, SmolLM2 layer {layer}, 8192 tokens, block {block}: "
                   "CUDA tensors vs the CPU backend",
                   recall >= 0.99 and count_diff <= rows // 100,
                   f"{same}/{rows} rows identical, block recall {recall:.4f}, "
                   f"{count_diff} rows with another count")


def cu_current():
    cuda = ctypes.CDLL("libcuda.so.1")
    cur = ctypes.c_void_p()
    cuda.cuCtxGetCurrent(ctypes.byref(cur))
    return cur.value


def check_no_sync():
    def make(n):
        return (torch.randn(1, 8, n, 128, device="cuda", dtype=torch.bfloat16),
                torch.randn(1, 2, n, 128, device="cuda", dtype=torch.bfloat16),
                torch.randn(1, 2, n, 128, device="cuda", dtype=torch.bfloat16))

    def busy_call(s, args):
        with torch.cuda.stream(s):
            torch.cuda._sleep(int(2e9))  # about a second of GPU work queued first
            t0 = time.perf_counter()
            out = stem.prefill(*args)
            host_s = time.perf_counter() - t0
            pending = not s.query()
        s.synchronize()
        return pending, host_s, bool(torch.isfinite(out.float()).all().item())

    small, big = make(1024), make(8192)
    torch.cuda.synchronize()
    ctx_before = cu_current()
    s = torch.cuda.Stream()
    pending, host_s, finite = busy_call(s, small)  # context made on this stream
    print(f"[INFO] first call on a new stream (libstem context made, kernels loaded): "
          f"{host_s * 1e3:.1f} ms, stream still busy afterwards: {pending}")
    for label in ("new plan on that context (plan, budget upload, workspace)", "warm call"):
        pending, host_s, finite = busy_call(s, big)
        report(f"no stream synchronization: {label}", pending and finite,
               f"returned after {host_s * 1e3:.1f} ms with the stream still busy: {pending}")
    ctx_after = cu_current()
    report("the caller's current CUDA context is unchanged", ctx_after == ctx_before,
           f"{ctx_before:#x} -> {ctx_after:#x}")


def check_transformers():
    try:
        import transformers
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError as e:
        report("transformers", False, f"not importable: {e}")
        return
    import stem.integrations.transformers as stf
    import copy
    cfg = LlamaConfig(vocab_size=1024, hidden_size=512, intermediate_size=1024,
                      num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                      head_dim=64, max_position_embeddings=8192, rms_norm_eps=1e-5)
    torch.manual_seed(0)
    ref_model = LlamaForCausalLM._from_config(copy.deepcopy(cfg), attn_implementation="sdpa")
    ref_model = ref_model.to("cuda", torch.bfloat16).eval()
    state = ref_model.state_dict()
    ids = torch.randint(0, 1024, (1, 4096), device="cuda")
    with torch.no_grad():
        ref = ref_model(ids).logits.float()

        def model_with(selector, **kw):
            stf.register(selector=selector, block_size=64, **kw)
            m = LlamaForCausalLM._from_config(copy.deepcopy(cfg), attn_implementation="stem")
            m.load_state_dict(state)
            return m.to("cuda", torch.bfloat16).eval()

        before = stf.stats()
        m = model_with("dense")
        dense = m(ids).logits.float()
        used = stf.stats()["stem"] - before["stem"]
        e = rel_err(dense, ref)
        top = (dense.argmax(-1) == ref.argmax(-1)).float().mean().item()
        report(f"transformers {transformers.__version__}: DENSE logits vs SDPA (4096 tokens)",
               e < 3e-2 and used == cfg.num_hidden_layers,
               f"relative L2 error {e:.2e}, argmax agreement {top:.4f}, "
               f"{used} attention calls through libstem")
        m = model_with("stem")
        sparse = m(ids).logits.float()
        e = rel_err(sparse, ref)
        top = (sparse.argmax(-1) == ref.argmax(-1)).float().mean().item()
        # Random weights attend almost uniformly, the worst case for any
        # sparse selection: reported, not judged.
        print(f"[INFO] transformers: STEM (block 64) logits vs SDPA: relative L2 error {e:.2e}, "
              f"argmax agreement {top:.4f}")
        before = stf.stats()
        gen = m.generate(ids[:, :512], max_new_tokens=8, min_new_tokens=8, do_sample=False,
                         pad_token_id=0)
        after = stf.stats()
        report("transformers: generate (prefill through libstem, decode through SDPA)",
               gen.shape[1] == 520 and after["stem"] > before["stem"]
               and after["sdpa"] > before["sdpa"],
               f"libstem calls {after['stem'] - before['stem']}, "
               f"SDPA calls {after['sdpa'] - before['sdpa']}")


def check_overhead():
    n, hq, hkv, d = 32768, 32, 8, 128
    q = torch.randn(1, hq, n, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, hkv, n, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, hkv, n, d, device="cuda", dtype=torch.bfloat16)
    out = torch.empty_like(q)
    stem.prefill(q, k, v, out=out)  # context, plan, workspace
    torch.cuda.synchronize()
    # The bare C path: the same context (this stream), plan and buffers
    # made once; only stem_prefill is called in the loop.
    ctx = _core.pick_context([stem._arrays.adapt(q)], None, None)
    lib = L.lib()
    cfg = _core.make_config("stem", 128, None, {})
    desc = _core.make_desc(1, hq, hkv, n, d, L.DTYPE_BF16, None, -1)
    plan = ctx.plan(desc, cfg)
    bound = _core.Bound(ctx)
    ts = [bound.tensor(stem._arrays.adapt(x)) for x in (q, k, v, out)]
    ptrs = [ctypes.byref(t) for t in ts]

    def c_path():
        _core.check(lib.stem_prefill(plan, *ptrs, None, None, None), "stem_prefill")

    def py_path():
        stem.prefill(q, k, v, out=out)

    def timed(fn, reps=15, inner=3):
        times = []
        for _ in range(3):
            fn()
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            for _ in range(inner):
                fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) / inner)
        return statistics.median(times)

    t_c1 = timed(c_path)
    t_py = timed(py_path)
    t_c2 = timed(c_path)
    # host time of one wrapper call (what the GPU time above can hide)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        py_path()
    host_py = (time.perf_counter() - t0) / 5
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        c_path()
    host_c = (time.perf_counter() - t0) / 5
    torch.cuda.synchronize()
    print(f"[INFO] host time to enqueue one call: Python {host_py * 1e6:.0f} us, "
          f"C {host_c * 1e6:.0f} us")
    t_c = min(t_c1, t_c2)
    over = t_py / t_c - 1.0
    bound.close()
    report("overhead of stem.prefill vs the C call at 32K tokens (bf16, 32/8 heads, d 128)",
           over <= 0.02,
           f"C {t_c:.3f} ms (runs {t_c1:.3f}, {t_c2:.3f}), Python {t_py:.3f} ms, "
           f"overhead {over * 100:+.2f}% on {torch.cuda.get_device_name()}")


def main():
    if not torch.cuda.is_available():
        print("[FAIL] torch sees no CUDA device: this check needs the GPU machine")
        return 1
    print(f"stem {stem.version()} from {stem.library_path()}; torch {torch.__version__}; "
          f"{torch.cuda.get_device_name()}", flush=True)
    for check in (check_dense, check_selection_vs_cpu, check_no_sync, check_transformers,
                  check_overhead):
        try:
            check()
        except Exception as e:  # report and go on: one summary at the end
            import traceback
            traceback.print_exc()
            report(check.__name__, False, f"{type(e).__name__}: {e}")
    failed = [n for n, ok in results if not ok]
    print(f"\n== device_check: {len(results) - len(failed)} passed, {len(failed)} failed ==")
    for n in failed:
        print(f"   FAILED: {n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
