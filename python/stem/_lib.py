"""ctypes bindings of the libstem C API (api/stem.h): library loading, the
public structs and the function signatures. Nothing here is compiled: the
package is pure Python over the shared library."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (POINTER, c_char, c_char_p, c_double, c_float, c_int, c_int32, c_int64,
                    c_size_t, c_uint32, c_uint64, c_uint8, c_void_p)
from pathlib import Path
from typing import Optional

# ----------------------------------------------------------------- enums

STATUS_NAMES = {
    0: "STEM_OK",
    1: "STEM_ERR_INVALID_ARGUMENT",
    2: "STEM_ERR_UNSUPPORTED",
    3: "STEM_ERR_OUT_OF_MEMORY",
    4: "STEM_ERR_DEVICE_OUT_OF_MEMORY",
    5: "STEM_ERR_BACKEND_UNAVAILABLE",
    6: "STEM_ERR_KERNEL_BUILD",
    7: "STEM_ERR_DEVICE_LOST",
    8: "STEM_ERR_BACKEND_API",
    9: "STEM_ERR_VERSION_MISMATCH",
    10: "STEM_ERR_INTERNAL",
}
STATUS_INVALID_ARGUMENT = 1
STATUS_UNSUPPORTED = 2

BACKENDS = {"cpu": 0, "cuda": 1, "opencl": 2, "vulkan": 3}
BACKEND_NAMES = {v: k for k, v in BACKENDS.items()}

DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_I32 = 0, 1, 2, 3
DTYPE_SIZE = {DTYPE_F32: 4, DTYPE_F16: 2, DTYPE_BF16: 2, DTYPE_I32: 4}

DEVICE_AUTO = -1

# --------------------------------------------------------------- structs
#
# Every versioned struct ends in zeroed spare bytes: the library's *_init()
# writes its own struct_size and defaults there, so a newer library with
# appended fields gets a large enough struct with its defaults, and the
# fields this package knows keep their offsets (fields are only appended).

_TAIL = [("_tail", c_uint8 * 512)]


class BackendInfo(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("backend", c_int), ("compiled", c_int),
                ("available", c_int), ("device_count", c_uint32), ("reason", c_char * 256), *_TAIL]


class DeviceInfo(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("backend", c_int), ("backend_index", c_uint32),
                ("is_gpu", c_int), ("memory_bytes", c_uint64), ("compute_units", c_uint32),
                ("name", c_char * 256), ("detail", c_char * 256), *_TAIL]


LOG_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_char_p)


class ContextDesc(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("device", c_int32), ("num_threads", c_int32),
                ("log", LOG_FN), ("log_user", c_void_p), ("native_queue", c_void_p),
                ("cache_dir", c_char_p), *_TAIL]


class NativeHandles(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("backend", c_int), ("context", c_void_p),
                ("queue", c_void_p), ("device", c_void_p), ("instance", c_void_p),
                ("queue_family", c_uint32), *_TAIL]


class Tensor(ctypes.Structure):
    """stem_tensor. The trailing zero bytes cover fields a newer library may
    append (flags and reserved words that must be zero)."""
    _fields_ = [("buffer", c_void_p), ("offset", c_size_t), ("dtype", c_int),
                ("dims", c_int64 * 4), ("strides", c_int64 * 4), ("_zero_tail", c_uint8 * 64)]


class Config(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t), ("selector", c_int), ("block_size", c_int32),
        ("stride", c_int32), ("beta", c_float), ("mu", c_double), ("sink_blocks", c_int32),
        ("local_blocks", c_int32), ("norm", c_float), ("dense_below_blocks", c_int32),
        ("medium_below_blocks", c_int32), ("medium_rate", c_double), ("medium_bias", c_int32),
        ("large_rate", c_double), ("large_bias", c_int32), ("k_start", c_int32),
        ("paper_short_rate", c_double), ("paper_long_rate", c_double),
        ("paper_switch_tokens", c_int64), ("paper_min_blocks", c_int32), ("uniform_k", c_int32),
        ("xattn_threshold", c_float), ("dense_layers", c_int32),
        ("dense_above_density", c_double), *_TAIL,
    ]


class AttentionDesc(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("batch", c_int64), ("num_q_heads", c_int64),
                ("num_kv_heads", c_int64), ("q_len", c_int64), ("kv_len", c_int64),
                ("head_dim", c_int64), ("dtype", c_int), ("causal", c_int32),
                ("softmax_scale", c_float), ("layer_index", c_int32), *_TAIL]


class PlanInfo(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("num_q_blocks", c_int64), ("num_k_blocks", c_int64),
                ("dense", c_int32), ("k_start", c_int32), ("k_end", c_int32),
                ("budget_density", c_double), ("workspace_bytes", c_size_t), ("selector", c_int),
                *_TAIL]


CONFIG_FIELDS = tuple(name for name, _ in Config._fields_ if name not in ("struct_size", "_tail"))

# ---------------------------------------------------------------- loading

_PKG_LIB_DIR = Path(__file__).resolve().parent / "_lib"


def _candidates() -> list:
    """Where libstem is looked for: the copy bundled in the package, then
    STEM_LIBRARY, then the system's library path."""
    found = []
    if _PKG_LIB_DIR.is_dir():
        found += sorted(str(p) for p in _PKG_LIB_DIR.glob("libstem.so*"))
    env = os.environ.get("STEM_LIBRARY")
    if env:
        found.append(env)
    sys_lib = ctypes.util.find_library("stem")
    if sys_lib:
        found.append(sys_lib)
    found.append("libstem.so.0")
    return found


def _declare(lib: ctypes.CDLL) -> None:
    S = c_int  # stem_status
    sigs = {
        "stem_status_name": (c_char_p, [c_int]),
        "stem_last_error": (c_char_p, []),
        "stem_version_string": (c_char_p, []),
        "stem_backend_name": (c_char_p, [c_int]),
        "stem_backend_info_init": (None, [POINTER(BackendInfo)]),
        "stem_backend_query": (S, [c_int, POINTER(BackendInfo)]),
        "stem_device_info_init": (None, [POINTER(DeviceInfo)]),
        "stem_device_count": (S, [POINTER(c_uint32)]),
        "stem_device_get_info": (S, [c_uint32, POINTER(DeviceInfo)]),
        "stem_context_desc_init": (None, [POINTER(ContextDesc)]),
        "stem_context_create": (S, [POINTER(ContextDesc), POINTER(c_void_p)]),
        "stem_context_destroy": (None, [c_void_p]),
        "stem_context_get_device": (S, [c_void_p, POINTER(DeviceInfo)]),
        "stem_native_handles_init": (None, [POINTER(NativeHandles)]),
        "stem_context_get_native": (S, [c_void_p, POINTER(NativeHandles)]),
        "stem_synchronize": (S, [c_void_p]),
        "stem_buffer_create": (S, [c_void_p, c_size_t, POINTER(c_void_p)]),
        "stem_buffer_wrap_host": (S, [c_void_p, c_void_p, c_size_t, POINTER(c_void_p)]),
        "stem_buffer_wrap_native": (S, [c_void_p, c_void_p, c_size_t, c_size_t,
                                        POINTER(c_void_p)]),
        "stem_buffer_destroy": (None, [c_void_p]),
        "stem_buffer_write": (S, [c_void_p, c_size_t, c_void_p, c_size_t]),
        "stem_buffer_read": (S, [c_void_p, c_size_t, c_void_p, c_size_t]),
        "stem_selector_from_name": (S, [c_char_p, POINTER(c_int)]),
        "stem_config_init": (None, [POINTER(Config)]),
        "stem_attention_desc_init": (None, [POINTER(AttentionDesc)]),
        "stem_plan_create": (S, [c_void_p, POINTER(AttentionDesc), POINTER(Config),
                                 POINTER(c_void_p)]),
        "stem_plan_destroy": (None, [c_void_p]),
        "stem_plan_info_init": (None, [POINTER(PlanInfo)]),
        "stem_plan_get_info": (S, [c_void_p, POINTER(PlanInfo)]),
        "stem_score": (S, [c_void_p] + [POINTER(Tensor)] * 4),
        "stem_select": (S, [c_void_p] + [POINTER(Tensor)] * 3),
        "stem_attention": (S, [c_void_p] + [POINTER(Tensor)] * 6),
        "stem_prefill": (S, [c_void_p] + [POINTER(Tensor)] * 7),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args


_lib: Optional[ctypes.CDLL] = None
_lib_path: Optional[str] = None


def lib() -> ctypes.CDLL:
    """The loaded libstem (loaded on first use)."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    errors = []
    for path in _candidates():
        try:
            handle = ctypes.CDLL(path)
            _declare(handle)
        except (OSError, AttributeError) as e:
            errors.append(f"{path}: {e}")
            continue
        _lib, _lib_path = handle, path
        return handle
    raise OSError("libstem not found: install the package with `pip install ./python`, or set "
                  "STEM_LIBRARY to the path of libstem.so (tried: " + "; ".join(errors) + ")")


def library_path() -> str:
    """Path of the libstem shared library in use."""
    lib()
    return str(_lib_path)
