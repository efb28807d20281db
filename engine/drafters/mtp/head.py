"""The MTP module itself, one class for every family (see families.py for names).

    x   = eh_proj(concat[enorm(Emb(t_{i+1})), hnorm(h_i)])   # MiMo: [hidden, embedding]
    y   = blocks(x)                                          # own KV cache per block
    out = norm(y);  logits = target's output head(out)

The embedding and output head are the target's (shared, frozen); a head trained on
a reduced draft vocabulary scores only those rows of the target's head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from mlx_lm.models.base import create_attention_mask
from mlx_lm.models.cache import CacheList

from engine.drafters.mtp.families import make_cache


class MTPHead(nn.Module):
    def __init__(
        self,
        hidden_size: int,
        eps: float,
        blocks: list[nn.Module],
        hidden_first: bool,
        family: str,
    ):
        super().__init__()
        self.enorm = nn.RMSNorm(hidden_size, eps=eps)
        self.hnorm = nn.RMSNorm(hidden_size, eps=eps)
        self.eh_proj = nn.Linear(2 * hidden_size, hidden_size, bias=False)
        self.layers = blocks
        self.norm = nn.RMSNorm(hidden_size, eps=eps)
        self.hidden_first = hidden_first
        self.family = family

    def make_cache(self) -> list:
        return [make_cache(self.family) for _ in self.layers]

    def __call__(self, emb: mx.array, hidden: mx.array, cache: list) -> mx.array:
        """(1, T, H) embeddings of t_{i+1} and hiddens h_i -> normed outputs (1, T, H)."""
        e, h = self.enorm(emb), self.hnorm(hidden)
        x = self.eh_proj(mx.concatenate([h, e] if self.hidden_first else [e, h], axis=-1))
        first = cache[0][0] if isinstance(cache[0], CacheList) else cache[0]
        mask = create_attention_mask(x, first, return_array=True)
        for layer, c in zip(self.layers, cache, strict=True):
            x = layer(x, mask, c)
        return self.norm(x)


@dataclass
class HeadBundle:
    """A loaded head and what it borrows from its target; shared by every request."""

    head: MTPHead
    family: str
    label: str  # where the weights came from, for people
    embed: Callable[[mx.array], mx.array]  # the target's token embedding
    logits: Callable[[mx.array], mx.array]  # the target's output head
    draft_ids: mx.array | None = None  # reduced draft vocabulary (full ids), if any
    draft_rows: mx.array | None = None  # the output head's rows for draft_ids (Vd, H)

    def best(self, out: mx.array) -> mx.array:
        """Greedy draft tokens (full vocabulary ids) for head outputs (1, T, H)."""
        if self.draft_rows is not None:
            return mx.take(self.draft_ids, mx.argmax(out @ self.draft_rows.T, axis=-1))
        return mx.argmax(self.logits(out), axis=-1)

    @property
    def weights_nbytes(self) -> int:
        """Memory the head adds to the target's: its own weights and draft rows."""
        own = sum(p.nbytes for _, p in tree_flatten(self.head.parameters()))
        extra = [a for a in (self.draft_ids, self.draft_rows) if a is not None]
        return own + sum(a.nbytes for a in extra)


def cache_nbytes(cache: list) -> int:
    total = 0
    for c in cache:
        for sub in c.caches if isinstance(c, CacheList) else (c,):
            keys = getattr(sub, "keys", None)
            if keys is not None:
                total += keys.nbytes + sub.values.nbytes
    return total
