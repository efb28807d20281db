"""KV caches: rollback after rejected drafts, and reuse across requests.

``PromptCacheStore`` keeps the caches of recent generations per model, so a new
request that shares a prefix with an earlier one (a replay, an edited message, a
coding harness resending its system prompt) computes only the new suffix.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache


def new_cache(model) -> list:
    return make_prompt_cache(model)


def rollback(cache: list, n: int) -> None:
    """Drop the last n positions from every layer's cache."""
    if n <= 0:
        return
    if not can_trim_prompt_cache(cache):
        raise RuntimeError("this model's cache cannot be rolled back")
    trimmed = trim_prompt_cache(cache, n)
    if trimmed != n:
        raise RuntimeError(f"cache rollback removed {trimmed} of {n} positions")


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

    def __init__(self, per_model: int = 2):
        self.per_model = per_model
        self._entries: dict[str, list[_Entry]] = {}

    def take(self, loaded, ids: list[int]) -> tuple[list, int]:
        """A cache holding the longest cached prefix of ids (at most len(ids) - 1
        positions, so the last prompt token is always computed) and its length."""
        entries = self._entries.get(str(loaded.path), [])
        best, best_len = None, 0
        for e in entries:
            n = common_prefix(e.tokens, ids)
            if n > best_len:
                best, best_len = e, n
        keep = min(best_len, len(ids) - 1)
        if best is None or keep <= 0 or not can_trim_prompt_cache(best.cache):
            return new_cache(loaded.model), 0
        entries.remove(best)
        rollback(best.cache, len(best.tokens) - keep)
        return best.cache, keep

    def put(self, loaded, tokens: list[int], cache: list) -> None:
        entries = self._entries.setdefault(str(loaded.path), [])
        entries.insert(0, _Entry(list(tokens), cache))
        del entries[self.per_model :]

    def drop(self, loaded=None) -> None:
        if loaded is None:
            self._entries.clear()
        else:
            self._entries.pop(str(loaded.path), None)
