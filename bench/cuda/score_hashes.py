#!/usr/bin/env python3
"""Hashes of the CUDA scores and selections of six shapes (8K and 8000 bf16,
4100 f16 block 64, stem_paper, beta 0, f32 d 96), one line "HASH ...": two
runs under different switches (STEM_CUDA_SCORE_FUSE, _SPLIT, _PDL) must
print the same line. Needs torch with CUDA and the stem package (python/);
STEM_LIBRARY names the libstem.so to load."""
import hashlib, torch, stem
def h(*xs):
    m = hashlib.sha256()
    for x in xs:
        m.update(x.contiguous().cpu().numpy().tobytes())
    return m.hexdigest()[:16]
out = []
for (n, hq, hkv, d, dt, sel, bs, kw) in [
        (8192, 32, 8, 128, torch.bfloat16, "stem", 128, {}),
        (8000, 32, 8, 128, torch.bfloat16, "stem", 128, {}),
        (4100, 8, 2, 64, torch.float16, "stem", 64, {}),
        (3000, 4, 4, 128, torch.bfloat16, "stem_paper", 128, {}),
        (2048, 8, 2, 128, torch.bfloat16, "stem", 128, {"beta": 0.0}),
        (1000, 6, 3, 96, torch.float32, "stem", 128, {})]:
    g = torch.Generator(device="cuda").manual_seed(n + hq)
    q, k, v = (torch.randn(1, hh, n, d, device="cuda", dtype=dt, generator=g) * (1 + i)
               for i, hh in enumerate((hq, hkv, hkv)))
    s = stem.score(q, k, v, selector=sel, block_size=bs, **kw)
    idx, cnt = stem.select(s, q_len=n, selector=sel, block_size=bs, **kw)
    out.append(f"{n}/{sel}/{bs}/{str(dt)[6:]}:{h(s)}/{h(idx, cnt)}")
print("HASH " + " ".join(out))
