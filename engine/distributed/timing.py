"""How much of a step each rank spends inside collectives.

MLX runs a step as one lazy graph, so the time of an ``all_sum`` buried in it
cannot be read off directly. On sampled steps (every ``TIMED_EVERY``-th forward,
flagged in the step's command so all ranks sample the same steps) the collectives
are made to evaluate their input first (compute) and then themselves
(communication, including waiting for slower ranks). Other steps run untouched.
The share reported is comm time / step time over the last ``WINDOW`` sampled steps.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import mlx.core as mx

TIMED_EVERY = 8
WINDOW = 16
_COLLECTIVES = ("all_sum", "all_gather", "all_max", "all_min", "send", "recv", "recv_like")


class CommTimer:
    """One rank's record of sampled steps. Engine thread (rank 0) / worker thread."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=WINDOW)
        self.timed_steps = 0
        self._comm = 0.0

    @property
    def share(self) -> float:
        step = sum(s for _, s in self._samples)
        return min(1.0, sum(c for c, _ in self._samples) / step) if step > 0 else 0.0

    def add(self, comm_s: float, step_s: float) -> None:
        self._samples.append((comm_s, step_s))
        self.timed_steps += 1

    def add_comm(self, seconds: float) -> None:
        self._comm += seconds

    @contextmanager
    def step(
        self, timed: bool, since: float | None = None, comm_s: float = 0.0
    ) -> Iterator[Callable[[], None]]:
        """Time one step when ``timed``; the yielded ``done()`` must be called once the
        step's outputs are evaluated (the timer cannot see when that happens).
        ``since``/``comm_s``: the step began earlier, with that much communication
        (rank 0's command header)."""
        if not timed:
            yield lambda: None
            return
        start = since if since is not None else time.perf_counter()
        self._comm = comm_s
        finished: list[float] = []
        with _timed_collectives(self):
            yield lambda: finished.append(time.perf_counter())
        end = finished[0] if finished else time.perf_counter()
        self.add(self._comm, end - start)
        self._comm = 0.0


@contextmanager
def _timed_collectives(timer: CommTimer) -> Iterator[None]:
    # Patching the module attributes reaches every caller (mlx.nn's sharded layers,
    # mlx-lm's MoE blocks, our pipeline stages) without touching them; only the
    # thread that owns MLX runs collectives, and the originals come back at exit.
    originals = {name: getattr(mx.distributed, name) for name in _COLLECTIVES}

    def wrap(fn):
        def timed(*args, **kwargs):
            first = args[0] if args else None
            if isinstance(first, mx.array):
                mx.eval(first)  # compute up to here is not communication
            out = fn(*args, **kwargs)
            t0 = time.perf_counter()
            mx.eval(out)
            timer.add_comm(time.perf_counter() - t0)
            return out

        return timed

    try:
        for name, fn in originals.items():
            setattr(mx.distributed, name, wrap(fn))
        yield
    finally:
        for name, fn in originals.items():
            setattr(mx.distributed, name, fn)
