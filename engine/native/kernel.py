"""The skinny matmul, or mx.matmul where it is not built or not usable.

``skinny_matmul(x, w)`` is ``x @ w.T`` for w of shape [N, K]. On Linux CPU with the
native module built it runs an MLX custom primitive for inputs of at most 16 rows
(decoding and verification); everything else, and every machine without it, gets
mx.matmul. ``LOOKAHEAD_KERNEL=off`` disables it for a process, ``use_kernel(False)``
for a block of code (benchmarks compare both in one process).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import mlx.core as mx

MAX_ROWS = 16

_ext = None
_why_not: str | None = None
_loaded = False
_enabled = True


def _self_test(ext) -> str | None:
    """Compare with mx.matmul on a few odd shapes (deterministic inputs)."""
    for m, k, n in ((1, 37, 19), (3, 64, 9), (16, 9, 33)):
        x = mx.sin(mx.arange(m * k, dtype=mx.float32) * 0.37).reshape(m, k)
        w = mx.cos(mx.arange(n * k, dtype=mx.float32) * 0.11).reshape(n, k)
        for wt in (w, w.astype(mx.bfloat16)):
            want = x @ wt.astype(mx.float32).T
            got = ext.skinny_matmul(x, wt)
            if got.shape != want.shape or not mx.allclose(got, want, rtol=1e-4, atol=1e-4):
                return f"wrong result for {m}x{k} @ {n}x{k} {wt.dtype}"
    return None


def _load() -> None:
    global _ext, _why_not, _loaded
    if _loaded:
        return
    _loaded = True
    if os.environ.get("LOOKAHEAD_KERNEL", "auto") == "off":
        _why_not = "off (LOOKAHEAD_KERNEL=off)"
        return
    if not sys.platform.startswith("linux"):
        _why_not = "not built on this platform"
        return
    try:
        from engine.native import _skinny as ext  # type: ignore[attr-defined]
    except ImportError as e:
        _why_not = "not built (python -m engine.native.build)"
        if "undefined symbol" in str(e) or "cannot open" in str(e):
            _why_not = f"unusable ({str(e).splitlines()[0][:120]}); rebuild it"
        return
    try:
        with mx.stream(mx.cpu):
            problem = _self_test(ext)
    except Exception as e:  # a module built against another mlx or nanobind ABI
        problem = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
    if problem:
        _why_not = f"failed its self-test ({problem}); rebuild it"
        return
    _ext = ext


def available() -> bool:
    """The native kernel is built, loads and passed its self-test."""
    _load()
    return _ext is not None


def active() -> bool:
    """Calls made now go to the native kernel (when their shape allows)."""
    return available() and _enabled and mx.default_device() == mx.cpu


@contextlib.contextmanager
def use_kernel(on: bool) -> Iterator[None]:
    """Route skinny matmuls built inside this block to the kernel (True) or mx.matmul."""
    global _enabled
    before = _enabled
    _enabled = on
    try:
        yield
    finally:
        _enabled = before


def skinny_matmul(x: mx.array, w: mx.array) -> mx.array:
    """x [..., K] @ w[N, K].T in x's dtype (float accumulation)."""
    rows = x.size // x.shape[-1] if x.shape[-1] else 0
    if active() and rows <= MAX_ROWS and w.dtype in (mx.float32, mx.bfloat16):
        y = _ext.skinny_matmul(x, w)
        return y if x.dtype == mx.float32 else y.astype(x.dtype)
    if w.dtype != x.dtype:
        w = w.astype(x.dtype)
    return x @ w.T


@dataclass(frozen=True)
class KernelInfo:
    name: str  # "skinny-avx2", "skinny-portable" or "mx.matmul"
    threads: int
    note: str | None  # why the native kernel is not running

    @property
    def label(self) -> str:
        if self.note is None:
            return f"{self.name} ({self.threads} threads)"
        return f"{self.name} (skinny kernel {self.note})"


def kernel_info() -> KernelInfo:
    _load()
    if _ext is None:
        return KernelInfo("mx.matmul", 0, _why_not or "not built")
    if not _enabled:
        return KernelInfo("mx.matmul", 0, "switched off")
    return KernelInfo(f"skinny-{_ext.kernel_isa()}", int(_ext.kernel_threads()), None)


def set_threads(n: int) -> None:
    """Split each call over n threads (0: one per core). No-op without the kernel."""
    if available():
        _ext.set_kernel_threads(int(n))
