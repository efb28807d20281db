"""Rolling back mlx-vlm's caches (DeepSeek-V4: a sliding window per layer, pooled
compressed groups, indexer pools).

None of them can be trimmed reliably once the window has wrapped or a group has
closed, so they are always restored from a snapshot taken before the forward pass
and the kept positions replayed (engine.kv_cache.rollback). Their state lives in
plain attributes; arrays written in place (``a[...] = b``) are held as fresh array
objects, so the write does not reach the snapshot. Checked by module name: nothing
here imports mlx-vlm.
"""

from __future__ import annotations

import mlx.core as mx


def is_vlm_cache(c) -> bool:
    return type(c).__module__.startswith("mlx_vlm.")


def any_vlm_cache(cache: list) -> bool:
    return any(is_vlm_cache(c) for c in cache)


def _copy(v):
    if isinstance(v, mx.array):
        return mx.array(v)
    if isinstance(v, list):
        return [_copy(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_copy(x) for x in v)
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    return v


def copy_state(c) -> dict:
    """Everything ``restore_state`` needs to put ``c`` back as it is now."""
    inner = getattr(c, "caches", None)
    if inner is not None:  # CacheList
        return {"__caches__": [copy_state(x) for x in inner]}
    return {k: _copy(v) for k, v in vars(c).items()}


def restore_state(c, saved: dict) -> None:
    if "__caches__" in saved:
        for x, s in zip(c.caches, saved["__caches__"], strict=True):
            restore_state(x, s)
        return
    vars(c).clear()
    vars(c).update({k: _copy(v) for k, v in saved.items()})
