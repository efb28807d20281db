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
    PromptProgress,
    TokenEvent,
    Unloaded,
    UnloadModel,
)
from engine.server.errors import ApiError
from engine.service import EngineService

Command = Generate | LoadModel | UnloadModel
_CLOSED = object()
KEEPALIVE = object()  # yielded by ``keepalive`` when a stream has been quiet too long
QUEUED_AFTER_S = 0.2  # no sign of the engine on a request this long: it is queued
KEEPALIVE_S = 5.0  # an SSE comment this often while nothing else is sent


class EngineRun:
    """One submitted command. Iterate for its events (on the loop that opened it);
    ``close()`` is idempotent and must be called on that loop too."""

    def __init__(self, bridge: EngineBridge, command: Command):
        self.bridge = bridge
        self.request_id = command.request_id
        self.done = False
        self.queued_behind = len(bridge._active) - 1  # requests of ours ahead of this one
        self.waiting: asyncio.Task | None = None  # a read first_output left pending
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


async def first_output(run: EngineRun, receive, queued_after: float | None = None) -> list:
    """Events up to the engine's verdict on the request (it announces the model once
    the prompt is rendered, fits and the decoder is ready) or its end, so a stream
    refused at once (an incompatible decoder, a template error, a prompt too long)
    gets an HTTP error status instead of a 200 carrying an error. Cancels the run if
    the client hangs up meanwhile.

    ``queued_after``: stop waiting (returning what came so far, maybe nothing) when
    the engine has not touched the request within that many seconds, or at once when
    requests of ours are ahead of it: a queued client gets its reply headers now."""
    watcher = asyncio.create_task(cancel_on_disconnect(receive, run))
    events = []
    patience = None
    if queued_after is not None:
        patience = 0.0 if run.queued_behind > 0 else queued_after
    pending: asyncio.Task | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(run.__anext__())
            wait = patience if not events else None
            done, _ = await asyncio.wait({pending}, timeout=wait)
            if not done:
                break  # still queued: the task stays, picked up by ``replay``
            try:
                event = pending.result()
            except StopAsyncIteration:
                pending = None
                break
            pending = None
            events.append(event)
            if isinstance(event, (ModelLoaded, TokenEvent, Finished, Failed)):
                break
    finally:
        watcher.cancel()
    run.waiting = pending
    return events


async def replay(events: list, run: EngineRun) -> AsyncIterator:
    """``events`` already read from ``run``, then the rest of it (with the read
    ``first_output`` left waiting, if any)."""
    for event in events:
        yield event
    pending, run.waiting = run.waiting, None
    if pending is not None:
        try:
            yield await pending
        except StopAsyncIteration:
            return
    async for event in run:
        yield event


async def keepalive(events: AsyncIterator, every: float = KEEPALIVE_S) -> AsyncIterator:
    """``events``, with KEEPALIVE whenever nothing a client sees (a token, the end)
    has passed for ``every`` seconds: queued, loading or in a long prefill."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    iterator = events.__aiter__()
    pending: asyncio.Task | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=max(0.0, last + every - loop.time()))
            if not done:
                last = loop.time()
                yield KEEPALIVE
                continue
            task, pending = pending, None
            try:
                event = task.result()
            except StopAsyncIteration:
                return
            if isinstance(event, (TokenEvent, Finished, Failed)):
                last = loop.time()
            elif isinstance(event, PromptProgress) and loop.time() - last >= every:
                last = loop.time()
                yield KEEPALIVE
            yield event
    finally:
        if pending is not None:
            pending.cancel()
