"""From the engine thread to the server's event loop.

``EngineBridge.open`` submits a command and returns an ``EngineRun``: an async
iterator over that request's events, fed from the engine thread through
``call_soon_threadsafe`` so handlers never block the loop. Closing a run before its
last event (a client that went away, a server stopping) cancels the request: a
queued one never starts, a running one ends at its next step. The engine runs
requests one at a time in arrival order, so concurrent clients are served first
come, first served; ``max_pending`` bounds how many may wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

from engine.events import (
    Failed,
    Finished,
    Generate,
    LoadModel,
    ModelLoaded,
    TokenEvent,
    Unloaded,
    UnloadModel,
)
from engine.server.errors import ApiError
from engine.service import EngineService

Command = Generate | LoadModel | UnloadModel
_CLOSED = object()


class EngineRun:
    """One submitted command. Iterate for its events (on the loop that opened it);
    ``close()`` is idempotent and must be called on that loop too."""

    def __init__(self, bridge: EngineBridge, command: Command):
        self.bridge = bridge
        self.request_id = command.request_id
        self.done = False
        self._closed = False
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._terminal: tuple[type, ...] = (Finished, Failed)
        if isinstance(command, LoadModel):
            self._terminal = (ModelLoaded, Failed)
        elif isinstance(command, UnloadModel):
            self._terminal = (Unloaded, Failed)
        loop = asyncio.get_running_loop()
        rid = self.request_id

        def on_event(event) -> None:  # engine thread
            if event.request_id == rid:
                with contextlib.suppress(RuntimeError):  # the loop closed: nobody listens
                    loop.call_soon_threadsafe(self._inbox.put_nowait, event)

        self._unsubscribe = bridge.service.subscribe(on_event)
        bridge.service.submit(command)

    def __aiter__(self) -> EngineRun:
        return self

    async def __anext__(self):
        if self.done or self._closed:
            raise StopAsyncIteration
        event = await self._inbox.get()
        if event is _CLOSED:
            raise StopAsyncIteration
        if isinstance(event, self._terminal):
            self.done = True
        return event

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inbox.put_nowait(_CLOSED)  # wakes a reader waiting for the next event
        self._unsubscribe()
        if not self.done:
            self.bridge.service.cancel(self.request_id)
        self.bridge._release(self.request_id)


class EngineBridge:
    def __init__(self, service: EngineService, max_pending: int = 64):
        self.service = service
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._active: set[str] = set()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._active)

    def open(self, command: Command) -> EngineRun:
        """Submit ``command`` (on the event loop). Raises ApiError when the engine is
        down or too many requests are waiting."""
        if not self.service.alive:
            raise ApiError(503, "the engine is not running")
        with self._lock:
            if len(self._active) >= self.max_pending:
                raise ApiError(
                    429,
                    f"{len(self._active)} requests are already waiting; try again shortly",
                    code="too_many_requests",
                    headers={"Retry-After": "1"},
                )
            self._active.add(command.request_id)
        try:
            return EngineRun(self, command)
        except BaseException:
            self._release(command.request_id)
            raise

    def _release(self, rid: str) -> None:
        with self._lock:
            self._active.discard(rid)

    def cancel_all(self) -> None:
        """Cancel every request this server submitted (any thread)."""
        with self._lock:
            active = list(self._active)
        for rid in active:
            self.service.cancel(rid)


async def cancel_on_disconnect(receive, run: EngineRun) -> None:
    """Wait for the client to hang up, then cancel the run. For non-streaming replies,
    whose handlers would otherwise not notice until the generation ends."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            run.close()
            return


async def collect(run: EngineRun, receive) -> list:
    """All of a run's events, cancelling it if the client disconnects first."""
    watcher = asyncio.create_task(cancel_on_disconnect(receive, run))
    events = []
    try:
        async for event in run:
            events.append(event)
    finally:
        watcher.cancel()
        run.close()
    return events


async def first_output(run: EngineRun, receive) -> list:
    """Events up to the first token or the end, so a stream that fails at once
    (an incompatible decoder, a template error) gets an HTTP error status instead
    of a 200 carrying an error. Cancels the run if the client hangs up meanwhile."""
    watcher = asyncio.create_task(cancel_on_disconnect(receive, run))
    events = []
    try:
        async for event in run:
            events.append(event)
            if isinstance(event, (TokenEvent, Finished, Failed)):
                break
    finally:
        watcher.cancel()
    return events


async def replay(events: list, run: EngineRun) -> AsyncIterator:
    """``events`` already read from ``run``, then the rest of it."""
    for event in events:
        yield event
    async for event in run:
        yield event
