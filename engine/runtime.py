"""Process-wide runtime facts: which BLAS MLX uses, which device, which dtype.

The PyPI mlx-cpu wheel links a reference BLAS (~4 GFLOP/s). Loading an optimized
BLAS with RTLD_GLOBAL before mlx is imported makes MLX resolve its cblas symbols there
instead (~100-180 GFLOP/s on our 2-core machines). This must run before the first
``import mlx``; ``engine/__init__.py`` calls it.

BLIS comes first: decoding multiplies one row by each weight matrix, and OpenBLAS
0.3.21 (Debian 12) copies the whole weight matrix into a packed buffer on every such
call (three quarters of the engine thread's time in a profile of the starter model),
while BLIS does not. Starter model, 96 tokens: ~20 tok/s with BLIS against ~13 with
OpenBLAS, the same tokens; prompt processing is ~5% slower.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass

# BLIS first (see above), then OpenBLAS by its Debian and generic sonames, then MKL.
_BLAS_CANDIDATES = (
    "libblis.so.4",
    "libopenblas.so.0",
    "libopenblasp-r0.so",
    "libopenblas.so",
    "libmkl_rt.so.2",
)

_loaded_blas: str | None = None
_blas_error: str | None = None


def preload_blas() -> str | None:
    """Load an optimized BLAS globally (Linux only). Returns its name, or None.

    ``LOOKAHEAD_BLAS=off`` disables it; ``LOOKAHEAD_BLAS=/path/libfoo.so`` picks one.
    """
    global _loaded_blas, _blas_error
    if _loaded_blas is not None or not sys.platform.startswith("linux"):
        return _loaded_blas
    choice = os.environ.get("LOOKAHEAD_BLAS", "auto")
    if choice == "off":
        return None
    if "mlx.core" in sys.modules:
        _blas_error = "mlx was imported before the engine; BLAS preload skipped"
        return None
    candidates = _BLAS_CANDIDATES if choice == "auto" else (choice,)
    for name in candidates:
        try:
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        _loaded_blas = os.path.basename(name)
        return _loaded_blas
    _blas_error = "no optimized BLAS found (apt-get install libblis4-pthread)"
    return None


@dataclass(frozen=True)
class RuntimeInfo:
    device: str  # "gpu" (Metal/CUDA) or "cpu"
    backend: str  # "metal", "cuda" or "cpu"
    blas: str  # library name, "accelerate", or "reference"; "+ skinny-avx2" with the kernel
    blas_note: str | None
    kernel: str = ""  # which matmul runs decode-shaped calls on CPU (engine.native), and why


def runtime_info() -> RuntimeInfo:
    import mlx.core as mx

    device = "gpu" if mx.default_device() == mx.gpu else "cpu"
    if device == "gpu":
        backend = "metal" if mx.metal.is_available() else "cuda"
    else:
        backend = "cpu"
    if sys.platform == "darwin":
        blas = "accelerate"
    else:
        blas = _loaded_blas or "reference"
    kernel = ""
    if device == "cpu" and sys.platform.startswith("linux"):
        from engine.native import kernel_info

        k = kernel_info()
        kernel = k.label
        # Stats and the status bar show this string: say which matmul decodes.
        blas = f"{blas} + {k.name}" if k.note is None else f"{blas} (no skinny kernel)"
    return RuntimeInfo(
        device=device, backend=backend, blas=blas, blas_note=_blas_error, kernel=kernel
    )


def fast_dtype_name(requested: str = "auto") -> str:
    """The compute dtype to load weights in: 'float32' on CPU unless overridden.

    On CPU MLX has no fast fp16/bf16/quantized matmul, so fp32 beats them by ~40x
    (``model_loader.choose_dtype`` narrows this to bf16 when the native skinny kernel,
    which widens bf16 in registers, is built). On a GPU the checkpoint's own dtype (and
    quantization) is the right choice.
    """
    if requested != "auto":
        return requested
    return "float32" if runtime_info().device == "cpu" else "native"
