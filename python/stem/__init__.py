"""libstem from Python: Stem sparse prefill attention on numpy arrays and
torch tensors, without copies.

    import stem
    out = stem.prefill(q, k, v)            # q [B, Hq, N, d], k/v [B, Hkv, N, d]

Host arrays (numpy, CPU torch tensors) run on the CPU backend in place. CUDA
torch tensors run on their own device and on torch's current stream, in
place (libstem wraps the device memory; nothing is copied or synchronized),
so the result is ordered like any torch kernel on that stream.

The stages are available one by one: :func:`score`, :func:`select`,
:func:`attention`. Errors raise :class:`StemError` (subclasses per status)
carrying libstem's status name and message.

The shared library is the one bundled by ``pip install``; otherwise the
path in the STEM_LIBRARY environment variable, then the system's.
"""

from __future__ import annotations

import ctypes
from typing import Any, Dict, List, Optional, Tuple

from . import _lib
from ._arrays import adapt, new_like
from ._core import (BackendUnavailableError, InvalidArgumentError, StemError, UnsupportedError,
                    check, device_list, make_config, make_desc, pick_context, Bound)

__all__ = ["prefill", "score", "select", "attention", "devices", "version", "library_path",
           "StemError", "InvalidArgumentError", "UnsupportedError", "BackendUnavailableError"]

__version__ = "0.3.0"

Array = Any  # numpy.ndarray | torch.Tensor (or an object with __dlpack__)


def version() -> str:
    """Version of the loaded libstem ("0.3.0")."""
    return _lib.lib().stem_version_string().decode()


def library_path() -> str:
    """Path of the libstem shared library in use."""
    return _lib.library_path()


def devices() -> List[Dict[str, Any]]:
    """libstem's device list (GPU backends first, the CPU last): one dict per
    device with index, backend, backend_index, name, detail, is_gpu."""
    return device_list()


def _common(q, k, v, layout):
    qa, ka, va = adapt(q, layout, "q"), adapt(k, layout, "k"), adapt(v, layout, "v")
    B, Hq, N, d = qa.dims
    Hkv = ka.dims[1]
    return qa, ka, va, B, Hq, Hkv, N, d


def _run(ctx, fn_name, plan, tensors):
    fn = getattr(_lib.lib(), fn_name)
    ptrs = [None if t is None else ctypes.byref(t) for t in tensors]
    check(fn(plan, *ptrs), fn_name)


def prefill(q: Array, k: Array, v: Array, *, selector: str = "stem", block_size: int = 128,
            stride: Optional[int] = None, softmax_scale: Optional[float] = None,
            layer_index: int = -1, layout: str = "bhnd", out: Optional[Array] = None,
            return_lists: bool = False, backend: Optional[str] = None,
            device: Optional[int] = None, **config: Any):
    """Causal sparse prefill attention: score, select and attend in one call.

    Args:
        q: queries, [B, Hq, N, d] (or [B, N, Hq, d] with layout="bnhd"):
            float32, float16 or bfloat16; a numpy array or a torch tensor
            (CPU or CUDA); any non-negative strides.
        k, v: keys and values, [B, Hkv, N, d] (Hq a multiple of Hkv: GQA), same
            dtype and device as q.
        selector: "stem" (official Stem semantics), "stem_paper", "uniform",
            "xattention", "xattention_strict" or "dense" (every causal block:
            exact attention).
        block_size: tokens per block, a power of two in 16..128.
        stride: antidiagonal stride (default 8, at most block_size).
        softmax_scale: default 1/sqrt(d).
        layer_index: model layer; layers below ``dense_layers`` (2) run dense.
            -1 = unknown (never forced dense).
        layout: "bhnd" or "bnhd": how the arrays' axes are ordered.
        out: optional output array shaped like q (same dtype and device).
        return_lists: also return the kept blocks: (out, index, count) with
            index [B, Hq, nq, nk] int32 (ascending, -1 padded) and count
            [B, Hq, nq, 1].
        backend: "cpu", "cuda", "opencl", "vulkan" or "auto"; None picks the
            arrays' own device (CUDA tensors: cuda; host arrays: cpu). Host
            arrays on a GPU backend are copied in and out.
        device: index among that backend's devices (default 0).
        **config: other stem_config fields, e.g. beta=0.2, mu=0.7,
            sink_blocks=4, local_blocks=4, k_start=..., xattn_threshold=0.9,
            dense_layers=2, dense_above_density=0.0 (see api/stem.h).

    Returns:
        The attention output, shaped like q, of q's type and device (or the
        tuple above with return_lists). On CUDA the work is queued on the
        current stream, as with any torch operation. Inference only: the
        output carries no autograd history.

    Raises:
        StemError (InvalidArgumentError, UnsupportedError, ...) with libstem's
        status name and message; TypeError/ValueError for arrays it cannot
        take at all.
    """
    qa, ka, va, B, Hq, Hkv, N, d = _common(q, k, v, layout)
    cfg = make_config(selector, block_size, stride, config)
    desc = make_desc(B, Hq, Hkv, N, d, qa.dtype, softmax_scale, layer_index)
    ctx = pick_context([qa, ka, va], backend, device)
    oa = adapt(out, layout, "out") if out is not None else new_like(qa, qa.dims, qa.dtype, layout)
    nb = -(-N // int(block_size))
    ia = ca = None
    if return_lists:
        ia = new_like(qa, (B, Hq, nb, nb), _lib.DTYPE_I32)
        ca = new_like(qa, (B, Hq, nb, 1), _lib.DTYPE_I32)
    with ctx.lock:
        plan = ctx.plan(desc, cfg)
        bound = Bound(ctx)
        try:
            ts = [bound.tensor(qa), bound.tensor(ka), bound.tensor(va),
                  bound.tensor(oa, output=True), None,
                  bound.tensor(ia, output=True) if ia else None,
                  bound.tensor(ca, output=True) if ca else None]
            _run(ctx, "stem_prefill", plan, ts)
            bound.finish()
        finally:
            bound.close()
    if return_lists:
        return oa.obj, ia.obj, ca.obj
    return oa.obj


def score(q: Array, k: Array, v: Array, *, selector: str = "stem", block_size: int = 128,
          stride: Optional[int] = None, softmax_scale: Optional[float] = None,
          layer_index: int = -1, layout: str = "bhnd", backend: Optional[str] = None,
          device: Optional[int] = None, **config: Any):
    """Block logits of the selector: [B, Hq, nq, nk] float32, -inf above the
    diagonal (XATTENTION: block softmax mass, 0 above). Arguments as
    :func:`prefill`."""
    qa, ka, va, B, Hq, Hkv, N, d = _common(q, k, v, layout)
    cfg = make_config(selector, block_size, stride, config)
    desc = make_desc(B, Hq, Hkv, N, d, qa.dtype, softmax_scale, layer_index)
    ctx = pick_context([qa, ka, va], backend, device)
    nb = -(-N // int(block_size))
    sa = new_like(qa, (B, Hq, nb, nb), _lib.DTYPE_F32)
    with ctx.lock:
        plan = ctx.plan(desc, cfg)
        bound = Bound(ctx)
        try:
            ts = [bound.tensor(qa), bound.tensor(ka), bound.tensor(va),
                  bound.tensor(sa, output=True)]
            _run(ctx, "stem_score", plan, ts)
            bound.finish()
        finally:
            bound.close()
    return sa.obj


def select(scores: Array, *, q_len: Optional[int] = None, selector: str = "stem",
           block_size: int = 128, stride: Optional[int] = None, layer_index: int = -1,
           head_dim: int = 64, backend: Optional[str] = None, device: Optional[int] = None,
           **config: Any) -> Tuple[Array, Array]:
    """Kept key blocks per query block from block scores [B, Hq, nq, nk]
    (float32, e.g. from :func:`score`).

    q_len is the token count N the budget is computed for (default
    nq * block_size); head_dim only has to be one the backend supports.

    Returns:
        (index, count): index [B, Hq, nq, nk] int32, ascending, padded with
        -1; count [B, Hq, nq, 1] int32.
    """
    sa = adapt(scores, "bhnd", "scores")
    B, Hq, nq, nk = sa.dims
    N = int(q_len) if q_len is not None else nq * int(block_size)
    cfg = make_config(selector, block_size, stride, config)
    desc = make_desc(B, Hq, Hq, N, head_dim, _lib.DTYPE_F32, None, layer_index)
    ctx = pick_context([sa], backend, device)
    ia = new_like(sa, (B, Hq, nq, nk), _lib.DTYPE_I32)
    ca = new_like(sa, (B, Hq, nq, 1), _lib.DTYPE_I32)
    with ctx.lock:
        plan = ctx.plan(desc, cfg)
        bound = Bound(ctx)
        try:
            ts = [bound.tensor(sa), bound.tensor(ia, output=True), bound.tensor(ca, output=True)]
            _run(ctx, "stem_select", plan, ts)
            bound.finish()
        finally:
            bound.close()
    return ia.obj, ca.obj


def attention(q: Array, k: Array, v: Array, index: Array, count: Array, *,
              block_size: int = 128, softmax_scale: Optional[float] = None,
              layout: str = "bhnd", out: Optional[Array] = None,
              backend: Optional[str] = None, device: Optional[int] = None) -> Array:
    """Exact block-sparse causal attention over given block lists.

    index [B, Hq, nq, nk] int32 lists kept key blocks per query block
    (ascending, within [0, row], padded with -1), count [B, Hq, nq, 1] how many;
    they may come from :func:`select` or anywhere else. Other arguments as
    :func:`prefill`. Returns the output shaped like q.
    """
    qa, ka, va, B, Hq, Hkv, N, d = _common(q, k, v, layout)
    ia, ca = adapt(index, "bhnd", "index"), adapt(count, "bhnd", "count")
    cfg = make_config("stem", block_size, None, {})
    desc = make_desc(B, Hq, Hkv, N, d, qa.dtype, softmax_scale, -1)
    ctx = pick_context([qa, ka, va, ia, ca], backend, device)
    oa = adapt(out, layout, "out") if out is not None else new_like(qa, qa.dims, qa.dtype, layout)
    with ctx.lock:
        plan = ctx.plan(desc, cfg)
        bound = Bound(ctx)
        try:
            ts = [bound.tensor(qa), bound.tensor(ka), bound.tensor(va), bound.tensor(ia),
                  bound.tensor(ca), bound.tensor(oa, output=True)]
            _run(ctx, "stem_attention", plan, ts)
            bound.finish()
        finally:
            bound.close()
    return oa.obj
