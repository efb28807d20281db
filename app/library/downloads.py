"""Model downloads off the GUI thread, one worker thread per repo.

``DownloadManager`` runs ``engine.hub.download_model`` on a plain worker thread per
repo and re-emits what the worker reports as Qt signals *on the GUI thread*, so every
widget can connect to it directly. One-shot calls use ``app.tasks.run_blocking``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QCoreApplication, QObject, Signal

from app.tasks import emit_from_worker
from engine.hub import (
    CorruptDownload,
    DownloadCancelled,
    DownloadInterrupted,
    DownloadProgress,
    DownloadResult,
    GatedModelError,
    PendingDownload,
    download_model,
)
from engine.hub.download import RepoBusy


@dataclass(frozen=True)
class DownloadFailure:
    """Why a download stopped, and what it left on disk to resume from."""

    repo_id: str
    kind: str  # "cancelled" | "interrupted" | "gated" | "corrupt" | "busy" | "error"
    message: str  # one line, from the engine
    partial: PendingDownload | None = None  # bytes kept for a resume, when any

    @property
    def resumable(self) -> bool:
        return self.partial is not None and self.partial.bytes_done > 0


def failure_kind(exc: BaseException) -> str:
    """The kind of a download error, for how the row shows it."""
    for cls, kind in (
        (DownloadCancelled, "cancelled"),
        (DownloadInterrupted, "interrupted"),
        (GatedModelError, "gated"),
        (CorruptDownload, "corrupt"),
        (RepoBusy, "busy"),
    ):
        if isinstance(exc, cls):
            return kind
    return "error"


def failure_message(exc: BaseException) -> str:
    """A one-line message: engine errors are written for people, others get their type."""
    from engine.errors import EngineError

    text = " ".join(str(exc).split())
    if isinstance(exc, EngineError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class DownloadManager(QObject):
    """Runs downloads on worker threads. Lives on, and signals on, the GUI thread."""

    sig_started = Signal(str)
    """A download of this repo began (or resumed)."""
    sig_progress = Signal(str, object)
    """Progress of a repo's download (engine.hub.DownloadProgress), about 10 times a second."""
    sig_finished = Signal(str, object)
    """A repo is fully downloaded and verified (engine.hub.DownloadResult)."""
    sig_failed = Signal(str, object)
    """A download stopped: cancelled, interrupted or refused (DownloadFailure)."""
    sig_library_changed = Signal()
    """A model was added to the local library (emitted after each finished download)."""

    # Emitted on worker threads; Qt queues them to this object's (the GUI) thread.
    _sig_worker_progress = Signal(str, object)
    _sig_worker_finished = Signal(str, object)
    _sig_worker_failed = Signal(str, object)

    def __init__(
        self,
        parent: QObject | None = None,
        download: Callable[..., DownloadResult] = download_model,
    ) -> None:
        super().__init__(parent)
        self._download = download
        self._cancels: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._latest: dict[str, DownloadProgress] = {}
        self._sig_worker_progress.connect(self._on_worker_progress)
        self._sig_worker_finished.connect(self._on_worker_finished)
        self._sig_worker_failed.connect(self._on_worker_failed)
        app = QCoreApplication.instance()
        if app is not None:
            # A download thread must not outlive the objects it reports to.
            app.aboutToQuit.connect(self.shutdown)

    # ------------------------------------------------------------ queries (GUI thread)

    def is_running(self, repo_id: str) -> bool:
        return repo_id in self._cancels

    def running(self) -> list[str]:
        """Repos downloading now, in the order they started."""
        return list(self._cancels)

    def latest(self, repo_id: str) -> DownloadProgress | None:
        """The newest progress of a running download (for rows created mid-download)."""
        return self._latest.get(repo_id) if self.is_running(repo_id) else None

    # ------------------------------------------------------------ control (GUI thread)

    def start(self, repo_id: str, revision: str | None = None) -> bool:
        """Download (or resume) ``repo_id``; False when it is already downloading."""
        if self.is_running(repo_id):
            return False
        cancel = threading.Event()
        thread = threading.Thread(
            target=self._run,
            args=(repo_id, revision, cancel),
            name=f"download-{repo_id}",
            daemon=True,  # a stuck socket must not keep the app from quitting
        )
        self._cancels[repo_id] = cancel
        self._threads[repo_id] = thread
        self._latest.pop(repo_id, None)
        thread.start()
        self.sig_started.emit(repo_id)
        return True

    def cancel(self, repo_id: str) -> None:
        """Ask a download to stop; it ends with sig_failed (kind "cancelled"), bytes kept."""
        if event := self._cancels.get(repo_id):
            event.set()

    def shutdown(self, timeout_s: float = 3.0) -> None:
        """Cancel every download and wait briefly for the threads (partials are kept)."""
        for event in self._cancels.values():
            event.set()
        for thread in list(self._threads.values()):
            thread.join(timeout_s)

    # ------------------------------------------------------------ worker thread

    def _run(self, repo_id: str, revision: str | None, cancel: threading.Event) -> None:
        """Worker thread: the whole download, reporting through queued signals."""

        def progress(p: DownloadProgress) -> None:  # the worker thread, ~10 Hz
            emit_from_worker(self._sig_worker_progress, repo_id, p)

        try:
            result = self._download(repo_id, revision, on_progress=progress, cancel=cancel)
        except BaseException as e:  # every failure becomes a row message, never a crash
            emit_from_worker(self._sig_worker_failed, repo_id, self._failure(repo_id, e))
        else:
            emit_from_worker(self._sig_worker_finished, repo_id, result)

    @staticmethod
    def _failure(repo_id: str, exc: BaseException) -> DownloadFailure:
        """Worker thread: classify the error and look at what stayed on disk."""
        from engine.hub.state import read_state

        try:
            partial = read_state(repo_id)
        except Exception:  # bookkeeping trouble must not hide the real error
            partial = None
        return DownloadFailure(repo_id, failure_kind(exc), failure_message(exc), partial)

    # ------------------------------------------------------------ back on the GUI thread

    def _on_worker_progress(self, repo_id: str, progress: DownloadProgress) -> None:
        if not self.is_running(repo_id):
            return  # a late report from a finished thread
        self._latest[repo_id] = progress
        self.sig_progress.emit(repo_id, progress)

    def _on_worker_finished(self, repo_id: str, result: DownloadResult) -> None:
        self._forget(repo_id)
        self.sig_finished.emit(repo_id, result)
        self.sig_library_changed.emit()

    def _on_worker_failed(self, repo_id: str, failure: DownloadFailure) -> None:
        self._forget(repo_id)
        self.sig_failed.emit(repo_id, failure)

    def _forget(self, repo_id: str) -> None:
        self._cancels.pop(repo_id, None)
        self._threads.pop(repo_id, None)
        self._latest.pop(repo_id, None)
