"""The signal bridge: engine events in on the engine thread, Qt signals out on the GUI thread.

The engine calls ``_on_engine_event`` on its own thread for every event; that only
puts the event on a queue. A 10 Hz QTimer on the GUI thread drains the queue,
batches tokens and keeps only the newest stats per request, and emits one signal
per kind per request. So a fast model never floods the event loop, and widgets
repaint at most once per drain.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any, Protocol

from PySide6.QtCore import QObject, QTimer, Signal

from engine.events import (
    Event,
    Failed,
    Finished,
    LoadProgress,
    ModelLoaded,
    PromptProgress,
    StatsEvent,
    TokenEvent,
    Unloaded,
)

# 10 Hz: smooth to read, and on a 2-core CPU every GUI update takes time from the engine.
DRAIN_INTERVAL_MS = 100


class EngineLike(Protocol):
    def start(self) -> Any: ...
    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]: ...
    def submit(self, command: Any) -> str: ...
    def cancel(self, request_id: str) -> None: ...
    def close(self) -> None: ...


class EngineBridge(QObject):
    """Owns the subscription to an engine service; lives on the GUI thread."""

    sig_tokens = Signal(str, list)
    """New tokens for a request, in order (list[TokenEvent]); at most once per drain."""
    sig_stats = Signal(str, object)
    """The newest GenerationStats of a request."""
    sig_finished = Signal(str, object)
    """A request finished (engine.events.Finished)."""
    sig_failed = Signal(str, str)
    """A request failed; the message says why."""
    sig_load_progress = Signal(str, object)
    """A model is loading for a request (engine.events.LoadProgress)."""
    sig_model_loaded = Signal(str, object)
    """A model is ready for a request (engine.events.ModelLoaded)."""
    sig_prompt_progress = Signal(str, object)
    """Prompt processing progress (engine.events.PromptProgress)."""
    sig_unloaded = Signal(str, object)
    """Models were unloaded (engine.events.Unloaded)."""
    sig_drained = Signal(int)
    """A drain delivered this many events (for metrics and tests)."""

    def __init__(self, service: EngineLike, parent: QObject | None = None):
        super().__init__(parent)
        self.service = service
        self._queue: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._unsubscribe: Callable[[], None] | None = service.subscribe(self._on_engine_event)
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_INTERVAL_MS)
        self._timer.timeout.connect(self._on_timer_drain)
        self._timer.start()

    # ------------------------------------------------------------ any thread

    def _on_engine_event(self, event: Event) -> None:
        """Engine thread: must stay quick, so only enqueue."""
        self._queue.put(event)

    def submit(self, command: Any) -> str:
        return self.service.submit(command)

    def cancel(self, request_id: str) -> None:
        self.service.cancel(request_id)

    # ------------------------------------------------------------ GUI thread

    def close(self) -> None:
        """Stop listening and shut the service down. GUI thread."""
        self._timer.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.service.close()

    def drain(self) -> int:
        """Deliver everything queued so far; returns how many events were handled."""
        events: list[Event] = []
        try:
            while True:
                events.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        if not events:
            return 0
        tokens: dict[str, list[TokenEvent]] = {}
        stats: dict[str, StatsEvent] = {}

        def flush(rid: str) -> None:
            # Keeps per-request order: tokens and stats seen so far go out first.
            if batch := tokens.pop(rid, None):
                self.sig_tokens.emit(rid, batch)
            if st := stats.pop(rid, None):
                self.sig_stats.emit(rid, st.stats)

        for ev in events:
            rid = ev.request_id
            if isinstance(ev, TokenEvent):
                tokens.setdefault(rid, []).append(ev)
            elif isinstance(ev, StatsEvent):
                stats[rid] = ev
            else:
                flush(rid)
                self._emit_other(ev)
        for rid in list(tokens) + list(stats):
            flush(rid)
        self.sig_drained.emit(len(events))
        return len(events)

    def _emit_other(self, ev: Event) -> None:
        rid = ev.request_id
        if isinstance(ev, Finished):
            self.sig_finished.emit(rid, ev)
        elif isinstance(ev, Failed):
            self.sig_failed.emit(rid, ev.message)
        elif isinstance(ev, LoadProgress):
            self.sig_load_progress.emit(rid, ev)
        elif isinstance(ev, ModelLoaded):
            self.sig_model_loaded.emit(rid, ev)
        elif isinstance(ev, PromptProgress):
            self.sig_prompt_progress.emit(rid, ev)
        elif isinstance(ev, Unloaded):
            self.sig_unloaded.emit(rid, ev)

    def _on_timer_drain(self) -> None:
        self.drain()
