"""Contexts, plans, buffers and the stage calls behind the public functions."""

from __future__ import annotations

import threading
from collections import OrderedDict
from ctypes import byref, c_int, c_uint32, c_void_p
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import _lib as L
from ._arrays import Arr

# ------------------------------------------------------------- exceptions


class StemError(RuntimeError):
    """A libstem call failed. ``status`` is the numeric stem_status,
    ``status_name`` its stable name (e.g. ``"STEM_ERR_INVALID_ARGUMENT"``) and
    ``message`` libstem's own explanation (stem_last_error)."""

    def __init__(self, status: int, message: str, call: str = ""):
        self.status = status
        self.status_name = _status_name(status)
        self.message = message
        self.call = call
        super().__init__(f"{self.status_name}: {message}" if message else self.status_name)


def _status_name(status: int) -> str:
    try:  # the library's own stable name
        return L.lib().stem_status_name(status).decode()
    except OSError:
        return L.STATUS_NAMES.get(status, f"STEM_STATUS_{status}")


class InvalidArgumentError(StemError, ValueError):
    """STEM_ERR_INVALID_ARGUMENT: bad shapes, strides, dtypes or configuration."""


class UnsupportedError(StemError, NotImplementedError):
    """STEM_ERR_UNSUPPORTED: a valid request this backend cannot run."""


class BackendUnavailableError(StemError):
    """STEM_ERR_BACKEND_UNAVAILABLE: backend not compiled in, disabled or without device."""


_ERROR_CLASSES = {1: InvalidArgumentError, 2: UnsupportedError, 5: BackendUnavailableError}


def check(status: int, call: str) -> None:
    if status != 0:
        msg = L.lib().stem_last_error().decode("utf-8", "replace")
        raise _ERROR_CLASSES.get(status, StemError)(status, msg, call)


# ---------------------------------------------------------------- devices


def device_list() -> List[Dict[str, Any]]:
    lib = L.lib()
    n = c_uint32(0)
    check(lib.stem_device_count(byref(n)), "stem_device_count")
    out = []
    for i in range(n.value):
        info = L.DeviceInfo()
        lib.stem_device_info_init(byref(info))
        check(lib.stem_device_get_info(i, byref(info)), "stem_device_get_info")
        detail = info.detail.decode("utf-8", "replace")
        ordinal = info.backend_index
        if "ordinal " in detail:
            try:
                ordinal = int(detail.split("ordinal ")[1].split()[0].rstrip(","))
            except ValueError:
                pass
        out.append({"index": i, "backend": L.BACKEND_NAMES.get(info.backend, "unknown"),
                    "backend_index": info.backend_index, "ordinal": ordinal,
                    "is_gpu": bool(info.is_gpu), "name": info.name.decode("utf-8", "replace"),
                    "detail": detail, "memory_bytes": info.memory_bytes})
    return out


def _global_device(backend: str, index: Optional[int], cuda_ordinal: Optional[int]) -> int:
    if backend == "auto":
        return L.DEVICE_AUTO
    devs = [d for d in device_list() if d["backend"] == backend]
    if not devs:
        lib = L.lib()
        info = L.BackendInfo()
        lib.stem_backend_info_init(byref(info))
        lib.stem_backend_query(L.BACKENDS[backend], byref(info))
        reason = info.reason.decode("utf-8", "replace") or "no device"
        raise BackendUnavailableError(5, f"backend {backend}: {reason}", "stem_device_get_info")
    if cuda_ordinal is not None:
        for d in devs:
            if d["ordinal"] == cuda_ordinal:
                return d["index"]
        raise BackendUnavailableError(5, f"CUDA device {cuda_ordinal} is not a libstem device "
                                      "(compute capability 8.0 or newer is needed)", "")
    i = 0 if index is None else index
    if not 0 <= i < len(devs):
        raise ValueError(f"device {i} out of range: backend {backend} has {len(devs)}")
    return devs[i]["index"]


# ---------------------------------------------------------------- contexts

_MAX_PLANS = 16
CU_STREAM_LEGACY = 0x1  # cuda.h: the legacy default stream as a handle


class Context:
    """One libstem context (device + queue), its cached plans and a lock (a
    context is used by one thread at a time)."""

    def __init__(self, global_device: int, native_queue: int = 0):
        lib = L.lib()
        desc = L.ContextDesc()
        lib.stem_context_desc_init(byref(desc))
        desc.device = global_device
        desc.native_queue = native_queue or None
        handle = c_void_p()
        check(lib.stem_context_create(byref(desc), byref(handle)), "stem_context_create")
        self.handle = handle
        info = L.DeviceInfo()
        lib.stem_device_info_init(byref(info))
        check(lib.stem_context_get_device(handle, byref(info)), "stem_context_get_device")
        self.backend = L.BACKEND_NAMES.get(info.backend, "unknown")
        self.device_name = info.name.decode("utf-8", "replace")
        self.lock = threading.Lock()
        self.plans: "OrderedDict[tuple, c_void_p]" = OrderedDict()

    def plan(self, desc: L.AttentionDesc, cfg: L.Config) -> c_void_p:
        key = (bytes(desc), bytes(cfg))
        p = self.plans.get(key)
        if p is not None:
            self.plans.move_to_end(key)
            return p
        p = c_void_p()
        lib = L.lib()
        check(lib.stem_plan_create(self.handle, byref(desc), byref(cfg), byref(p)),
              "stem_plan_create")
        # The plan must have read the shape this package wrote: a library
        # whose structs are laid out otherwise would show it here.
        info = L.PlanInfo()
        lib.stem_plan_info_init(byref(info))
        check(lib.stem_plan_get_info(p, byref(info)), "stem_plan_get_info")
        want = -(-desc.kv_len // cfg.block_size)
        if info.num_k_blocks != want:
            lib.stem_plan_destroy(p)
            raise StemError(9, f"libstem at {L.library_path()} reads the plan's shape "
                            f"differently ({info.num_k_blocks} key blocks, expected {want}): "
                            "this package and the library do not match", "stem_plan_create")
        self.plans[key] = p
        if len(self.plans) > _MAX_PLANS:
            _, old = self.plans.popitem(last=False)
            L.lib().stem_plan_destroy(old)
        return p


_contexts: Dict[tuple, Context] = {}
_contexts_lock = threading.Lock()


def context_for(backend: str, device: Optional[int], cuda_ordinal: Optional[int] = None,
                stream: int = 0) -> Context:
    key = (backend, device, cuda_ordinal, stream)
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = Context(_global_device(backend, device, cuda_ordinal), stream)
            _contexts[key] = ctx
        return ctx


# ----------------------------------------------------------- configuration


def make_config(selector: str, block_size: int, stride: Optional[int],
                extra: Dict[str, Any]) -> L.Config:
    lib = L.lib()
    cfg = L.Config()
    lib.stem_config_init(byref(cfg))
    sel = c_int()
    check(lib.stem_selector_from_name(str(selector).encode(), byref(sel)),
          "stem_selector_from_name")
    cfg.selector = sel.value
    cfg.block_size = int(block_size)
    if stride is not None:
        cfg.stride = int(stride)
    elif cfg.stride > cfg.block_size:
        cfg.stride = cfg.block_size
    for name, value in extra.items():
        if name not in L.CONFIG_FIELDS or name in ("selector", "block_size", "stride"):
            raise TypeError(f"unknown configuration field {name!r}; stem_config has: "
                            + ", ".join(f for f in L.CONFIG_FIELDS
                                        if f not in ("selector", "block_size", "stride")))
        setattr(cfg, name, value)
    return cfg


def make_desc(batch: int, hq: int, hkv: int, n: int, d: int, dtype: int,
              softmax_scale: Optional[float], layer_index: int) -> L.AttentionDesc:
    desc = L.AttentionDesc()
    L.lib().stem_attention_desc_init(byref(desc))
    desc.batch, desc.num_q_heads, desc.num_kv_heads = batch, hq, hkv
    desc.q_len = desc.kv_len = n
    desc.head_dim = d
    desc.dtype = dtype
    desc.softmax_scale = float(softmax_scale or 0.0)
    desc.layer_index = int(layer_index)
    return desc


# ------------------------------------------------------------------ calls


def pick_context(arrays: Sequence[Arr], backend: Optional[str],
                 device: Optional[int]) -> Context:
    """The context the arrays run on: a CUDA tensor's device and current
    stream, else the CPU backend (host arrays are used in place), unless
    backend names another one (host arrays are then copied in and out)."""
    cuda = [a for a in arrays if a.device == "cuda"]
    if cuda:
        ords = {a.device_index for a in cuda}
        if len(ords) > 1 or len(cuda) != len(arrays):
            raise ValueError("all tensors must be on the same device "
                             f"(found {sorted(set((a.device, a.device_index) for a in arrays))})")
        if backend not in (None, "cuda"):
            raise ValueError(f"CUDA tensors run on the cuda backend, not {backend!r}")
        ordinal = cuda[0].device_index
        import torch  # CUDA tensors come from torch (or through it, DLPack)
        stream = int(torch.cuda.current_stream(ordinal).cuda_stream)
        # torch's default stream is the legacy NULL stream; to libstem NULL
        # means "a stream of your own", so it gets CU_STREAM_LEGACY instead.
        return context_for("cuda", None, ordinal, stream or CU_STREAM_LEGACY)
    b = backend or "cpu"
    if b not in L.BACKENDS and b != "auto":
        raise ValueError(f"unknown backend {backend!r}; one of {sorted(L.BACKENDS)} or 'auto'")
    return context_for(b, device)


class Bound:
    """Buffers wrapping (or, on devices that cannot use host memory, holding
    copies of) a call's arrays, destroyed when the call ends."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.buffers: List[c_void_p] = []
        self.copy_back: List[Tuple[c_void_p, Arr]] = []

    def tensor(self, a: Arr, output: bool = False) -> L.Tensor:
        lib = L.lib()
        buf = c_void_p()
        if a.device == "cuda":
            check(lib.stem_buffer_wrap_native(self.ctx.handle, c_void_p(a.ptr), 0, a.nbytes,
                                              byref(buf)), "stem_buffer_wrap_native")
        else:
            st = lib.stem_buffer_wrap_host(self.ctx.handle, c_void_p(a.ptr), a.nbytes, byref(buf))
            if st == L.STATUS_UNSUPPORTED:  # a GPU: copy through device memory
                check(lib.stem_buffer_create(self.ctx.handle, a.nbytes, byref(buf)),
                      "stem_buffer_create")
                self.buffers.append(buf)
                if output:
                    self.copy_back.append((buf, a))
                else:
                    check(lib.stem_buffer_write(buf, 0, c_void_p(a.ptr), a.nbytes),
                          "stem_buffer_write")
            else:
                check(st, "stem_buffer_wrap_host")
        if buf not in self.buffers:
            self.buffers.append(buf)
        t = L.Tensor()
        t.buffer = buf.value
        t.offset = 0
        t.dtype = a.dtype
        for i in range(4):
            t.dims[i] = a.dims[i]
            t.strides[i] = a.strides[i]
        return t

    def finish(self) -> None:
        lib = L.lib()
        if self.copy_back:
            check(lib.stem_synchronize(self.ctx.handle), "stem_synchronize")
            for buf, a in self.copy_back:
                check(lib.stem_buffer_read(buf, 0, c_void_p(a.ptr), a.nbytes), "stem_buffer_read")
        elif self.ctx.backend not in ("cuda",):
            # Host results must be complete when the call returns; CUDA work
            # stays queued on the caller's stream, as torch's own kernels do.
            check(lib.stem_synchronize(self.ctx.handle), "stem_synchronize")

    def close(self) -> None:
        lib = L.lib()
        for buf in self.buffers:
            lib.stem_buffer_destroy(buf)
        self.buffers = []
