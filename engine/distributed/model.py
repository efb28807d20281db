"""Rank 0's view of a model spread over the group, shaped like any mlx-lm model.

``install`` swaps the model's body (``model.model``) for a ``DistributedBody``.
Everything in the engine reaches the layers through that body: ``model(x, cache)``,
``target.forward``/``prefill_chunk`` and MTP's ``split_model``. So Generation,
prompt caches and every drafter work unchanged, and the output head, sampling and
drafters run on rank 0 only.

Before each forward the body sends the step's command (token ids, which cache, how
many positions that cache holds) to the workers, which mirror the forward on their
own caches. Rank 0's caches are ``RankCache`` lists with an id; a rollback is just
a smaller offset in the next command, and a cache that rank 0 lets go is dropped on
the workers with the next command. Engine thread only.
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING

import mlx.core as mx
import mlx.nn as nn

from engine.distributed.protocol import Command, Op
from engine.distributed.sharding import ShardPlan, body_owner, make_cache
from engine.distributed.timing import TIMED_EVERY, CommTimer
from engine.errors import EngineError

if TYPE_CHECKING:
    from engine.distributed.cluster import Cluster


class RankCache(list):
    """Rank 0's layer caches plus the id the workers know their copies by."""

    cache_id: int = 0


def cache_offset(cache: list) -> int:
    """Positions the cache holds (its first layer that counts them)."""
    for c in cache:
        if hasattr(c, "offset"):
            return int(c.offset)
        if hasattr(c, "caches"):  # CacheList
            return cache_offset(list(c.caches))
    return 0


class ModelLink:
    """What rank 0 knows about one distributed model. Engine thread only."""

    def __init__(self, cluster: Cluster, model_id: int, plan: ShardPlan):
        self.cluster = cluster
        self.model_id = model_id
        self.plan = plan
        self.timer = CommTimer()
        self._steps = 0

    def make_cache(self, model: nn.Module) -> RankCache:
        cache = RankCache(make_cache(model, self.plan))
        cache.cache_id = self.cluster.new_cache_id()
        weakref.finalize(cache, self.cluster.drop_cache, cache.cache_id)
        return cache

    def forward(self, body: nn.Module, inputs: mx.array, cache) -> mx.array:
        if not isinstance(cache, RankCache):
            raise EngineError("a distributed model needs its own caches (made by make_cache)")
        if inputs.ndim != 2 or inputs.shape[0] != 1:
            raise EngineError("a distributed model runs one sequence at a time")
        self._steps += 1
        timed = self._steps % TIMED_EVERY == 1
        self.cluster.finish_step(inputs)  # inputs too: their compute is not communication
        command = Command(
            Op.FORWARD,
            model_id=self.model_id,
            cache_id=cache.cache_id,
            offset=cache_offset(cache),
            n_tokens=int(inputs.shape[1]),
            timed=timed,
        )
        t0 = time.perf_counter()
        self.cluster.command(command, tokens=inputs)
        with self.timer.step(timed, since=t0, comm_s=time.perf_counter() - t0) as done:
            try:
                hidden = body(inputs, cache=cache)
            except Exception as e:
                # The workers are already inside this step: they cannot be resynced.
                self.cluster.fail(f"rank 0 could not run a step ({type(e).__name__}: {e})")
                raise
            if timed:
                mx.eval(hidden)
            done()
        self.cluster.pending = hidden
        return hidden

    def rank_stats(self) -> dict:
        """GenerationStats fields for this model (rank 0 first)."""
        mem = [mx.get_active_memory() / 1e9]
        shares = [self.timer.share]
        for stats in self.cluster.worker_stats():
            mem.append(stats.memory_gb)
            shares.append(stats.comm_share)
        return {
            "ranks": self.plan.size,
            "parallel": self.plan.mode,
            "rank_memory_gb": tuple(round(m, 4) for m in mem),
            "rank_comm_share": tuple(round(s, 4) for s in shares),
            "comm_share": round(sum(shares) / len(shares), 4),
        }


class DistributedBody(nn.Module):
    """Stands where the model body was; runs each forward on every rank."""

    def __init__(self, body: nn.Module, link: ModelLink):
        super().__init__()
        self.body = body
        object.__setattr__(self, "_link", link)

    def __getattr__(self, key: str):
        # embed_tokens, layers, norm... stay reachable (MTP shares the embedding).
        if key in self:
            return self[key]
        body = self.get("body")
        if body is None:
            raise AttributeError(key)
        return getattr(body, key)

    def __call__(self, inputs: mx.array, cache=None, *args, **kwargs) -> mx.array:
        if any(a is not None for a in (*args, *kwargs.values())):
            raise EngineError("a distributed model takes token ids only")
        return self._link.forward(self["body"], inputs, cache)


def install(model: nn.Module, link: ModelLink) -> nn.Module:
    """Make rank 0's part of a sharded model act as the whole model."""
    owner = body_owner(model)
    owner.model = DistributedBody(owner.model, link)
    # Plain instance attributes: mlx-lm's make_prompt_cache calls make_cache, and
    # Generation reads rank_stats. A weak reference keeps the model collectable
    # without the cycle collector (dropping it frees the workers' part too).
    ref = weakref.ref(model)
    object.__setattr__(model, "make_cache", lambda: link.make_cache(ref()))
    object.__setattr__(model, "rank_stats", link.rank_stats)
    return model
