"""The stem package on torch tensors (CPU here; CUDA in device_check.py)."""

import math

import pytest

torch = pytest.importorskip("torch")

import stem  # noqa: E402


def causal_attention(q, k, v, scale=None):
    """Plain causal attention in float64 (GQA by repeating K/V heads)."""
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1).double(), v.repeat_interleave(g, 1).double()
    s = q.double() @ k.transpose(-1, -2) * (scale or 1.0 / math.sqrt(q.shape[-1]))
    n = q.shape[2]
    s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, -1) @ v


def inputs(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, 4, n, 64, generator=g), torch.randn(1, 2, n, 64, generator=g),
            torch.randn(1, 2, n, 64, generator=g))


def test_cpu_tensors_bf16_and_views():
    q, k, v = inputs()
    ref = causal_attention(q, k, v)
    out = stem.prefill(q, k, v, selector="dense", block_size=64)
    assert isinstance(out, torch.Tensor) and out.shape == q.shape and out.dtype == q.dtype
    assert (out.double() - ref).abs().max().item() < 1e-5
    qb, kb, vb = (x.to(torch.bfloat16) for x in (q, k, v))
    outb = stem.prefill(qb, kb, vb, selector="dense", block_size=64)
    assert outb.dtype == torch.bfloat16
    assert (outb.double() - ref).abs().max().item() < 3e-2
    # BNHD through transposed views: strides, no copy
    out2 = stem.prefill(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                        selector="dense", block_size=64, layout="bnhd")
    assert (out2.transpose(1, 2) - out).abs().max().item() < 1e-6


def test_out_tensor_and_lists():
    q, k, v = inputs(n=700, seed=1)
    out = torch.full_like(q, float("nan"))
    res, index, count = stem.prefill(q, k, v, block_size=32, k_start=4, dense_below_blocks=0,
                                     out=out, return_lists=True)
    assert res is out and torch.isfinite(out).all()
    assert index.dtype == torch.int32 and count.shape == (1, 4, 22, 1)
    assert (count[..., 0] <= torch.arange(1, 23)).all()


def test_transformers_function_prefill_path():
    """The attention function transformers calls, on its prefill path (no
    transformers needed for this part)."""
    from stem.integrations import transformers as stf

    class Module:
        layer_idx = 5
        is_causal = True

    q, k, v = inputs(n=512, seed=2)
    before = stf.stats()["stem"]
    stf._options.update(selector="dense", block_size=64)
    out, weights = stf.stem_attention_forward(Module(), q, k, v, None, scaling=0.1)
    assert weights is None and stf.stats()["stem"] == before + 1
    assert out.shape == (1, 512, 4, 64)  # [B, N, H, d], as transformers expects
    ref = causal_attention(q, k, v, scale=0.1).transpose(1, 2)
    assert (out.double() - ref).abs().max().item() < 1e-5


def test_transformers_registration():
    pytest.importorskip("transformers")
    from transformers import AttentionInterface
    import stem.integrations.transformers as stf
    stf.register(selector="stem", block_size=64)
    assert AttentionInterface._global_mapping["stem"] is stf.stem_attention_forward
