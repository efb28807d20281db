"""Download progress as plain values: bytes, rate, ETA, for the app and the CLI."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class DownloadProgress:
    """A snapshot of a download. Sent on the downloading thread."""

    repo_id: str
    bytes_done: int  # including bytes kept from earlier attempts
    bytes_total: int
    rate_bps: float  # over the last few seconds of this attempt
    eta_s: float | None  # None until a rate is known
    current_file: str
    files_done: int
    files_total: int
    resumed_bytes: int = 0  # bytes that were already on disk when this attempt began
    finished: bool = False

    @property
    def fraction(self) -> float:
        return self.bytes_done / self.bytes_total if self.bytes_total else 1.0


ProgressCallback = Callable[[DownloadProgress], None]

RATE_WINDOW_S = 5.0


class ProgressTracker:
    """Counts bytes and calls back at most every ``interval_s`` (plus at file edges)."""

    def __init__(
        self,
        repo_id: str,
        bytes_total: int,
        bytes_present: int,
        files_total: int,
        callback: ProgressCallback | None,
        interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.repo_id = repo_id
        self.bytes_total = bytes_total
        self.bytes_done = bytes_present
        self.resumed = bytes_present
        self.transferred = 0  # bytes received by this attempt, retries included
        self.files_total = files_total
        self.files_done = 0
        self.current_file = ""
        self._callback = callback
        self._interval = interval_s
        self._clock = clock
        self._last_emit = float("-inf")
        self._samples: deque[tuple[float, int]] = deque()
        self._samples.append((clock(), 0))

    def start_file(self, name: str) -> None:
        self.current_file = name
        self.emit(force=True)

    def add(self, n: int) -> None:
        self.bytes_done += n
        self.transferred += n
        now = self._clock()
        self._samples.append((now, self.transferred))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        self.emit()

    def file_done(self) -> None:
        self.files_done += 1
        self.emit(force=True)

    def rate(self) -> float:
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def snapshot(self, finished: bool = False) -> DownloadProgress:
        rate = self.rate()
        left = max(self.bytes_total - self.bytes_done, 0)
        eta = 0.0 if not left else (left / rate if rate > 0 else None)
        return DownloadProgress(
            repo_id=self.repo_id,
            bytes_done=self.bytes_done,
            bytes_total=self.bytes_total,
            rate_bps=rate,
            eta_s=eta,
            current_file=self.current_file,
            files_done=self.files_done,
            files_total=self.files_total,
            resumed_bytes=self.resumed,
            finished=finished,
        )

    def emit(self, force: bool = False, finished: bool = False) -> None:
        if self._callback is None:
            return
        now = self._clock()
        if force or finished or now - self._last_emit >= self._interval:
            self._last_emit = now
            self._callback(self.snapshot(finished))


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
