"""KV caches: rollback after rejected drafts, and reuse across requests.

``PromptCacheStore`` keeps the caches of recent generations per model, so a new
request that shares a prefix with an earlier one (a replay, an edited message, a
coding harness resending its system prompt) computes only the new suffix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mlx.core as mx
from mlx_lm.models.cache import (
    ArraysCache,
    can_trim_prompt_cache,
    make_prompt_cache,
    trim_prompt_cache,
)

try:  # DeepSeek-V4.1's per-layer cache (mlx-lm >= 0.32)
    from mlx_lm.models.deepseek_v41 import LayerCache
except ImportError:  # an mlx-lm without it: isinstance(c, ()) is always False
    LayerCache = ()

from engine.deepseek_v4.caches import any_vlm_cache, copy_state, is_vlm_cache, restore_state
from engine.prompt_cache_disk import DiskPromptCache, model_key


def new_cache(model) -> list:
    return make_prompt_cache(model)


def rollback(
    cache: list, n: int, snapshot: list | None = None, replay: Callable[[], object] | None = None
) -> None:
    """Drop the last n positions from every layer's cache.

    Recurrent layers (GatedDeltaNet in Qwen3-Next / Qwen3.5: ``ArraysCache``) and
    DeepSeek-V4.1's layers (``LayerCache``: a sliding window that forgets, compressed
    groups that close) cannot be trimmed: they are restored from ``snapshot`` (taken
    before the forward pass that added the positions) and ``replay()`` recomputes the
    positions that are kept.
    """
    if n <= 0:
        return
    if not _trimmable(cache):
        if snapshot is None or replay is None:
            raise RuntimeError("this model's cache cannot be rolled back")
        restore(cache, snapshot)
        replay()
        return
    trimmed = trim_prompt_cache(cache, n)
    if trimmed != n:
        raise RuntimeError(f"cache rollback removed {trimmed} of {n} positions")


def snapshot(cache: list) -> list | None:
    """What ``rollback`` needs to undo the next forward pass; None when every layer
    can simply be trimmed. Trimmable layers keep just their offset."""
    if _trimmable(cache):
        return None
    return [
        _offset(c) if c.is_trimmable() and not is_vlm_cache(c) else _copy_state(c) for c in cache
    ]


def _trimmable(cache: list) -> bool:
    # mlx-vlm's windowed caches say trimmable until the window wraps mid-pass.
    return can_trim_prompt_cache(cache) and not any_vlm_cache(cache)


def _copy_state(c) -> tuple | dict:
    # ArraysCache replaces its arrays (a list copy is enough), LayerCache assigns new
    # arrays to its attributes (a copy of those is enough); other caches write into
    # their arrays in place (``a[...] = b`` changes every reference), so hold copies.
    if is_vlm_cache(c):
        return copy_state(c)
    if isinstance(c, ArraysCache):
        return (list(c.cache), c.left_padding, c.lengths)
    if isinstance(c, LayerCache):
        return dict(vars(c))
    return tuple(mx.array(x) if isinstance(x, mx.array) else x for x in c.state)


def restore(cache: list, snap: list) -> None:
    for c, saved in zip(cache, snap, strict=True):
        if isinstance(saved, int):
            c.trim(_offset(c) - saved)
        elif is_vlm_cache(c):
            restore_state(c, saved)
        elif isinstance(c, ArraysCache):
            c.state = (list(saved[0]), saved[1], saved[2])
        elif isinstance(c, LayerCache):
            vars(c).clear()
            vars(c).update(saved)
        else:
            c.state = saved


def _offset(c) -> int:
    return c.offset if hasattr(c, "offset") else _offset(c[0])  # CacheList: its first


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class _Entry:
    tokens: list[int]
    cache: list


class PromptCacheStore:
    """In-memory caches of recent generations, a few per model. Engine thread only."""

    def __init__(self, per_model: int = 2, disk: DiskPromptCache | None = None):
        self.per_model = per_model
        self._entries: dict[str, list[_Entry]] = {}
        self.disk = disk  # optional persistent tier ("cache prompts"); consulted when enabled
        self._prompt: list[int] = []  # the ids of the last take(): the prompt of the next put()

    def take(self, loaded, ids: list[int]) -> tuple[list, int]:
        """A cache holding the longest cached prefix of ids (at most len(ids) - 1
        positions, so the last prompt token is always computed) and its length."""
        entries = self._entries.get(str(loaded.path), [])
        self._prompt = ids
        best, best_len = None, 0
        for e in entries:
            n = common_prefix(e.tokens, ids)
            if n > best_len:
                best, best_len = e, n
        keep = min(best_len, len(ids) - 1)
        if self.disk is not None and self.disk.enabled:
            found = self._take_from_disk(loaded, ids, keep)
            if found is not None:
                return found
        if best is None or keep <= 0 or not _trimmable(best.cache):
            return new_cache(loaded.model), 0
        entries.remove(best)
        rollback(best.cache, len(best.tokens) - keep)
        return best.cache, keep

    def put(self, loaded, tokens: list[int], cache: list) -> None:
        entries = self._entries.setdefault(str(loaded.path), [])
        entries.insert(0, _Entry(list(tokens), cache))
        del entries[self.per_model :]
        if self.disk is not None and self.disk.enabled and _trimmable(cache):
            n = len(self._prompt)
            prompt_len = n if n and list(tokens[:n]) == list(self._prompt) else None
            self.disk.save(model_key(loaded), list(tokens), cache, prompt_len)

    def _take_from_disk(self, loaded, ids: list[int], in_memory: int) -> tuple[list, int] | None:
        """A cache from disk when it covers more of ids than memory does."""
        entry, n = self.disk.lookup(model_key(loaded), ids)
        keep = min(n, len(ids) - 1)
        if entry is None or keep < self.disk.min_tokens:  # a few tokens: not worth a load
            return None
        if keep <= in_memory:
            self.disk.touch(entry)  # used from memory: still recently used
            return None
        cache = self.disk.load(entry)
        if cache is None or not can_trim_prompt_cache(cache):
            return None
        rollback(cache, len(entry.tokens) - keep)
        return cache, keep

    def drop(self, loaded=None) -> None:
        if loaded is None:
            self._entries.clear()
        else:
            self._entries.pop(str(loaded.path), None)
