"""Views of numpy arrays and torch tensors as libstem tensors, without copies.

An Arr records where an array's elements are (pointer, byte extent), its
logical [B, H, N, d] dims and element strides, its libstem dtype and its
device (host memory, or a CUDA device for torch tensors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

from . import _lib as L

LAYOUTS = ("bhnd", "bnhd")


@dataclass
class Arr:
    obj: Any                 # the array itself (kept alive for the call)
    kind: str                # "numpy" | "torch"
    device: str              # "cpu" | "cuda"
    device_index: int
    ptr: int
    nbytes: int              # extent from ptr covering every element
    dtype: int               # libstem dtype
    dims: Tuple[int, int, int, int]     # logical [B, H, N, d]
    strides: Tuple[int, int, int, int]  # elements, logical order


def _is_torch(x: Any) -> bool:
    mod = type(x).__module__
    return mod.startswith("torch") and hasattr(x, "data_ptr")


def _torch_dtype(t: Any) -> int:
    import torch
    table = {torch.float32: L.DTYPE_F32, torch.float16: L.DTYPE_F16,
             torch.bfloat16: L.DTYPE_BF16, torch.int32: L.DTYPE_I32}
    if t.dtype not in table:
        raise TypeError(f"unsupported tensor dtype {t.dtype}: float32, float16, bfloat16 "
                        "(int32 for block lists)")
    return table[t.dtype]


def _numpy_dtype(a: Any) -> int:
    import numpy as np
    if a.dtype == np.float32:
        return L.DTYPE_F32
    if a.dtype == np.float16:
        return L.DTYPE_F16
    if a.dtype == np.int32:
        return L.DTYPE_I32
    if a.dtype.name == "bfloat16":  # ml_dtypes
        return L.DTYPE_BF16
    raise TypeError(f"unsupported array dtype {a.dtype}: float32, float16, bfloat16 "
                    "(ml_dtypes), int32 for block lists")


def _logical(shape: Sequence[int], strides: Sequence[int], layout: str):
    if len(shape) != 4:
        raise ValueError(f"expected a 4-D array [B, H, N, d] or [B, N, H, d], got shape "
                         f"{tuple(shape)}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    order = (0, 1, 2, 3) if layout == "bhnd" else (0, 2, 1, 3)
    return (tuple(int(shape[i]) for i in order), tuple(int(strides[i]) for i in order))


def _extent(dims: Sequence[int], strides: Sequence[int], itemsize: int) -> int:
    if any(d <= 0 for d in dims):
        raise ValueError(f"empty array (dims {tuple(dims)})")
    return (sum((d - 1) * s for d, s in zip(dims, strides)) + 1) * itemsize


def adapt(x: Any, layout: str = "bhnd", name: str = "array") -> Arr:
    """An Arr over x (numpy array, torch tensor, or any object with
    __dlpack__), sharing its memory."""
    if _is_torch(x):
        t = x
        if t.is_cuda:
            device, index = "cuda", t.device.index if t.device.index is not None else 0
        elif t.device.type == "cpu":
            device, index = "cpu", 0
        else:
            raise TypeError(f"{name}: tensors on {t.device} are not supported (cpu or cuda)")
        if any(s < 0 for s in t.stride()):
            t = t.contiguous()
        dims, strides = _logical(t.shape, t.stride(), layout)
        dt = _torch_dtype(t)
        return Arr(t, "torch", device, index, int(t.data_ptr()),
                   _extent(dims, strides, t.element_size()), dt, dims, strides)
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if np is not None and not isinstance(x, np.ndarray) and hasattr(x, "__dlpack__"):
        dev = x.__dlpack_device__()[0] if hasattr(x, "__dlpack_device__") else 1
        if dev == 2:  # kDLCUDA: through torch, zero copy
            import torch.utils.dlpack
            return adapt(torch.utils.dlpack.from_dlpack(x), layout, name)
        x = np.from_dlpack(x)
    if np is None or not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array or a torch tensor, got {type(x).__name__}")
    a = x
    dt = _numpy_dtype(a)
    item = a.itemsize
    if any(s < 0 or s % item for s in a.strides):
        a = np.ascontiguousarray(a)
    if not a.flags.writeable and name in ("out", "scores", "index", "count"):
        raise ValueError(f"{name}: the array is read-only")
    dims, strides = _logical(a.shape, [s // item for s in a.strides], layout)
    return Arr(a, "numpy", "cpu", 0, int(a.ctypes.data), _extent(dims, strides, item), dt,
               dims, strides)


_NP_DTYPES = {L.DTYPE_F32: "float32", L.DTYPE_F16: "float16", L.DTYPE_I32: "int32"}


def new_like(ref: Arr, dims: Sequence[int], dtype: int, layout: str = "bhnd") -> Arr:
    """A new contiguous array on ref's device, of logical dims in layout."""
    shape = list(dims) if layout == "bhnd" else [dims[0], dims[2], dims[1], dims[3]]
    if ref.kind == "torch":
        import torch
        table = {L.DTYPE_F32: torch.float32, L.DTYPE_F16: torch.float16,
                 L.DTYPE_BF16: torch.bfloat16, L.DTYPE_I32: torch.int32}
        obj = torch.empty(shape, dtype=table[dtype], device=ref.obj.device)
    else:
        import numpy as np
        if dtype == L.DTYPE_BF16:
            obj = np.empty(shape, dtype=ref.obj.dtype)
        else:
            obj = np.empty(shape, dtype=_NP_DTYPES[dtype])
    return adapt(obj, layout, "out")
