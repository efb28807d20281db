"""Blocking work off the GUI thread: ``run_blocking(fn, on_done, on_failed)``.

The function runs on a plain worker thread; its result or exception arrives on the
GUI thread, so callers connect widgets' slots directly. Used for hub searches, library
scans, deletes, host checks and the API server's start and stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

from PySide6.QtCore import QCoreApplication, QObject, Signal

_workers: set[threading.Thread] = set()
_workers_lock = threading.Lock()


def join_workers(timeout: float = 5.0) -> bool:
    """Wait up to ``timeout`` seconds for the worker threads still running; call it once the
    event loop has returned. A worker left running while the interpreter shuts down can be
    inside a native library (an import of MLX, a hub call) as that library's static objects
    are destroyed, which aborts the process. True when none is left."""
    deadline = time.monotonic() + timeout
    with _workers_lock:
        pending = list(_workers)
    for thread in pending:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in pending)


def end_process(code: int) -> NoReturn:
    """End the app's process with ``code`` once its windows are closed and the engine shut.

    Skips the interpreter's finalization on purpose: a thread that used MLX runs MLX's
    thread-local destructors after Python's ``join()`` has returned, and those take the
    GIL; if the main thread is finalizing by then, Python ends that thread mid-destructor
    and the process aborts ("terminate called without an active exception"). Everything
    the app keeps is written as it happens (SQLite commits, settings, checkpoints), so
    there is nothing finalization would save. Waits for the worker threads first."""
    join_workers()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def emit_from_worker(signal: Any, *args: Any) -> None:
    """Emit from a worker thread, tolerating an owner deleted while the thread ran."""
    with contextlib.suppress(RuntimeError):  # "Internal C++ object already deleted"
        signal.emit(*args)


class BlockingCall(QObject):
    """One blocking function on a worker thread; its outcome signalled on the GUI thread."""

    sig_done = Signal(object)
    """The function returned this value."""
    sig_failed = Signal(object)
    """The function raised this exception."""

    def __init__(self, fn: Callable[[], Any], name: str) -> None:
        # Owned by the application until it has reported: nothing else has to keep it.
        super().__init__(QCoreApplication.instance())
        self._fn = fn
        self._name = name

    def start(self) -> BlockingCall:
        """Start the thread. Connect the caller's slots first: queued calls keep order, so
        the caller hears the outcome before this object lets itself go."""
        self.sig_done.connect(self._on_self_reported)
        self.sig_failed.connect(self._on_self_reported)
        thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        with _workers_lock:
            _workers.add(thread)
        thread.start()
        return self

    def _run(self) -> None:
        """Worker thread."""
        try:
            value = self._fn()
        except Exception as e:  # handed to the caller's slot, which shows it
            emit_from_worker(self.sig_failed, e)
        else:
            emit_from_worker(self.sig_done, value)
        finally:
            with _workers_lock:
                _workers.discard(threading.current_thread())

    def _on_self_reported(self, _value: object) -> None:
        self.deleteLater()


def run_blocking(
    fn: Callable[[], Any],
    on_done: Callable[[Any], None],
    on_failed: Callable[[BaseException], None],
    name: str = "hub-call",
) -> BlockingCall:
    """Call ``fn`` on a worker thread; ``on_done(value)`` or ``on_failed(exc)`` run on the
    GUI thread. Call it from the GUI thread, and pass bound methods of QObjects: Qt drops
    the call if the object is gone by then."""
    call = BlockingCall(fn, name)
    call.sig_done.connect(on_done)
    call.sig_failed.connect(on_failed)
    return call.start()
