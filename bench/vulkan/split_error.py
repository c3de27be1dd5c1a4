#!/usr/bin/python3
"""Numerical emulation of attention_coop.comp built with -DSPLIT (NV path, VARIANT 0,
HEADROOM 0) for one head, against float64 attention on the same f32 inputs, with the
conformance tolerance of tests/conformance/compare.c (conf_compare_attention, f32 in and
out: u_p = 0, u_out = 2^-24).

Every quantity is held as the shader holds it:
  - copies: hi = f16(x 2^e), lo = f16(x 2^e - hi), e = clamp(14 - floor(log2 absmax), -60, 60)
    (to_f16.comp, common.glsl split_exp), per tensor;
  - S: f32 accumulator, 8 chunks x (Qh Kh, Qh Kl, Ql Kh) matrix products, 24 MMAs a
    16-key sub-tile; logits x = f32(S * f32(qmul 2^-(eq+ek))), masked -inf;
  - per-row reference m (f32) moved when a sub-tile's max exceeds m + 8; alpha =
    exp2(m - m_new) (f32) multiplies O and l (f32 products);
  - P = exp2(x - m) in f32; Ph = f16(P), Pl = f16(P - Ph) (A operands);
  - O: f32 accumulators, per sub-tile Ph Vh, Ph Vl, Pl Vh (3 MMAs, one chain per
    output column over all keys); l: Ph x ones then Pl x ones (2 MMAs, one chain);
  - out = f32(f32(O / l) * 2^-ev), stored as f32.

The matrix-multiply-accumulate D = C + A B (f16 A, B; f32 C, D) is modelled two ways:
  ieee : the exact sum of the 16 products and C, rounded once to f32 (nearest) - the
         arithmetic the shader's source text asks for;
  tc   : a tensor-core model after the V100/A100/H100 studies (Fasi et al. 2021,
         "Numerical behavior of NVIDIA tensor cores", PeerJ CS 7:e330; Khattak and
         Mikaitis 2025, "Accurate models of NVIDIA tensor cores", arXiv 2512.07004):
         products exact, all terms (products and C) aligned to the largest exponent and
         truncated to 24 + EXTRA significand bits (no rounding), summed, result
         normalised with truncation (round toward zero) to f32; BLK products a step.
         Default BLK 16, EXTRA 0; --extra / --blk to vary.

Hypotheses (what the H100 may have done instead): Pl lost, Pl flushed where subnormal,
the lo copies' products lost from S or from O; and the shader's new P split.
Default: a sweep over suite-like shapes; --suite: the conformance table's dense f32 cases
with their H100 outcomes (bench/results/vulkan-cpu-h100-2026-12-07-d21ace1-round.log),
every head, compared with each hypothesis's prediction.

Usage: /usr/bin/python3 bench/vulkan/split_error.py [--suite] [--n 17,129] [--d 64] [-v]
(compiles tests/common/stem_synth.c with cc into the temp directory for the inputs)
"""
import argparse
import ctypes
import os
import subprocess
import sys
import tempfile

import numpy as np

U = 2.0 ** -24
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ------------------------------------------------------------------ inputs

_synth = None


def synth(kind, seed, n, d, batch=1, hq=1, hkv=1):
    """stem_synth_qkv (tests/common/stem_synth.c): kind 0 random, 1 structured;
    q [batch][hq][n][d], k and v [batch][hkv][n][d]."""
    global _synth
    if _synth is None:
        so = os.path.join(tempfile.gettempdir(), "stem_synth_%d.so" % os.getuid())
        src = os.path.join(ROOT, "tests", "common", "stem_synth.c")
        if not os.path.exists(so) or os.path.getmtime(so) < os.path.getmtime(src):
            subprocess.check_call(["cc", "-O2", "-shared", "-fPIC", "-o", so, src, "-lm"])
        _synth = ctypes.CDLL(so)
        _synth.stem_synth_qkv.argtypes = [ctypes.c_int, ctypes.c_uint64] + [ctypes.c_int64] * 5 + [
            ctypes.c_void_p] * 3
    q = np.zeros((batch, hq, n, d), np.float32)
    k = np.zeros((batch, hkv, n, d), np.float32)
    v = np.zeros((batch, hkv, n, d), np.float32)
    _synth.stem_synth_qkv(kind, seed, batch, hq, hkv, n, d, q.ctypes.data, k.ctypes.data,
                          v.ctypes.data)
    if batch == hq == hkv == 1:
        return q[0, 0], k[0, 0], v[0, 0]
    return q, k, v


def splitmix(seed, count):
    """stem_rng_next's first `count` outputs after stem_rng_seed(seed)."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + np.arange(1, count + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def synth_ties(seed, batch, hq, hkv, n, d, block):
    """tests/conformance/run_case.c synth_ties: multiples of 1/8 in [-1, 1], K and V
    repeating with the block period."""
    nq = batch * hq * n * d
    nb = min(block, n)
    r = splitmix(seed ^ 0x71E5, nq + batch * hkv * nb * d * 2)
    val = lambda x: ((x % np.uint64(17)).astype(np.int64) - 8).astype(np.float32) / np.float32(8)
    q = val(r[:nq]).reshape(batch, hq, n, d)
    kv = val(r[nq:]).reshape(batch, hkv, nb, d, 2)
    reps = -(-n // block)
    k = np.tile(kv[..., 0], (1, 1, reps, 1))[:, :, :n]
    v = np.tile(kv[..., 1], (1, 1, reps, 1))[:, :, :n]
    return q, k, v


# ------------------------------------------------------------- arithmetic

def f32(x):
    return np.asarray(x, np.float64).astype(np.float32)


def f16(x):
    """f32 -> f16 -> value, round to nearest even, subnormals (f32_to_f16 / MATA(x))."""
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float64)


def f32_rz(s):
    f = s.astype(np.float32)
    over = np.abs(f.astype(np.float64)) > np.abs(s)
    return np.where(over, np.nextafter(f, np.float32(0)), f)


class Mma:
    def __init__(self, model, blk=16, extra=0):
        self.model, self.blk, self.extra = model, blk, extra

    def __call__(self, A, B, C):
        """C + A B: A (R, 16), B (16, M) f16 values as float64; C (R, M) float32."""
        if self.model == "ieee":
            return f32(np.einsum("rk,km->rm", A, B) + C.astype(np.float64))
        acc = C
        for k0 in range(0, A.shape[1], self.blk):
            T = A[:, k0:k0 + self.blk, None] * B[None, k0:k0 + self.blk, :]  # exact products
            T = np.concatenate([T, acc.astype(np.float64)[:, None, :]], axis=1)
            _, E = np.frexp(T)
            E = np.where(T == 0.0, -100000, E)
            Emax = E.max(axis=1, keepdims=True)  # the largest term is in [2^(Emax-1), 2^Emax)
            q = np.ldexp(1.0, np.maximum(Emax - 24 - self.extra, -1074))
            acc = f32_rz((np.trunc(T / q) * q).sum(axis=1))
        return acc


def split(x):
    am = np.float32(np.abs(x).max())
    e = int((am.view(np.uint32) >> 23) & 0xFF) - 127
    es = int(np.clip(14 - e, -60, 60))
    xs = f32(x.astype(np.float64) * 2.0 ** es)
    hi = f16(xs)
    lo = f16(f32(xs.astype(np.float64) - hi))
    return hi, lo, es


def exp2f(x):
    with np.errstate(over="ignore"):
        return f32(np.exp2(x.astype(np.float64)))


def f16_ftz(x):
    """f16 values with subnormal results flushed to zero."""
    return np.where(np.abs(x) < 2.0 ** -14, 0.0, x)


def emulate(q, k, v, scale, mma, psplit="old", fault="none"):
    """Output of the split kernel for one head (dense causal rows).

    psplit: old  - Ph = f16(P), Pl = f16(P - f32(Ph)): the shader as committed
                   (attention_coop.comp, MATA(s) / MAT32(pa) / s - pr / MATA(pr));
            new  - Ph = P rounded to 11 significant bits in f32 by integer ops (exact in
                   f16 for P >= 2^-14), Pl = f16(P - Ph): no f32 -> f16 -> f32 round trip.
    fault:  none   - every step as written;
            pl0    - Pl lost (the f32 -> f16 -> f32 round trip folded away: s - pr = 0);
            plsub  - Pl flushed to zero where it is an f16 subnormal (P < 2^-3);
            slo0   - S without the lo products (Qh Kh only);
            vlo0   - O without Ph Vl."""
    N, D = q.shape
    qh, ql, eq = split(q)
    kh, kl, ek = split(k)
    vh, vl, ev = split(v)
    qmul = np.float32(np.float32(scale) * np.float32(1.4426950408889634))
    sc = np.float32(qmul * np.float32(2.0 ** -(eq + ek)))
    vback = np.float32(2.0 ** -ev)
    o = np.zeros((N, D), np.float32)
    lmat = np.zeros((N, 1), np.float32)  # P x ones: every column of a row alike
    m = np.full((N, 1), -np.inf, np.float32)
    ones = np.ones((16, 1))
    for kt in range(0, N, 16):
        rows = np.arange(kt, N)  # rows before kt see none of these keys (fully masked: a no-op)
        keys = np.arange(kt, min(kt + 16, N))
        R = len(rows)
        pad = 16 - len(keys)

        def tile(x):
            t = x[keys]
            return np.vstack([t, np.zeros((pad, D))]) if pad else t
        Kh, Kl, Vh, Vl = tile(kh), tile(kl), tile(vh), tile(vl)
        s = np.zeros((R, 16), np.float32)
        for c in range(0, D, 16):
            s = mma(qh[rows, c:c + 16], Kh[:, c:c + 16].T, s)
            if fault != "slo0":
                s = mma(qh[rows, c:c + 16], Kl[:, c:c + 16].T, s)
                s = mma(ql[rows, c:c + 16], Kh[:, c:c + 16].T, s)
        tok = kt + np.arange(16)[None, :]
        vis = (tok <= rows[:, None]) & (tok < N)
        x = np.where(vis, f32(s.astype(np.float64) * sc), np.float32(-np.inf))
        # slow step: rows whose sub-tile max passes m + 8 (or the first keys) move m
        mr = m[rows]
        mx = x.max(axis=1, keepdims=True)
        move = (mx > mr + np.float32(8.0)) | ((mr == -np.inf) & (mx != -np.inf))
        with np.errstate(invalid="ignore"):
            alpha = np.where(move, exp2f(f32(mr.astype(np.float64) - mx)), np.float32(1.0))
        alpha = np.where(move & (mr == -np.inf), np.float32(0.0), alpha)
        mr = np.where(move, mx, mr)
        m[rows] = mr
        o[rows] = f32(o[rows].astype(np.float64) * alpha)
        lmat[rows] = f32(lmat[rows].astype(np.float64) * alpha)
        # P and its two f16 halves
        d = f32(x.astype(np.float64) - mr)
        with np.errstate(invalid="ignore"):
            P = np.where(x == -np.inf, np.float32(0.0), exp2f(d))
        if psplit == "new":
            bits = P.view(np.uint32)
            hp = ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)
            Ph = f16(hp)  # exact where P >= 2^-14
            Pl = f16(f32(P.astype(np.float64) - hp))
        else:
            Ph = f16(P)
            Pl = f16(f32(P.astype(np.float64) - Ph))
        if fault == "pl0":
            Pl = np.zeros_like(Pl)
        elif fault == "plsub":
            Pl = f16_ftz(Pl)
        acc = mma(Ph, Vh, o[rows])
        if fault != "vlo0":
            acc = mma(Ph, Vl, acc)
        o[rows] = mma(Pl, Vh, acc)
        lmat[rows] = mma(Pl, ones, mma(Ph, ones, lmat[rows]))
    return f32(f32(o.astype(np.float64) / lmat) * np.float64(vback))


def reference(q, k, v, scale):
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    N = q.shape[0]
    lg = scale * (q @ k.T)
    lg[np.triu_indices(N, 1)] = -np.inf
    lg -= lg.max(axis=1, keepdims=True)
    p = np.exp(lg)
    return (p @ v) / p.sum(axis=1, keepdims=True)


def bf16(x):
    """f32 -> bf16 -> value, round to nearest even (common.glsl f32_to_bf16)."""
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32)


def tolerance(q, k, v, scale, ref, u_out=U):
    """conf_compare_attention for dense causal lists, f32 in (u_p = 0), output unit u_out."""
    N, D = q.shape
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    kmax = np.sqrt((k * k).sum(axis=1)).max()
    vmax = np.abs(v).max()
    vis = np.arange(1, N + 1, dtype=np.float64)[:, None]
    L = scale * np.sqrt((q * q).sum(axis=1))[:, None] * kmax
    base = vmax * (4.0 * U * np.sqrt(D) * L + 8.0 * U * np.sqrt(vis + 1.0))
    return 2.0 * u_out * np.abs(ref) + base


def make_inputs(kind, seed, N, D, smallv):
    q, k, v = synth(kind, seed, N, D)
    if smallv:
        v = v * np.float32(0.0625)  # the suite's _smallv (exact)
    return q, k, v


# (label, MMA model, P split, fault)
RUNS = [("as written, IEEE", "ieee", "old", "none"),
        ("as written, tensor-core trunc.", "tc", "old", "none"),
        ("Pl lost", "ieee", "old", "pl0"),
        ("Pl flushed when subnormal", "ieee", "old", "plsub"),
        ("S lo products lost", "ieee", "old", "slo0"),
        ("Ph Vl lost", "ieee", "old", "vlo0"),
        ("new split, IEEE", "ieee", "new", "none"),
        ("new split, tensor-core trunc.", "tc", "new", "none")]


# The f32-input dense cases of the conformance table (tests/conformance/cases.c, unchanged
# since d21ace1) that sort before the last failure listed in
# bench/results/vulkan-cpu-h100-2026-12-07-d21ace1-round.log, with the H100 outcome of the
# split path there (the log lists the failures in name order, cut after seven): name, seed,
# kind, ties, small_v, softmax_scale (0: 1/sqrt(d)), batch, hq, hkv, n, d, out dtype
# (0 f32, 2 bf16), block, outcome. The dense selector keeps every causal key.
SUITE = [
    ("dense_d128_h1x1_n127_b32_s8_f32tobf16_bhnd_mbnhd_wrap_structured_layer0_pfout", 14601570778846675556, 1, 0, 0, 0, 1, 1, 1, 127, 128, 2, 32, "passed"),
    ("dense_d128_h1x1_n127_b32_s8_f32tobf16_bnhd_obnhdpad_mbhndpad_shared_random_batch2_lists", 9555720712679912058, 0, 0, 0, 0, 2, 1, 1, 127, 128, 2, 32, "passed"),
    ("dense_d128_h1x1_n128_b128_s128_f32tobf16_nbhd_mnbhd_off_structured_beta1_batch2_pfout", 4869726442023016174, 1, 0, 0, 0, 2, 1, 1, 128, 128, 2, 128, "passed"),
    ("dense_d128_h1x1_n128_b16_s4_f32_bhnd_off_shared_structured_pfout", 17611420404744900172, 1, 0, 0, 0, 1, 1, 1, 128, 128, 0, 16, "passed"),
    ("dense_d128_h1x1_n129_b16_s4_f32tobf16_bhndpad_mbhndpad_off_shared_structured_layer0_pfout", 12112750258018102850, 1, 0, 0, 0, 1, 1, 1, 129, 128, 2, 16, "passed"),
    ("dense_d128_h1x1_n129_b32_s32_f32_bnhd_mnbhd_off_structured_beta1_batch2", 6066850101875475725, 1, 0, 0, 0, 2, 1, 1, 129, 128, 0, 32, "passed"),
    ("dense_d128_h32x8_n128_b16_s8_f32tobf16_bhnd_onbhd_mbhndpad_wrap_ties_beta1_pfws", 5322402193150641893, 0, 1, 0, 0, 1, 32, 8, 128, 128, 2, 16, "failed"),
    ("dense_d128_h32x8_n17_b128_s16_f32_bhnd_mbhndpad_off_wrap_ties", 1447900387126632502, 0, 1, 0, 0, 1, 32, 8, 17, 128, 0, 128, "failed"),
    ("dense_d128_h32x8_n17_b16_s4_f32_nbhd_obhndpad_mbnhd_structured_beta1_pfout", 2170808251861104665, 1, 0, 0, 0, 1, 32, 8, 17, 128, 0, 16, "passed"),
    ("dense_d128_h4x1_n127_b128_s8_f32tobf16_bnhd_mnbhd_random", 2662648347047792123, 0, 0, 0, 0, 1, 4, 1, 127, 128, 2, 128, "failed"),
    ("dense_d128_h4x1_n128_b16_s8_f32_bhnd_obnhdpad_mbhndpad_structured_beta1_pfws", 16614224260983173066, 1, 0, 0, 0, 1, 4, 1, 128, 128, 0, 16, "passed"),
    ("dense_d128_h4x1_n129_b64_s8_f32_nbhd_mbnhd_off_wrap_structured_beta1_lists", 9730921250654860428, 1, 0, 0, 0, 1, 4, 1, 129, 128, 0, 64, "passed"),
    ("dense_d128_h4x1_n17_b16_s16_f32_bnhdpad_mbhndpad_shared_structured_beta1_batch2_pfws", 10625250596917469915, 1, 0, 0, 0, 2, 4, 1, 17, 128, 0, 16, "passed"),
    ("dense_d128_h4x1_n17_b16_s16_f32_bnhdpad_obhndpad_shared_random_smallv_beta1_pfout_scale05", 3481166618784627238, 0, 0, 1, 0.0500000007, 1, 4, 1, 17, 128, 0, 16, "failed"),
    ("dense_d128_h8x2_n1000_b16_s4_f32_bnhd_mbhndpad_ties_smallv_layer0_pfout", 11965384130676755859, 0, 1, 1, 0, 1, 8, 2, 1000, 128, 0, 16, "failed"),
    ("dense_d128_h8x2_n128_b16_s8_f32_bhnd_structured_pfout_scale30", 4700594464415739502, 1, 0, 0, 0.300000012, 1, 8, 2, 128, 128, 0, 16, "passed"),
    ("dense_d128_h8x2_n129_b32_s1_f32_bhndpad_off_shared_structured_layer0_batch2_pfout", 7720242979232600897, 1, 0, 0, 0, 2, 8, 2, 129, 128, 0, 32, "passed"),
    ("dense_d128_h8x2_n129_b32_s2_f32_bnhdpad_wrap_random_smallv_pfout", 2089889280865633135, 0, 0, 1, 0, 1, 8, 2, 129, 128, 0, 32, "failed"),
    ("dense_d256_h4x1_n1000_b32_s4_f32tobf16_nbhd_wrap_structured_layer0_batch2", 8873444178635045598, 1, 0, 0, 0, 2, 4, 1, 1000, 256, 2, 32, "passed"),
    ("dense_d64_h1x1_n1000_b64_s4_f32_bnhdpad_off_structured_beta1_batch2", 14926684157368016177, 1, 0, 0, 0, 2, 1, 1, 1000, 64, 0, 64, "failed"),
]


def suite(runs):
    print("the suite's dense f32 cases (%d), every head: predicted outcome per hypothesis "
          "(max |out - ref| / tol over the case)" % len(SUITE))
    print("%-4s %-7s" % ("case", "H100") + "".join("%16s" % r[0][:15] for r in runs))
    agree = [0] * len(runs)
    for i, (name, seed, kind, ties, smallv, sc, B, Hq, Hkv, N, D, od, blk, seen) in enumerate(SUITE):
        if ties:
            q, k, v = synth_ties(seed, B, Hq, Hkv, N, D, blk)
        else:
            q, k, v = synth(kind, seed, N, D, B, Hq, Hkv)
            q, k, v = (x.reshape(B, -1, N, D) for x in (q, k, v))
        if smallv:
            v = v * np.float32(0.0625)
        scale = sc if sc > 0 else 1.0 / np.sqrt(D)
        scale32 = float(np.float32(sc)) if sc > 0 else float(np.float32(1.0) / np.sqrt(np.float32(D)))
        u_out = U if od == 0 else 2.0 ** -8
        worst = [0.0] * len(runs)
        for b in range(B):
            for h in range(Hq):
                kh = h // (Hq // Hkv)
                qq, kk, vv = q[b, h], k[b, kh], v[b, kh]
                ref = reference(qq, kk, vv, scale)
                tol = tolerance(qq, kk, vv, scale, ref, u_out)
                for j, (label, model, ps, fault) in enumerate(runs):
                    out = emulate(qq, kk, vv, scale32, Mma(model), ps, fault)
                    if od == 2:
                        out = bf16(out)
                    worst[j] = max(worst[j], (np.abs(out.astype(np.float64) - ref) / tol).max())
        cells = []
        for j in range(len(runs)):
            pred = "failed" if worst[j] > 1.0 else "passed"
            agree[j] += pred == seen
            cells.append("%9.3f %-6s" % (worst[j], "FAIL" if pred == "failed" else "ok"))
        print("%-4d %-7s" % (i + 1, "FAIL" if seen == "failed" else "ok") + "".join("%16s" % c for c in cells),
              " ", name)
        sys.stdout.flush()
    print("%-12s" % "agree" + "".join("%16s" % ("%d/%d" % (a, len(SUITE))) for a in agree))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="17,127,128,129,1000", help="sequence lengths")
    ap.add_argument("--d", default="64,128", help="head dims")
    ap.add_argument("--extra", type=int, default=0, help="tc model: bits kept past 24")
    ap.add_argument("--blk", type=int, default=16, help="tc model: products a step")
    ap.add_argument("--tc-max-n", type=int, default=129,
                    help="tensor-core model only up to this N (it is slow)")
    ap.add_argument("-v", action="store_true", help="one line per case")
    ap.add_argument("--suite", action="store_true",
                    help="the suite's dense f32 cases with their H100 outcomes instead of the sweep")
    a = ap.parse_args()
    if a.suite:
        suite([r for r in RUNS if r[1] == "ieee"])
        return
    Ns = [int(x) for x in a.n.split(",")]
    Ds = [int(x) for x in a.d.split(",")]
    res = {r[0]: [] for r in RUNS}
    first = {r[0]: [] for r in RUNS}
    seed = 100
    for N in Ns:
        for D in Ds:
            for kind in (0, 1):
                for smallv in (False, True):
                    for sc in (None, 0.05, 0.3):
                        seed += 1
                        q, k, v = make_inputs(kind, seed, N, D, smallv)
                        scale = sc if sc is not None else 1.0 / np.sqrt(D)
                        ref = reference(q, k, v, scale)
                        tol = tolerance(q, k, v, scale, ref)
                        line = []
                        for label, model, ps, fault in RUNS:
                            if model == "tc" and N > a.tc_max_n:
                                line.append("-")
                                continue
                            out = emulate(q, k, v, scale, Mma(model, a.blk, a.extra), ps, fault)
                            r = (np.abs(out.astype(np.float64) - ref) / tol).ravel()
                            res[label].append(r.max())
                            over = r[r > 1.0]
                            if len(over):
                                first[label].append(over[0])  # what the suite reports
                            line.append("%.3f" % r.max())
                        if a.v:
                            print("N %5d d %3d %-10s%s scale %-5s " % (
                                N, D, "random" if kind == 0 else "structured",
                                " smallv" if smallv else "       ", sc or "1/sqrt(d)") + " ".join(line))
                            sys.stdout.flush()
    print("max |out - ref| / tol over the components of each case (suite-like shapes: N %s, d %s, "
          "random and structured, smallv, scale 1/sqrt(d), 0.05, 0.3; tc model: %d products a step, "
          "24+%d bits, truncation)" % (a.n, a.d, a.blk, a.extra))
    print("%-32s %7s %7s %9s %9s  %s" % ("", "cases", "failed", "max", "median", "first failing component (suite's message): ratio range"))
    for label, *_ in RUNS:
        x = np.array(res[label])
        f = np.array(first[label])
        print("%-32s %7d %7d %9.3f %9.4f  %s" % (
            label, len(x), (x > 1).sum(), x.max(), np.median(x),
            "%.2f-%.2f (median %.2f)" % (f.min(), f.max(), np.median(f)) if len(f) else "-"))


if __name__ == "__main__":
    main()
