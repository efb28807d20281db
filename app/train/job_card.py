"""One training run on the Train page: its state, progress, a live plot of the loss
and of validation acceptance per draft position, the figures people watch (step,
ETA, acceptance against the untrained head, the speed-up it should give), and its
buttons. Fed by the page's watcher with the job's status and new events; GUI thread.
"""

from __future__ import annotations

import time

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from app import theme
from app.chat.metrics_plot import Figure
from app.page_parts import Card, StatusLine
from engine.mtp_train.job import Job

STATE_TEXT = {
    "queued": ("busy", "Starting"),
    "preparing": ("busy", "Preparing data"),
    "training": ("running", "Training"),
    "exporting": ("busy", "Writing the decoder"),
    "done": ("running", "Ready"),
    "paused": ("stopped", "Paused"),
    "cancelled": ("stopped", "Cancelled"),
    "interrupted": ("error", "Interrupted"),
    "failed": ("error", "Failed"),
}


def _pct(x) -> str:
    return f"{x:.0%}" if isinstance(x, int | float) else "\u2013"


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class TrainingPlot(pg.PlotWidget):
    """Loss over steps (left axis) and validation acceptance of the first and second
    draft (right axis, 0-100%), with the untrained head's first-draft acceptance as
    a dotted line."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, background=None)
        self.setMinimumHeight(130)
        self.setMouseEnabled(x=False, y=False)
        self.setMenuEnabled(False)
        self.hideButtons()
        item = self.getPlotItem()
        item.showAxis("right")
        self.acc_box = pg.ViewBox(enableMouse=False)
        item.scene().addItem(self.acc_box)
        item.getAxis("right").linkToView(self.acc_box)
        self.acc_box.setXLink(item)
        self.acc_box.setYRange(0, 1, padding=0.02)
        item.vb.sigResized.connect(self._on_resized)
        item.getAxis("right").setTicks([[(0, "0%"), (0.5, "50%"), (1, "100%")]])
        item.getAxis("left").setWidth(34)
        item.getAxis("right").setWidth(36)
        self.loss = self.plot([], [])
        self.acc1 = pg.PlotDataItem([], [], symbol="o", symbolSize=5)
        self.acc2 = pg.PlotDataItem([], [], symbol="o", symbolSize=4)
        self.base = pg.InfiniteLine(angle=0, movable=False)
        self.base.hide()
        for curve in (self.acc1, self.acc2, self.base):
            self.acc_box.addItem(curve)
        self._on_theme_changed(theme.current())
        theme.manager().sig_changed.connect(self._on_theme_changed)

    def _on_resized(self) -> None:
        item = self.getPlotItem()
        self.acc_box.setGeometry(item.vb.sceneBoundingRect())
        self.acc_box.linkedViewChanged(item.vb, self.acc_box.XAxis)

    def set_data(self, loss: list[tuple[int, float]], val: list[tuple[int, float, float]],
                 baseline: float | None, steps: int) -> None:  # fmt: skip
        self.loss.setData([s for s, _ in loss], [v for _, v in loss])
        self.acc1.setData([s for s, _, _ in val], [a for _, a, _ in val])
        self.acc2.setData([s for s, _, _ in val], [b for _, _, b in val])
        if baseline is not None:
            self.base.setValue(baseline)
            self.base.show()
        self.setXRange(0, max(steps, 1), padding=0.02)
        if loss:
            self.setYRange(0, max(v for _, v in loss) * 1.08, padding=0)

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        self.setBackground(pal.surface)
        self.loss.setPen(pg.mkPen(pal.plot_cumulative, width=1.8))
        self.acc1.setPen(pg.mkPen(pal.plot_accept, width=2))
        self.acc1.setSymbolBrush(pal.plot_accept)
        self.acc1.setSymbolPen(pal.plot_accept)
        self.acc2.setPen(pg.mkPen(pal.plot_rate, width=1.5, style=Qt.PenStyle.DashLine))
        self.acc2.setSymbolBrush(pal.plot_rate)
        self.acc2.setSymbolPen(pal.plot_rate)
        self.base.setPen(pg.mkPen(pal.faint, width=1.2, style=Qt.PenStyle.DotLine))
        for name in ("left", "bottom", "right"):
            axis = self.getPlotItem().getAxis(name)
            axis.setPen(pg.mkPen(pal.border))
            axis.setTextPen(pg.mkPen(pal.faint))
        self.getPlotItem().showGrid(x=False, y=True, alpha=0.12)


class JobCard(Card):
    """A training run. Buttons emit the page's actions with this card's job folder."""

    sig_action = Signal(str, object)
    """(action, job): "pause" | "resume" | "cancel" | "remove" | "compare" | "delete"."""

    def __init__(self, job: Job, parent: QWidget | None = None):
        super().__init__(job.spec.title or job.folder.name, parent=parent)
        self.job = job
        self.loss: list[tuple[int, float]] = []
        self.val: list[tuple[int, float, float]] = []
        self.offset = 0  # bytes of events.jsonl read so far
        self._rate: tuple[float, int] | None = None  # (time, step) when training was seen
        self.buttons: dict[str, QPushButton] = {}
        for action, label in (
            ("compare", "Compare"),
            ("resume", "Resume"),
            ("pause", "Pause"),
            ("cancel", "Cancel"),
            ("delete", "Delete decoder"),
            ("remove", "Remove"),
        ):
            b = QPushButton(label, self)
            b.setCursor(Qt.CursorShape.PointingHandCursor)
            b.clicked.connect(lambda _=False, a=action: self.sig_action.emit(a, self.job))
            self.header.addWidget(b)
            self.buttons[action] = b
        self.buttons["compare"].setObjectName("PrimaryButton")
        self.buttons["compare"].setToolTip("Open two panes: decoder off and this decoder")
        self.status = StatusLine(self)
        self.progress = QProgressBar(self)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(6)
        self.figures = {
            key: Figure(caption, self, role)
            for key, caption, role in (
                ("step", "step", ""),
                ("eta", "left", ""),
                ("loss", "loss", "plot_cumulative"),
                ("acc1", "1st draft accepted", "plot_accept"),
                ("acc2", "2nd draft, given 1st", "plot_rate"),
                ("base", "untrained head", ""),
                ("speedup", "expected speed-up", ""),
            )
        }
        row = QHBoxLayout()
        row.setSpacing(22)
        for f in self.figures.values():
            row.addWidget(f)
        row.addStretch(1)
        self.plot = TrainingPlot(self)
        self.data_note = QLabel(self)
        self.data_note.setObjectName("Note")
        self.data_note.setWordWrap(True)
        self.body.addWidget(self.status)
        self.body.addWidget(self.progress)
        self.body.addLayout(row)
        self.body.addWidget(self.plot)
        self.body.addWidget(self.data_note)
        self.update_job(job, [])

    def update_job(self, job: Job, events: list[dict]) -> None:
        self.job = job
        for e in events:
            if e.get("kind") == "step":
                self.loss.append((e["step"], e["loss"]))
            elif e.get("kind") == "val" and e.get("step"):
                m = e["metrics"].get("all", {})
                self.val.append((e["step"], m.get("acc1", 0.0), m.get("acc2_given_1", 0.0)))
        s = job.status
        state = job.state
        dot, text = STATE_TEXT.get(state, ("stopped", state))
        message = s.get("message") or ""
        if state == "interrupted":
            message = "The app or computer stopped while it ran; Resume continues from the last checkpoint."
        self.status.set_state(dot, f"{text}: {message}" if message and message != text else text)
        steps = int(s.get("steps") or job.spec.train.get("steps") or 1)
        step = int(s.get("step") or 0)
        data = s.get("data") or {}
        if state == "preparing" and data:
            self.progress.setRange(0, max(int(data.get("planned", 1)), 1))
            self.progress.setValue(int(data.get("done", 0)))
        else:
            self.progress.setRange(0, steps)
            self.progress.setValue(steps if state == "done" else step)
        best = (s.get("best") or {}).get("all", {})
        last = (s.get("last_val") or {}).get("all", {})
        base = (s.get("baseline") or {}).get("all", {})
        shown = best or last
        self.figures["step"].set(f"{step:,} / {steps:,}")
        self.figures["eta"].set(self._eta(state, step, steps, data))
        self.figures["loss"].set(f"{self.loss[-1][1]:.2f}" if self.loss else "\u2013")
        self.figures["acc1"].set(_pct(shown.get("acc1")))
        self.figures["acc2"].set(_pct(shown.get("acc2_given_1")))
        self.figures["base"].set(_pct(base.get("acc1")))
        expected = s.get("expected") or {}
        speedup = self.figures["speedup"]
        if expected.get("k"):
            x = expected["speedup"]
            speedup.set(f"{x:.2f}x at k={expected['k']}" if x >= 1 else f"no gain ({x:.2f}x)")
            speedup.setToolTip(
                "From this computer's measured cost of a target pass over 1-4 tokens and of "
                "one draft step, at the acceptance measured now."
                + ("" if x >= 1 else " At this acceptance drafting costs more than it saves.")
            )
        else:
            speedup.set("\u2013")
        self.figures["eta"].setVisible(state != "done")
        self.plot.set_data(self.loss, self.val, base.get("acc1"), steps)
        self.data_note.setText(self._data_text(s))
        running = job.running or state == "queued"
        self.buttons["pause"].setVisible(running and state != "exporting")
        self.buttons["cancel"].setVisible(state not in ("done", "cancelled", "failed"))
        self.buttons["resume"].setVisible(state in ("paused", "interrupted", "failed"))
        self.buttons["compare"].setVisible(state == "done")
        self.buttons["delete"].setVisible(state == "done")
        self.buttons["remove"].setVisible(not running)

    def _eta(self, state: str, step: int, steps: int, data: dict) -> str:
        if state == "done":
            return "done"
        if state != "training" or not self.job.running:
            self._rate = None
            return "\u2013"
        now = time.monotonic()
        if self._rate is None or step < self._rate[1]:
            self._rate = (now, step)
            return "measuring"
        t0, s0 = self._rate
        if step - s0 < 3:
            return "measuring"
        return _minutes((steps - step) * (now - t0) / (step - s0))

    def _data_text(self, s: dict) -> str:
        src = s.get("sources") or {}
        parts = []
        chats = src.get("chats")
        if chats:
            parts.append(
                f"{chats['replies']} of your replies in {chats['conversations']} chats "
                f"({chats['tokens']:,} tokens once repeated turns are dropped)"
            )
        if src.get("prompts"):
            parts.append(f"the model's answers to {src['prompts']} built-in prompts")
        if src.get("files"):
            parts.append(f"{src['files']} files")
        text = ("Data: " + ", ".join(parts) + ".") if parts else ""
        r = s.get("result")
        if r:
            size = r.get("size_bytes", 0) / 1e6
            text += (
                f" Decoder {r['name']} ({size:.1f} MB) is in your library and pairs with the "
                "model by itself; held-out acceptance "
                f"{_pct(r.get('acceptance'))} vs {_pct(r.get('baseline'))} untrained."
            )
        return text.strip()


__all__ = ["JobCard", "TrainingPlot"]
