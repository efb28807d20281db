"""Rank 0's side of the group: workers, the step protocol, and failure handling.

Lifecycle: ``start`` launches ranks 1..N-1, checks each one runs the same
versions, joins the MLX group (rank 0 is this process) and parks the workers.
``command`` runs one header exchange (waking parked workers first); ``park``
ends a burst of work. A monitor thread watches every worker: one that exits, or
a group that makes no progress for ``timeout_s``, marks the cluster failed and
kills all workers, so a collective blocked on a dead or hung rank fails at once
instead of hanging the engine thread. MLX's ring group cannot be rebuilt inside a
process, so a failed cluster stays failed: models load on this machine alone
from then on (``engine.distributed.service``).

Engine thread, except ``fail``/``drop_*`` (any thread) and the monitor.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import mlx.core as mx

from engine.distributed.hostfile import HostConfig, pick_ports, ring_hostfile
from engine.distributed.launch import WorkerProcess, backend_env, start_guard, stop_guard
from engine.distributed.probe import local_info, version_mismatch
from engine.distributed.protocol import (
    DROP_SLOTS,
    Command,
    Op,
    RankStats,
    decode_stats,
    encode,
    exchange,
    share_bytes,
    share_tokens,
)
from engine.errors import EngineError

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 90.0  # ssh, interpreter start and imports on every host
INIT_GUARD_S = 30.0
_MONITOR_S = 0.25


_joined: list[Cluster] = []  # MLX keeps one group per process, forever


def can_link_hosts() -> bool:
    """Whether this process can still link hosts: MLX creates its distributed group
    once per process and cannot rebuild it, so new hosts (or a group lost to a dead
    rank) need the process to restart."""
    return not _joined


class RankLost(EngineError):
    """A rank died or stopped responding; the message says which and what now."""


class HostError(EngineError):
    """The hosts could not be linked (unreachable, other version, no backend)."""


class Cluster:
    def __init__(self, config: HostConfig):
        self.config = config
        self.size = config.size
        self.group = None
        self.workers: list[WorkerProcess] = []
        self.pending: mx.array | None = None  # last forward's output, not yet evaluated
        self.failure: str | None = None
        self.awake = False
        self._values: list[int] | None = None  # last header: the workers' stats
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._progress = time.monotonic()
        self._cache_drops: deque[int] = deque()
        self._model_drops: deque[int] = deque()
        self._ids = 0
        self._step = 0
        self._tmp = Path(tempfile.mkdtemp(prefix="lookahead-ranks-"))

    # ------------------------------------------------------------ state

    @property
    def dead(self) -> bool:
        return self.failure is not None

    @property
    def started(self) -> bool:
        return self.group is not None

    def new_cache_id(self) -> int:
        self._ids += 1
        return self._ids

    def drop_cache(self, cache_id: int) -> None:
        """A cache rank 0 let go (weakref finalizer, any thread)."""
        self._cache_drops.append(cache_id)

    def drop_model(self, model_id: int) -> None:
        self._model_drops.append(model_id)

    def worker_stats(self) -> list[RankStats]:
        if self._values is None:
            return [RankStats(0.0, 0.0, 0.0, 0) for _ in range(1, self.size)]
        return [decode_stats(self._values, r) for r in range(1, self.size)]

    # ------------------------------------------------------------ start

    def start(self, progress=lambda stage, fraction: None) -> None:
        """Launch the workers and join the group (once; engine thread)."""
        if self.started:
            return
        if self.dead:
            raise RankLost(self.failure)
        if _joined:
            raise HostError(
                "this process already linked hosts once and MLX cannot link it again; "
                "restart lookahead to use other hosts"
            )
        progress(f"linking {self.size} hosts", 0.0)
        ports = pick_ports(self.config)
        ring = ring_hostfile(self.config, ports)
        self._progress = time.monotonic()
        for rank in range(1, self.size):
            env, files = backend_env(self.config, rank, ports, ring)
            self.workers.append(WorkerProcess(self.config, rank, env, files, self._heard))
        try:
            self._await_ready()
            self._join(ports, ring)
        except BaseException:
            for w in self.workers:
                w.kill()
            self.workers = []
            raise
        threading.Thread(target=self._monitor, daemon=True, name="lookahead-ranks").start()
        progress(f"linked {self.size} hosts", 0.05)

    def _await_ready(self) -> None:
        here = local_info()
        deadline = time.monotonic() + READY_TIMEOUT_S
        for w in self.workers:
            w.ready.wait(max(0.0, deadline - time.monotonic()))
            if w.exited.is_set() or w.info is None:
                why = w.last_words() or w.exit_reason()
                if not w.exited.is_set():
                    why = f"no answer within {READY_TIMEOUT_S:.0f} s"
                raise HostError(f"{w.describe} did not start: {why}")
            if reason := version_mismatch(here, w.info):
                raise HostError(f"{w.describe} {reason}")
            if self.config.backend.split("-")[0] not in w.info.get("backends", ()):
                raise HostError(f"{w.describe}: its mlx has no {self.config.backend} backend")

    def _join(self, ports: list[int], ring: str) -> None:
        """Join the group as rank 0, then prove it works with one exchange."""
        env, files = backend_env(self.config, 0, ports, ring)
        for key, content in files.items():
            path = self._tmp / key.lower()
            path.write_text(content)
            env[key] = str(path)
        gone = [w.describe for w in self.workers if w.exited.is_set()]
        if gone:  # init would wait for them forever
            raise HostError(f"{', '.join(gone)} stopped before joining the group")
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        guard = None
        if self.config.backend == "ring":
            guard = start_guard(self.config.hosts[0].ip, ports[0], INIT_GUARD_S)
        try:
            group = mx.distributed.init(backend=env["LOOKAHEAD_BACKEND"], strict=True)
            _joined.append(self)
        except RuntimeError as e:
            gone = [f"{w.describe} {w.exit_reason()}" for w in self.workers if w.exited.is_set()]
            raise HostError(f"could not link the hosts: {'; '.join(gone) or e}") from None
        finally:
            if guard is not None:
                stop_guard(guard)
            for k, v in saved.items():  # the backend read them; keep our env clean
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        if group.size() != self.size or group.rank() != 0:
            raise HostError(f"joined a group of {group.size()} as rank {group.rank()}")
        try:
            exchange(group, encode(Command(Op.HELLO), self.size))
        except RuntimeError as e:
            late = [w.describe for w in self.workers if w.exited.is_set()]
            self.failure = f"could not link the hosts ({', '.join(late) or e})"
            raise HostError(self.failure) from None
        self.group = group

    # ------------------------------------------------------------ steps

    def command(
        self, cmd: Command, tokens: mx.array | None = None, payload: bytes | None = None
    ) -> None:
        """Send one command to every worker (blocks until all have it)."""
        if self.dead:
            raise RankLost(self.failure)
        if not self.awake:
            for w in self.workers:
                w.wake()
            self.awake = True
        drops = []
        while self._cache_drops and len(drops) < DROP_SLOTS:
            drops.append(self._cache_drops.popleft())
        cmd.drop_caches = tuple(drops)
        if not cmd.drop_model and self._model_drops:
            cmd.drop_model = self._model_drops.popleft()
        self._step += 1
        cmd.step = self._step
        try:
            if cmd.n_tokens and cmd.inline:
                cmd.tokens = tuple(tokens.reshape(-1).tolist())
            self._values = exchange(self.group, encode(cmd, self.size))
            if cmd.n_tokens and not cmd.inline:
                share_tokens(self.group, tokens, cmd.n_tokens)
            if payload is not None:
                share_bytes(self.group, payload, len(payload))
        except RuntimeError as e:
            raise self.lost(e) from None
        self._progress = time.monotonic()

    def finish_step(self, *also: mx.array) -> None:
        """Evaluate the last forward's output, so every collective of that step has
        run on rank 0 before the next command (the caller may have evaluated only
        part of it, such as the cache); and ``also``, the next step's inputs."""
        pending, self.pending = self.pending, None
        todo = [a for a in (pending, *also) if a is not None]
        if not todo:
            return
        try:
            mx.eval(*todo)
        except RuntimeError as e:
            raise self.lost(e) from None

    def park(self) -> None:
        """Let the workers wait idle (on their stdin) until the next command."""
        if not self.started or self.dead or not self.awake:
            return
        try:
            self.finish_step()
            self.command(Command(Op.PARK))
            self.awake = False
        except EngineError as e:
            log.warning("parking the workers failed: %s", e)

    def sync(self) -> None:
        """Deliver pending drops now (frees the workers' memory after an unload)."""
        if self.started and not self.dead and (self._cache_drops or self._model_drops):
            self.finish_step()
            while self._cache_drops or self._model_drops:
                self.command(Command(Op.SYNC))

    def close(self) -> None:
        """Tell the workers to exit and wait for them (engine thread)."""
        self._closing.set()
        if self.started and not self.dead:
            try:
                self.finish_step()
                self.command(Command(Op.QUIT))
            except EngineError as e:
                log.warning("stopping the workers failed: %s", e)
        for w in self.workers:
            w.close_stdin()
        deadline = time.monotonic() + 5.0
        for w in self.workers:
            if not w.exited.wait(max(0.0, deadline - time.monotonic())):
                w.kill()

    # ------------------------------------------------------------ failure

    def fail(self, reason: str) -> None:
        """Mark the group lost and stop every worker (any thread; first reason wins)."""
        with self._lock:
            if self.failure is not None:
                return
            self.failure = reason
        log.error("distributed run failed: %s", reason)
        for w in self.workers:
            w.kill()

    def lost(self, error: BaseException) -> RankLost:
        """The error to report for a collective that failed on rank 0."""
        # The ring backend notices a dead peer about as fast as the monitor does:
        # give the monitor a moment to name the rank.
        deadline = time.monotonic() + 2.0
        while not self.dead and time.monotonic() < deadline:
            time.sleep(0.05)
        self.fail(f"the connection to a rank was lost ({error})")
        return RankLost(self.failure_message())

    def failure_message(self) -> str:
        return (
            f"distributed run failed: {self.failure}. The request was stopped and the "
            "model was unloaded from the linked hosts; the next request runs on this "
            "machine alone (restart lookahead to link the hosts again)"
        )

    def _heard(self) -> None:
        self._progress = time.monotonic()

    def _monitor(self) -> None:
        while not self._closing.wait(_MONITOR_S) and not self.dead:
            for w in self.workers:
                if w.exited.is_set():
                    words = w.last_words()
                    detail = f"; it said: {words}" if words else ""
                    self.fail(f"{w.describe} stopped ({w.exit_reason()}{detail})")
                    break
            else:
                idle = time.monotonic() - self._progress
                if self.awake and idle > self.config.timeout_s:
                    self.fail(
                        f"the linked hosts made no progress for {idle:.0f} s ({self._blame()})"
                    )

    def _blame(self) -> str:
        """Which rank a stall is most likely on (the others wait in its collectives)."""
        stopped = [w.describe for w in self.workers if w.is_stopped()]
        if stopped:
            return f"{', '.join(stopped)} {'is' if len(stopped) == 1 else 'are'} stopped"
        quiet = max(self.workers, key=lambda w: time.monotonic() - w.last_heard)
        return f"{quiet.describe} last heard from {time.monotonic() - quiet.last_heard:.0f} s ago"
