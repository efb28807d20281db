"""A worker rank: ``python -m engine.distributed.worker`` (ranks 1..N-1).

It mirrors rank 0: each loop it takes the next command from the header
``all_sum`` and runs the same collectives rank 0 runs for it (load a shard, run
a forward on the same cache, drop caches). It samples nothing and sends no
tokens back: only rank 0 has the output head. Parked (between requests), it
waits on its stdin instead, which costs no CPU. It exits on QUIT, when rank 0's
end of stdin closes, or when a collective fails (a rank died).

Started by ``engine.distributed.launch``, with mlx.launch's environment
conventions (``MLX_RANK``, ``MLX_HOSTFILE``); not by mlx.launch itself, which
would start rank 0 too, while here rank 0 is the already running engine.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

from engine.distributed.model import cache_offset
from engine.distributed.probe import local_info
from engine.distributed.protocol import (
    Command,
    Op,
    RankStats,
    decode,
    exchange,
    gather_json,
    share_bytes,
    share_tokens,
    stats_contribution,
)
from engine.distributed.sharding import ShardPlan, lazy_model, local_bytes, make_cache, shard
from engine.distributed.timing import CommTimer
from engine.kv_cache import restore, snapshot

HEARTBEAT_S = 0.25


class Desync(RuntimeError):
    """Rank 0 asked for something this worker's state cannot match."""


@dataclass
class _Model:
    model: nn.Module
    plan: ShardPlan


@dataclass
class _Cache:
    model_id: int
    layers: list
    snap: list | None = None  # recurrent layers: state before the last forward
    snap_offset: int = -1


def say(message: str | dict) -> None:
    """One line to rank 0 (stdout is our channel; nothing else prints there)."""
    line = message if isinstance(message, str) else json.dumps(message)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Worker:
    def __init__(self, group):
        self.group = group
        self.rank, self.size = group.rank(), group.size()
        self.models: dict[int, _Model] = {}
        self.caches: dict[int, _Cache] = {}
        self.timer = CommTimer()
        self._heard = 0.0

    def _contribution(self) -> list[int]:
        stats = RankStats(
            mx.get_active_memory() / 1e9,
            mx.get_peak_memory() / 1e9,
            self.timer.share,
            self.timer.timed_steps,
        )
        return stats_contribution(self.rank, self.size, stats)

    def _next(self) -> Command:
        return decode(exchange(self.group, self._contribution()))

    def run(self) -> None:
        hello = self._next()
        if hello.op != Op.HELLO:
            raise Desync(f"expected HELLO from rank 0, got op {hello.op}")
        parked = True
        while True:
            if parked:
                if not sys.stdin.buffer.readline():
                    return  # rank 0 is gone
                parked = False
            cmd = self._next()
            self._drop(cmd)
            if cmd.op == Op.PARK:
                parked = True
            elif cmd.op == Op.FORWARD:
                self._forward(cmd)
            elif cmd.op == Op.LOAD:
                self._load(cmd)
            elif cmd.op == Op.QUIT:
                return
            elif cmd.op not in (Op.SYNC, Op.HELLO):
                raise Desync(f"unknown op {cmd.op} (is rank 0 running another version?)")
            self._heartbeat()

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._heard >= HEARTBEAT_S:
            self._heard = now
            say("h")

    def _drop(self, cmd: Command) -> None:
        for cid in cmd.drop_caches:
            self.caches.pop(cid, None)
        if cmd.drop_model:
            self.models.pop(cmd.drop_model, None)
            for cid in [c for c, e in self.caches.items() if e.model_id == cmd.drop_model]:
                del self.caches[cid]
            mx.clear_cache()

    def _forward(self, cmd: Command) -> None:
        entry = self.models.get(cmd.model_id)
        if entry is None:
            raise Desync(f"forward on model {cmd.model_id}, which this rank has not loaded")
        cache = self.caches.get(cmd.cache_id)
        if cache is None:
            if cmd.offset:
                raise Desync(f"cache {cmd.cache_id} is unknown here but holds {cmd.offset}")
            cache = _Cache(cmd.model_id, make_cache(entry.model, entry.plan))
            self.caches[cmd.cache_id] = cache
        self._rewind(cache, cmd.offset)
        if cmd.inline:
            tokens = mx.array([list(cmd.tokens)], dtype=mx.int32)
        else:
            tokens = share_tokens(self.group, None, cmd.n_tokens)
        if not can_trim_prompt_cache(cache.layers):
            cache.snap, cache.snap_offset = snapshot(cache.layers), cmd.offset
        with self.timer.step(cmd.timed) as done:
            hidden = entry.model.model(tokens, cache=cache.layers)
            mx.eval(hidden)
            done()

    def _rewind(self, cache: _Cache, offset: int) -> None:
        """Bring the cache to rank 0's offset: trim, or restore before a replay."""
        have = cache_offset(cache.layers)
        if have == offset:
            return
        if have > offset and can_trim_prompt_cache(cache.layers):
            trim_prompt_cache(cache.layers, have - offset)
        elif have > offset and cache.snap is not None and cache.snap_offset == offset:
            restore(cache.layers, cache.snap)
            cache.snap = None
        else:
            raise Desync(f"cache at {have} positions cannot follow rank 0's {offset}")

    def _load(self, cmd: Command) -> None:
        payload = json.loads(share_bytes(self.group, None, cmd.payload))
        status: dict = {"ok": True}
        try:
            path = _model_path(payload)
            model = lazy_model(path)
            plan = ShardPlan.from_dict(payload["plan"], self.rank, self.size)
            shard(model, plan, self.group)
            self.models[cmd.model_id] = _Model(model, plan)
            status["memory_gb"] = local_bytes(model) / 1e9
        except Exception as e:  # reported to rank 0, which names this rank
            status = {"ok": False, "error": f"{type(e).__name__}: {e}"[:1000]}
        gather_json(self.group, status)


def _model_path(payload: dict) -> Path:
    """The same folder as rank 0 when this host has it, else its own copy by name."""
    from engine.library import resolve_model
    from engine.model_loader import _check_weights_present

    path = Path(payload["path"])
    if not (path / "config.json").is_file():
        path = resolve_model(payload["name"])
    _check_weights_present(path)
    return path


def main() -> int:
    rank = int(os.environ.get("MLX_RANK", "-1"))
    try:
        say({"event": "ready", "rank": rank, "pid": os.getpid(), **local_info()})
        backend = os.environ.get("LOOKAHEAD_BACKEND", "ring")
        group = mx.distributed.init(backend=backend, strict=True)
        if os.environ.get("LOOKAHEAD_OWN_FILES") == "1":  # temp files the launcher wrote
            for key in ("MLX_HOSTFILE", "MLX_IBV_DEVICES"):
                if os.environ.get(key):
                    Path(os.environ[key]).unlink(missing_ok=True)
        Worker(group).run()
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        traceback.print_exc()
        say({"event": "error", "rank": rank, "message": f"{type(e).__name__}: {e}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
