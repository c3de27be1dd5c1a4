"""The coefficients of the CPU kernels' exp2 polynomial (cpu_exp2_coeffs.h).

Minimax fit of the relative error of 2^f on [-1/2, 1/2] with p(0) = 1 exactly:
p(f) = 1 + f (c1 + c2 f + ... + cK f^(K-1)), by Lawson's iteration on a dense
grid; then the worst relative error of the float32 Horner evaluation with FMA
(as the kernels run it). Usage: python3 exp2_minimax.py K (5 for EXP2_Q*).
"""
import numpy as np, sys
K = int(sys.argv[1])
f = np.linspace(-0.5, 0.5, 20001)
y = np.exp2(f)
A = np.stack([f**k for k in range(1, K+1)], 1) / y[:, None]
b = (y - 1) / y
w = np.ones_like(f) / len(f)
for it in range(3000):
    sw = np.sqrt(w)
    c, *_ = np.linalg.lstsq(A * sw[:, None], b * sw, rcond=None)
    e = np.abs(A @ c - b)
    w = w * e; w /= w.sum()
print("coeffs c1..cK:", [float(x) for x in c])
print("max rel err (f64 eval):", np.abs(A @ c - b).max())
# float32 Horner with fma emulated in f64 then rounded
c32 = c.astype(np.float32)
ff = np.linspace(-0.5, 0.5, 200001).astype(np.float32)
p = np.float32(c32[-1]) * np.ones_like(ff)
for k in range(K-2, -1, -1):
    p = (p.astype(np.float64) * ff + c32[k]).astype(np.float32)
p = (p.astype(np.float64) * ff + 1.0).astype(np.float32)
print("max rel err (f32 horner):", np.max(np.abs(p.astype(np.float64) / np.exp2(ff.astype(np.float64)) - 1)))
for x in c32: print("%.9e" % x)
