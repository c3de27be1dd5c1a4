"""The stem package on host arrays, against a numpy reference."""

import numpy as np
import pytest

import stem


def qkv(b=1, hq=4, hkv=2, n=320, d=64, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((b, hq, n, d)).astype(dtype)
    k = rng.standard_normal((b, hkv, n, d)).astype(dtype)
    v = rng.standard_normal((b, hkv, n, d)).astype(dtype)
    # a sink and a local band, so sparse selection has structure to find
    k[:, :, :8] += 0.5 * q.reshape(b, hkv, hq // hkv, n, d).mean(axis=(2, 3))[:, :, None, :]
    return q, k, v


def reference(q, k, v, index=None, count=None, block=64, scale=None):
    """Causal attention in float64, restricted to the listed key blocks."""
    b, hq, n, d = q.shape
    g = hq // k.shape[1]
    scale = scale or 1.0 / np.sqrt(d)
    out = np.zeros(q.shape, np.float64)
    tok = np.arange(n)
    for bi in range(b):
        for h in range(hq):
            s = q[bi, h].astype(np.float64) @ k[bi, h // g].astype(np.float64).T * scale
            allowed = tok[None, :] <= tok[:, None]
            if index is not None:
                nb = index.shape[2]
                blocks = np.zeros((nb, nb), bool)
                for r in range(nb):
                    blocks[r, index[bi, h, r, :count[bi, h, r, 0]]] = True
                allowed &= blocks[tok[:, None] // block, tok[None, :] // block]
            s = np.where(allowed, s, -np.inf)
            m = s.max(axis=1, keepdims=True)
            p = np.where(np.isfinite(m), np.exp(s - m), 0.0)
            den = p.sum(axis=1, keepdims=True)
            out[bi, h] = np.divide(p @ v[bi, h // g].astype(np.float64), den,
                                   out=np.zeros((n, d)), where=den > 0)
    return out


def test_dense_matches_reference():
    q, k, v = qkv()
    out = stem.prefill(q, k, v, selector="dense", block_size=64)
    assert out.shape == q.shape and out.dtype == np.float32
    assert np.abs(out - reference(q, k, v)).max() < 2e-5


def test_sparse_lists_and_output():
    q, k, v = qkv(n=1100, hq=2, hkv=1, d=32, seed=1)
    out, index, count = stem.prefill(q, k, v, block_size=16, k_start=6,
                                     dense_below_blocks=0, return_lists=True)
    nb = -(-1100 // 16)
    assert index.shape == (1, 2, nb, nb) and count.shape == (1, 2, nb, 1)
    assert index.dtype == np.int32
    kept = 0
    for h in range(2):
        for r in range(nb):
            c = count[0, h, r, 0]
            row = index[0, h, r]
            assert 1 <= c <= r + 1
            assert (np.diff(row[:c]) > 0).all() and row[0] >= 0 and row[c - 1] <= r
            assert (row[c:] == -1).all()
            kept += c
    assert kept < 2 * nb * (nb + 1) // 2  # sparse: fewer blocks than causal
    ref = reference(q, k, v, index, count, block=16)
    assert np.abs(out - ref).max() < 2e-5


def test_stages_compose_to_prefill():
    q, k, v = qkv(n=700, seed=2)
    kw = dict(block_size=32, k_start=4, dense_below_blocks=0)
    out, index, count = stem.prefill(q, k, v, return_lists=True, **kw)
    scores = stem.score(q, k, v, **kw)
    nb = -(-700 // 32)
    assert scores.shape == (1, 4, nb, nb) and scores.dtype == np.float32
    assert np.isneginf(scores[0, 0, 0, 1:]).all()  # above the diagonal
    i2, c2 = stem.select(scores, q_len=700, **kw)
    assert (i2 == index).all() and (c2 == count).all()
    o2 = stem.attention(q, k, v, i2, c2, block_size=32)
    assert np.abs(o2 - out).max() < 1e-6  # same lists; summation order may differ


def test_bnhd_layout_and_strided_views():
    q, k, v = qkv(n=256, seed=3)
    ref = stem.prefill(q, k, v, selector="dense", block_size=64)
    # [B, N, H, d] arrays, contiguous in that order
    qt, kt, vt = (np.ascontiguousarray(x.transpose(0, 2, 1, 3)) for x in (q, k, v))
    out = stem.prefill(qt, kt, vt, selector="dense", block_size=64, layout="bnhd")
    assert out.shape == qt.shape
    assert np.abs(out.transpose(0, 2, 1, 3) - ref).max() < 1e-6
    # a padded head_dim: strided views, no copy needed
    pad = np.zeros(q.shape[:3] + (80,), np.float32)
    pad[..., :64] = q
    out2 = stem.prefill(pad[..., :64], k, v, selector="dense", block_size=64)
    assert np.abs(out2 - ref).max() < 1e-6


def test_out_is_written_in_place():
    q, k, v = qkv(n=128, seed=4)
    out = np.full(q.shape, np.nan, np.float32)
    res = stem.prefill(q, k, v, selector="dense", block_size=64, out=out)
    assert res is out and np.isfinite(out).all()


def test_float16():
    q, k, v = qkv(n=256, seed=5, dtype=np.float16)
    out = stem.prefill(q, k, v, selector="dense", block_size=64)
    assert out.dtype == np.float16
    assert np.abs(out.astype(np.float64) - reference(q, k, v)).max() < 5e-3


def test_errors_carry_status_and_message():
    q, k, v = qkv(n=128)
    with pytest.raises(stem.InvalidArgumentError) as e:
        stem.prefill(q, k[:, :, :100], v, block_size=64)
    assert e.value.status_name == "STEM_ERR_INVALID_ARGUMENT"
    assert "k" in e.value.message and e.value.status == 1
    assert isinstance(e.value, ValueError) and isinstance(e.value, stem.StemError)
    with pytest.raises(stem.StemError) as e:
        stem.prefill(q, k, v, selector="nonsense")
    assert e.value.status_name == "STEM_ERR_INVALID_ARGUMENT" and e.value.message
    with pytest.raises(stem.StemError) as e:
        stem.prefill(q, k, v, block_size=48)
    assert "block" in e.value.message
    with pytest.raises(TypeError, match="unknown configuration field"):
        stem.prefill(q, k, v, no_such_knob=1)
    with pytest.raises(ValueError, match="4-D"):
        stem.prefill(q[0], k[0], v[0])
    with pytest.raises(TypeError):
        stem.prefill(q.astype(np.float64), k, v)
    with pytest.raises(ValueError):
        stem.prefill(q, k, v, backend="tpu")


def test_other_backends_agree():
    q, k, v = qkv(n=256, seed=6)
    ref = stem.prefill(q, k, v, selector="dense", block_size=64)
    names = {d["backend"] for d in stem.devices()}
    ran = 0
    for b in ("opencl", "vulkan"):
        if b in names:
            out = stem.prefill(q, k, v, selector="dense", block_size=64, backend=b)
            assert np.abs(out - ref).max() < 1e-4, b
            ran += 1
    if not ran:
        pytest.skip("no OpenCL or Vulkan device in this build")


def test_help_is_useful():
    doc = stem.prefill.__doc__
    for word in ("Args:", "selector", "block_size", "Returns:", "Raises:", "layout"):
        assert word in doc
    assert stem.version().count(".") == 2
    assert stem.library_path()
