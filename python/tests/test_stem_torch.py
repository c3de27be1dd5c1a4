"""The stem package on torch tensors (CPU here; CUDA in device_check.py)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import stem  # noqa: E402


def test_cpu_tensors_in_place_and_bf16():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, 256, 64, generator=g)
    k = torch.randn(1, 2, 256, 64, generator=g)
    v = torch.randn(1, 2, 256, 64, generator=g)
    out = stem.prefill(q, k, v, selector="dense", block_size=64)
    assert isinstance(out, torch.Tensor) and out.shape == q.shape
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), is_causal=True)
    assert (out - ref).abs().max().item() < 1e-5
    qb, kb, vb = (x.to(torch.bfloat16) for x in (q, k, v))
    outb = stem.prefill(qb, kb, vb, selector="dense", block_size=64)
    assert outb.dtype == torch.bfloat16
    assert (outb.float() - ref).abs().max().item() < 3e-2
    # BNHD through a transposed view: strides, no copy
    out2 = stem.prefill(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                        selector="dense", block_size=64, layout="bnhd")
    assert (out2.transpose(1, 2) - out).abs().max().item() < 1e-6
