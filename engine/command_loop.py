"""The command machinery every engine shares: one worker thread, commands queued in
arrival order, events fanned out to subscribers, cancellation by request id.

``EngineService`` (MLX) and the app's scripted fake engine (app/dev/fake_engine.py)
both subclass ``CommandLoop`` and supply ``handle`` (run one command on the worker
thread, emitting its events); tests/test_engine_contract.py runs one scripted session
against both. Any thread may call the public methods; ``handle`` and the hooks run on
the worker thread only.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Protocol

from engine.errors import EngineError
from engine.events import (
    TERMINAL_EVENTS,
    Cancel,
    Command,
    Event,
    Failed,
    Finished,
    Generate,
    GenerationStats,
    LoadModel,
    ModelLoaded,
    Unloaded,
    UnloadModel,
)
from engine.settings import SettingsError

log = logging.getLogger(__name__)

Subscriber = Callable[[Event], None]
_STOP = object()
EARLY_CANCELS_KEPT = 256
_ids = itertools.count(1)


def new_request_id(prefix: str = "req") -> str:
    return f"{prefix}-{next(_ids)}"


def terminal_events(command: Command) -> tuple[type, ...]:
    """The events that end a request of this kind."""
    if isinstance(command, LoadModel):
        return (ModelLoaded, Failed)
    if isinstance(command, UnloadModel):
        return (Unloaded, Failed)
    return TERMINAL_EVENTS


class Interleavable(Protocol):
    """A generation that can pause after each round (engine.generate.Generation)."""

    request_id: str
    waited: float  # seconds other requests' rounds took while this one was under way
    finished: Event | None  # its final event, once ``steps`` is exhausted

    def steps(self) -> Iterator[None]: ...


class CommandLoop:
    thread_name = "lookahead-engine"

    def __init__(self) -> None:
        self._commands: queue.Queue = queue.Queue()
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._cancel_events: dict[str, threading.Event] = {}
        # Ids cancelled before they were submitted (a caller racing its own submit):
        # such a request never starts. Bounded, as most are ids that already finished.
        self._early_cancels: OrderedDict[str, None] = OrderedDict()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    # ------------------------------------------------------------ any thread

    def start(self):
        if self._thread is None:
            self._stopped.clear()
            self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Cancel everything, running and queued, and stop the thread."""
        with self._lock:
            for ev in self._cancel_events.values():
                ev.set()
        if self._thread is not None:
            self._commands.put(_STOP)
            self._stopped.wait(timeout)
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopped.is_set()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` on the worker thread for every event; returns an
        unsubscribe function. Callbacks must be quick; one that raises is logged."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def submit(self, command: Command) -> str:
        """Queue a command; returns its request id."""
        if isinstance(command, Cancel):
            self.cancel(command.request_id)
            return command.request_id
        with self._lock:
            cancel = self._cancel_events[command.request_id] = threading.Event()
            if self._early_cancels.pop(command.request_id, False) is None:
                cancel.set()
        self._commands.put(command)
        return command.request_id

    def cancel(self, request_id: str) -> None:
        """Stop a request: a running one ends at its next step with reason
        'cancelled'; a queued one, or one submitted after this call, never starts."""
        with self._lock:
            ev = self._cancel_events.get(request_id)
            if ev is None:
                self._early_cancels[request_id] = None
                while len(self._early_cancels) > EARLY_CANCELS_KEPT:
                    self._early_cancels.popitem(last=False)
        if ev is not None:
            ev.set()

    def stream(self, command: Command) -> Iterator[Event]:
        """Submit and yield this request's events until its last one (any thread).

        Closing the iterator early (a client that went away) cancels the request.
        """
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        rid = command.request_id

        def on_event(event: Event) -> None:
            if event.request_id == rid:
                inbox.put(event)

        terminal = terminal_events(command)
        unsubscribe = self.subscribe(on_event)
        finished = False
        try:
            self.submit(command)
            while True:
                event = inbox.get()
                yield event
                if isinstance(event, terminal):
                    finished = True
                    return
        finally:
            unsubscribe()
            if not finished:
                self.cancel(rid)

    def run(self, command: Command) -> Event:
        """Submit and wait for the final event; raises EngineError on failure."""
        last = None
        for event in self.stream(command):
            last = event
        if isinstance(last, Failed):
            raise EngineError(last.message)
        return last

    # ------------------------------------------------------------ worker thread

    def handle(self, command: Command, cancel: threading.Event) -> None:
        """Run one command, emitting its events; stop early once ``cancel`` is set."""
        raise NotImplementedError

    def take_queued(
        self, wanted: Callable[[Command], bool]
    ) -> list[tuple[Command, threading.Event]]:
        """Remove the queued commands ``wanted`` accepts, in order, with their cancel
        events, for ``handle`` to run alongside the current one (interleaved
        generations). Each taken command must end with an event and ``release``."""
        q = self._commands
        with q.mutex:
            taken = [c for c in q.queue if c is not _STOP and wanted(c)]
            if taken:
                rest = [c for c in q.queue if not any(c is t for t in taken)]
                q.queue.clear()
                q.queue.extend(rest)
        with self._lock:
            return [(c, self._cancel_events.get(c.request_id) or threading.Event()) for c in taken]

    def release(self, request_id: str) -> None:
        """A taken command has ended: forget its cancel event."""
        with self._lock:
            self._cancel_events.pop(request_id, None)

    def run_interleaved(
        self,
        first: Interleavable,
        group: str,
        start: Callable[[Generate, threading.Event], Interleavable],
    ) -> None:
        """Run ``first`` and every queued Generate of its interleave ``group`` (also
        those that arrive meanwhile, set up with ``start``), one round each in turn.
        Each ends on its own: a failure or a cancel stops that one only. A round's time
        is added to the others' ``waited``, so each is timed on its own rounds."""
        running = [(first, first.steps())]

        def join() -> None:
            for command, cancel in self.take_queued(
                lambda c: isinstance(c, Generate) and c.interleave == group
            ):
                rid = command.request_id
                try:
                    if not cancel.is_set():
                        run = start(command, cancel)
                        running.append((run, run.steps()))
                        continue
                    self._emit(cancelled_before_start(rid))
                except Exception as e:
                    self._emit(failure(rid, e))
                self.release(rid)

        join()
        while running:
            for entry in list(running):
                run, steps = entry
                t0 = time.perf_counter()
                try:
                    next(steps)
                    ended = None
                except StopIteration:
                    ended = run.finished
                except Exception as e:
                    ended = failure(run.request_id, e)
                spent = time.perf_counter() - t0
                for other, _ in running:
                    if other is not run:
                        other.waited += spent
                if ended is not None:
                    running.remove(entry)
                    self._emit(ended)
                    if run is not first:  # the loop releases the command it handed over
                        self.release(run.request_id)
            join()

    def on_start(self) -> str | None:
        """Set up on the worker thread; a message means the engine cannot run, and
        every command then fails with it."""
        return None

    def on_stop(self) -> None:
        """Release what the worker holds; the thread ends when this returns."""
        self._stopped.set()

    def _emit(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # a broken subscriber must not take the engine down
                log.exception("event subscriber failed")

    def _loop(self) -> None:
        try:
            broken = self.on_start()
        except Exception as e:
            log.error("engine failed to start:\n%s", traceback.format_exc())
            broken = f"the engine could not start: {type(e).__name__}: {e}"
        while True:
            command = self._commands.get()
            if command is _STOP:
                self.on_stop()
                return
            rid = command.request_id
            with self._lock:
                cancel = self._cancel_events.get(rid) or threading.Event()
            try:
                if broken is not None:
                    self._emit(Failed(rid, broken))
                elif cancel.is_set():
                    self._emit(cancelled_before_start(rid))
                else:
                    self.handle(command, cancel)
            except Exception as e:
                self._emit(failure(rid, e))
            finally:
                self.release(rid)


def failure(rid: str, error: Exception) -> Failed:
    """The Failed event for a command that raised: its own message for the errors a
    request can cause, "internal error" (logged with its traceback) for the rest."""
    if isinstance(error, (EngineError, SettingsError)):
        return Failed(rid, str(error))
    if isinstance(error, MemoryError):
        return Failed(rid, "out of memory; try a smaller model or fewer tokens")
    log.error(
        "command %s failed:\n%s",
        rid,
        "".join(traceback.format_exception(type(error), error, error.__traceback__)),
    )
    return Failed(rid, f"internal error: {type(error).__name__}: {error}")


def cancelled_before_start(rid: str) -> Finished:
    return Finished(rid, "cancelled", "", "", GenerationStats(finish_reason="cancelled"))
