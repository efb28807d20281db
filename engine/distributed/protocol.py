"""The per-step command every rank agrees on before running a forward pass.

Every rank must issue the same collectives in the same order, so rank 0 (the
engine) sends each step's command to the workers with an ``all_sum`` over a fixed
int32 header: rank 0 fills the command slots, every worker fills only its own
stats slots, and the sum hands each rank the command plus everyone's stats. Short
token runs (decode and verify steps) travel inside the header; longer ones (prompt
chunks) follow in a second ``all_sum``. Engine thread (rank 0) / worker main thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum

import mlx.core as mx

PROTOCOL = 1  # bump when the header layout or the op meanings change
INLINE_TOKENS = 32
_FIXED = 16
_STATS = 4  # per rank: active KB, peak KB, comm share (ppm), timed steps seen
DROP_SLOTS = 4  # cache drops carried per header; more wait for the next one
TEXT_SLOT = 2048  # bytes per rank in gather_text


class Op(IntEnum):
    PARK = 1  # stop listening for collectives; wait for a wake-up on stdin
    FORWARD = 2
    LOAD = 3  # a JSON payload follows
    QUIT = 4
    SYNC = 5  # only apply the drops carried in the header
    HELLO = 6  # first exchange after init: proves the group works


@dataclass
class Command:
    op: int
    model_id: int = 0
    cache_id: int = 0
    offset: int = 0  # positions rank 0's cache holds before this forward
    n_tokens: int = 0
    timed: bool = False  # measure time inside collectives on this step
    payload: int = 0  # bytes of the LOAD payload
    drop_model: int = 0
    drop_caches: tuple[int, ...] = ()
    step: int = 0
    tokens: tuple[int, ...] = ()  # inline when n_tokens <= INLINE_TOKENS

    @property
    def inline(self) -> bool:
        return self.n_tokens <= INLINE_TOKENS


@dataclass(frozen=True)
class RankStats:
    memory_gb: float
    peak_memory_gb: float
    comm_share: float
    timed_steps: int


def header_size(size: int) -> int:
    return _FIXED + INLINE_TOKENS + _STATS * size


def encode(cmd: Command, size: int) -> list[int]:
    """Rank 0's contribution: the command, zero stats."""
    v = [0] * header_size(size)
    drops = list(cmd.drop_caches)[:DROP_SLOTS]
    v[0:8] = [
        int(cmd.op),
        cmd.model_id,
        cmd.cache_id,
        cmd.offset,
        cmd.n_tokens,
        int(cmd.timed),
        cmd.payload,
        cmd.drop_model,
    ]
    v[8 : 8 + len(drops)] = drops
    v[12] = cmd.step % (1 << 30)
    if cmd.n_tokens and cmd.inline:
        v[_FIXED : _FIXED + cmd.n_tokens] = list(cmd.tokens)
    return v


def stats_contribution(rank: int, size: int, stats: RankStats) -> list[int]:
    """A worker's contribution: its stats slots only."""
    v = [0] * header_size(size)
    base = _FIXED + INLINE_TOKENS + _STATS * rank
    v[base : base + _STATS] = [
        round(stats.memory_gb * 1e6),
        round(stats.peak_memory_gb * 1e6),
        round(stats.comm_share * 1_000_000),
        stats.timed_steps,
    ]
    return v


def decode(values: list[int]) -> Command:
    n = values[4]
    return Command(
        op=values[0],
        model_id=values[1],
        cache_id=values[2],
        offset=values[3],
        n_tokens=n,
        timed=bool(values[5]),
        payload=values[6],
        drop_model=values[7],
        drop_caches=tuple(c for c in values[8:12] if c),
        step=values[12],
        tokens=tuple(values[_FIXED : _FIXED + n]) if n <= INLINE_TOKENS else (),
    )


def decode_stats(values: list[int], rank: int) -> RankStats:
    base = _FIXED + INLINE_TOKENS + _STATS * rank
    mem, peak, share, timed = values[base : base + _STATS]
    return RankStats(mem / 1e6, peak / 1e6, share / 1_000_000, timed)


def exchange(group, contribution: list[int]) -> list[int]:
    """The header all_sum, evaluated now: every rank leaves with the same list."""
    total = mx.distributed.all_sum(mx.array(contribution, dtype=mx.int32), group=group)
    return total.tolist()


def share_tokens(group, tokens: mx.array | None, n: int) -> mx.array:
    """Rank 0's (1, n) token ids on every rank (rank 0 passes them, workers None)."""
    local = tokens.reshape(-1).astype(mx.int32) if tokens is not None else mx.zeros((n,), mx.int32)
    out = mx.distributed.all_sum(local, group=group)
    mx.eval(out)
    return out.reshape(1, n)


def share_bytes(group, data: bytes | None, n: int) -> bytes:
    """Rank 0's payload on every rank (workers pass None and the length)."""
    if data is not None:
        local = mx.array(list(data), dtype=mx.int32)
    else:
        local = mx.zeros((n,), mx.int32)
    out = mx.distributed.all_sum(local, group=group).tolist()
    return bytes(out)


def gather_text(group, text: str) -> list[str]:
    """Every rank's text (UTF-8, up to TEXT_SLOT bytes), in rank order, on every rank."""
    rank, size = group.rank(), group.size()
    data = text.encode()[:TEXT_SLOT]
    v = [0] * (TEXT_SLOT * size)
    v[rank * TEXT_SLOT : rank * TEXT_SLOT + len(data)] = list(data)
    out = mx.distributed.all_sum(mx.array(v, dtype=mx.int32), group=group).tolist()
    texts = []
    for r in range(size):
        chunk = bytes(out[r * TEXT_SLOT : (r + 1) * TEXT_SLOT]).rstrip(b"\0")
        texts.append(chunk.decode(errors="replace"))
    return texts


def gather_json(group, value: dict) -> list[dict]:
    return [json.loads(t) if t else {} for t in gather_text(group, json.dumps(value))]
