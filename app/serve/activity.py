"""The Serve page's request log, from the two sources the API server really offers.

The ApiServer has no per-request hook, so the log joins:

- HTTP requests (method, path, status, client) from uvicorn's access logger, which
  ``AccessLogTap`` listens to while the server runs (records arrive on the server's
  thread when a response starts, and are queued);
- generations the API asked the engine for (model, prompt and generated tokens,
  duration, finish reason or failure), from the app's EngineBridge signals, picked
  out by the API's request-id prefixes (engine.server.params.new_id).

A streamed or non-streamed completion therefore shows as two rows: the HTTP request
and the generation behind it; they are not paired, because nothing in what the server
exposes says which is which. ``RequestLog`` drains the tap on a timer; everything but
``AccessLogTap.emit`` runs on the GUI thread.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.bridge import EngineBridge
from engine.events import Finished, ModelLoaded, Unloaded

ACCESS_LOGGER = "uvicorn.access"
# Request-id prefixes of engine.server's routes, and what each one is.
API_KINDS = {
    "chatcmpl": "chat completion",
    "cmpl": "completion",
    "ollama": "Ollama chat/generate",
    "load": "load model",
    "unload": "unload model",
}
MAX_ROWS = 500
DRAIN_MS = 250
COLUMNS = ("Time", "Request", "Model", "Tokens", "Duration", "Status")


def api_kind(request_id: str) -> str | None:
    """What an engine request id from the API is, or None for the app's own requests."""
    prefix = request_id.split("-", 1)[0]
    return API_KINDS.get(prefix) if "-" in request_id else None


@dataclass(frozen=True)
class LogRow:
    when: float
    request: str  # "GET /v1/models" or "generation · chat completion"
    model: str = ""
    tokens: str = ""  # "prompt → generated"
    duration: str = ""
    status: str = ""  # HTTP status, or the finish reason
    level: str = "ok"  # "ok" | "warn" | "error": the colour of the status
    detail: str = ""  # tooltip: client address, failure message
    kind: str = "http"  # "http" | "generation"


class AccessLogTap(logging.Handler):
    """Collects uvicorn's access records; ``emit`` runs on the server's thread."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: queue.SimpleQueue[LogRow] = queue.SimpleQueue()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if not isinstance(args, tuple) or len(args) < 5:
            return
        client, method, path, _version, status = args[:5]
        self.records.put(
            LogRow(
                record.created,
                f"{method} {path}",
                status=str(status),
                level="ok" if int(status) < 400 else "error",
                detail=f"from {client}",
            )
        )

    def attach(self) -> None:
        """Listen instead of uvicorn's console handler. Call after the server started
        (its logging setup replaces the logger's handlers)."""
        logger = logging.getLogger(ACCESS_LOGGER)
        for h in list(logger.handlers):
            if not isinstance(h, AccessLogTap):
                logger.removeHandler(h)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        if self not in logger.handlers:
            logger.addHandler(self)

    def detach(self) -> None:
        logging.getLogger(ACCESS_LOGGER).removeHandler(self)


class RequestLog(QObject):
    """Rows and counters of what the API did. GUI thread."""

    sig_changed = Signal()
    """Rows were added or cleared."""

    def __init__(self, bridge: EngineBridge, parent: QObject | None = None):
        super().__init__(parent)
        self.tap = AccessLogTap()
        self.rows: deque[LogRow] = deque(maxlen=MAX_ROWS)
        self.requests = self.errors = self.generations = self.tokens_out = 0
        self._models: dict[str, str] = {}  # request id -> model (and decoder)
        bridge.sig_model_loaded.connect(self._on_bridge_model_loaded)
        bridge.sig_finished.connect(self._on_bridge_finished)
        bridge.sig_failed.connect(self._on_bridge_failed)
        bridge.sig_unloaded.connect(self._on_bridge_unloaded)
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_MS)
        self._timer.timeout.connect(self.drain)
        self._timer.start()

    def clear(self) -> None:
        self.rows.clear()
        self.requests = self.errors = self.generations = self.tokens_out = 0
        self.sig_changed.emit()

    def drain(self) -> int:
        """Move the access records collected so far into the log."""
        n = 0
        while True:
            try:
                row = self.tap.records.get_nowait()
            except queue.Empty:
                break
            self.requests += 1
            self.errors += row.level == "error"
            self.rows.append(row)
            n += 1
        if n:
            self.sig_changed.emit()
        return n

    def summary(self) -> str:
        if not (self.requests or self.generations):
            return "No requests yet"
        parts = [
            f"{self.requests:,} request{'s' if self.requests != 1 else ''}",
            f"{self.generations:,} generation{'s' if self.generations != 1 else ''}",
            f"{self.tokens_out:,} tokens generated",
        ]
        if self.errors:
            parts.append(f"{self.errors:,} failed")
        return "  \u00b7  ".join(parts)

    # ------------------------------------------------------------ bridge slots

    def _on_bridge_model_loaded(self, rid: str, ev: ModelLoaded) -> None:
        if api_kind(rid) is not None:
            name = ev.model.rsplit("/", 1)[-1]
            self._models[rid] = f"{name} \u00b7 {ev.decoder}" if ev.decoder else name
            if api_kind(rid) == "load model":  # a load ends with this event
                self._add_generation(rid, "loaded", "ok")

    def _on_bridge_finished(self, rid: str, ev: Finished) -> None:
        kind = api_kind(rid)
        if kind is None:
            return
        s = ev.stats
        self.tokens_out += s.generation_tokens
        self._add_generation(
            rid,
            ev.reason,
            {"stop": "ok", "error": "error"}.get(ev.reason, "warn"),
            tokens=f"{s.prompt_tokens:,} \u2192 {s.generation_tokens:,}",
            duration=f"{s.elapsed_s:.2f} s" if s.elapsed_s else "",
        )

    def _on_bridge_failed(self, rid: str, message: str) -> None:
        if api_kind(rid) is not None:
            self.errors += 1
            self._add_generation(rid, "failed", "error", detail=message)

    def _on_bridge_unloaded(self, rid: str, ev: Unloaded) -> None:
        if api_kind(rid) is not None:
            self._models[rid] = ", ".join(m.rsplit("/", 1)[-1] for m in ev.models)
            self._add_generation(rid, "unloaded", "ok")

    def _add_generation(self, rid: str, status: str, level: str, **more: str) -> None:
        self.generations += api_kind(rid) not in ("load model", "unload model")
        self.rows.append(
            LogRow(
                time.time(),
                f"generation \u00b7 {api_kind(rid)}",
                model=self._models.pop(rid, ""),
                status=status,
                level=level,
                kind="generation",
                **more,
            )
        )
        self.sig_changed.emit()


class RequestLogView(QWidget):
    """Counters, a Clear button and the newest rows first."""

    def __init__(self, log: RequestLog, parent: QWidget | None = None):
        super().__init__(parent)
        self.log = log
        self.summary = QLabel(self)
        self.summary.setObjectName("Note")
        self.clear_button = QPushButton("Clear", self)
        self.clear_button.setToolTip("Forget the rows and counts shown here")
        self.clear_button.clicked.connect(log.clear)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setObjectName("LogTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.verticalHeader().setDefaultSectionSize(26)
        header = self.table.horizontalHeader()
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setHighlightSections(False)
        for i in range(len(COLUMNS)):
            header.setSectionResizeMode(i, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(220)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.summary, 1)
        top.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        log.sig_changed.connect(self.refresh)
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self.refresh()

    def refresh(self) -> None:
        self.summary.setText(self.log.summary())
        self.clear_button.setEnabled(bool(self.log.rows))
        rows = list(reversed(self.log.rows))
        pal = theme.current()
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            stamp = time.strftime("%H:%M:%S", time.localtime(row.when))
            values = (stamp, row.request, row.model, row.tokens, row.duration, row.status)
            for c, text in enumerate(values):
                item = QTableWidgetItem(text)
                if row.detail:
                    item.setToolTip(row.detail)
                if c == 5:
                    colour = {"ok": pal.success, "warn": pal.warning}.get(row.level, pal.danger)
                    item.setForeground(QColor(colour))
                elif c == 0 or (c == 1 and row.kind == "generation"):
                    item.setForeground(QColor(pal.muted))
                self.table.setItem(r, c, item)

    def _on_theme_changed(self, _pal: theme.Palette) -> None:
        self.refresh()


__all__ = ["AccessLogTap", "LogRow", "RequestLog", "RequestLogView", "api_kind"]
