"""The comparison bar: one line per compared pane above the prompt box.

Shown whenever two or more panes' latest replies answer the same prompt (compare mode
sends one prompt to all of them): the speed-up against the decoder-off pane, time to
the last token and to the first, the memory the decoder added, acceptance, and whether
the answers are identical — or where they first differ (a button opens that token in
both panes' inspectors) and why. It updates live while the panes stream, says when a
pane waits its turn, and copies the comparison as a Markdown table or saves it as JSON.

It reads the panes' transcripts and nothing else: a timer looks at their version
counters five times a second and recomputes (app.compare.verdict) when one changed,
so streaming, edits, branch switches and reopened conversations all show the same
verdict. GUI thread only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.chat.pane import ChatPane
from app.compare.verdict import (
    Comparison,
    Row,
    Run,
    compare,
    export_json,
    markdown_table,
    memory_text,
)
from app.widgets import CopyButton, ElidedLabel, IconButton, Tag

POLL_MS = 200

_QSS = """
#ComparisonBar {{ background: {surface}; border: 1px solid {border}; border-radius: 12px; }}
#CompareSpeed {{ font-weight: 700; font-size: 14px; color: {accent}; }}
#CompareSpeed[kind="slower"] {{ color: {warning}; }}
#CompareSpeed[kind="none"] {{ color: {muted}; font-weight: 600; }}
#CompareWho {{ font-weight: 600; }}
#CompareDetail, #CompareNote {{ color: {muted}; font-size: 12px; }}
#Tag[kind="same"] {{ color: {success}; }}
#Tag[kind="differ"] {{ color: {warning}; }}
#Tag[kind="stopped"] {{ color: {muted}; }}
"""


def speed_text(row: Row) -> tuple[str, str]:
    """('1.42x faster', kind) for the speed label; kind styles it."""
    if row.speedup is None:
        return ("measuring\u2026" if row.run.streaming else "no figures"), "none"
    if row.speedup >= 1.005:
        return f"{row.speedup:.2f}\u00d7 faster", "faster"
    if row.speedup <= 0.995:
        return f"{row.speedup:.2f}\u00d7 (slower)", "slower"
    return "same speed", "none"


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def detail_text(row: Row) -> str:
    """The figures after the speed-up, in one line (this pane's first, the baseline's after)."""
    run, base = row.run, row.baseline
    parts = []
    if row.part_speedups:  # a tool round: the call, then the answer after its result
        names = ["tool call", *["after the result"] * (len(row.part_speedups) - 1)]
        parts.append(
            ", ".join(f"{n} {x:.2f}\u00d7" for n, x in zip(names, row.part_speedups, strict=True))
        )
    if run.drafting:
        if (mem := memory_text(row.memory_added_gb)) != "-":
            parts.append(f"{mem} for the decoder")
        if run.figure("drafted") or run.figure("acceptance_rate"):
            parts.append(
                f"{run.figure('acceptance_rate'):.0%} accepted, "
                f"{run.figure('mean_accepted_length'):.2f} tokens/pass"
            )
    if row.time_ratio is not None:
        parts.append(
            f"done in {seconds(run.figure('elapsed_s'))} vs {seconds(base.figure('elapsed_s'))}"
        )
    if run.figure("ttft_s") or base.figure("ttft_s"):
        # A prompt the other pane already read comes from the prompt cache: say so, as
        # it, not the decoder, makes that first token quicker.
        cached = run.figure("cached_prompt_tokens") - base.figure("cached_prompt_tokens")
        note = f" ({cached:,.0f} prompt tokens cached)" if cached > 0 else ""
        parts.append(
            f"first token {seconds(run.figure('ttft_s'))} vs {seconds(base.figure('ttft_s'))}{note}"
        )
    return "  \u00b7  ".join(parts)


class ComparisonRow(QWidget):
    """'Pane 2 · MTP vs Pane 1: 1.42x faster · figures · [Identical, 412 tokens] [Show]'."""

    sig_show_difference = Signal(object)
    """Open the first differing token in both panes (the Row)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.row: Row | None = None
        self.who = QLabel(self)
        self.who.setObjectName("CompareWho")
        self.speed = QLabel(self)
        self.speed.setObjectName("CompareSpeed")
        self.detail = ElidedLabel("", self)
        self.detail.setObjectName("CompareDetail")
        self.same = Tag("", "", self)
        self.show_button = QToolButton(self)
        self.show_button.setObjectName("Chip")
        self.show_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.show_button.setToolTip("Open the first differing token in both panes")
        self.show_button.clicked.connect(lambda: self.sig_show_difference.emit(self.row))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        layout.addWidget(self.who)
        layout.addWidget(self.speed)
        layout.addWidget(self.detail, 1)
        layout.addWidget(self.same)
        layout.addWidget(self.show_button)

    def set_row(self, row: Row) -> None:
        self.row = row
        # The baseline is named by its pane alone when it runs without a decoder.
        base = row.baseline.label if row.baseline.drafting else row.baseline.pane
        self.who.setText(f"{row.run.label}  vs  {base}")
        self.who.setToolTip(f"{row.run.label} against {row.baseline.label}")
        text, kind = speed_text(row)
        self.speed.setText(text)
        theme.set_property(self.speed, "kind", kind)
        rate = (
            f"{row.run.figure('generation_tps'):.1f} vs "
            f"{row.baseline.figure('generation_tps'):.1f} tok/s"
        )
        self.speed.setToolTip(f"Generation speed: {rate}")
        detail = detail_text(row)
        self.detail.set_full_text(detail)
        self.detail.setToolTip(detail.replace("  \u00b7  ", "\n"))
        same = row.same
        kind = "same" if same.identical else same.cause
        kind = {"streaming": "live", "stopped": "stopped", "same": "same"}.get(kind, "differ")
        self.same.setText(("\u2713 " if same.identical else "") + same.summary)
        self.same.set_kind(kind)
        self.same.setToolTip(same.explanation)
        differ = same.first_difference is not None and same.cause != "stopped"
        if differ:
            self.show_button.setText(f"Show token {same.first_difference + 1:,}")
        self.show_button.setVisible(differ)


class ComparisonBar(QFrame):
    """The verdict of compare mode, above the prompt box; hidden when there is none."""

    sig_interleave_changed = Signal(bool)
    """The user switched interleaving (panes stream at once, sharing the machine)."""

    def __init__(self, panes: Callable[[], list[ChatPane]], parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ComparisonBar")
        self._panes = panes
        self.comparison: Comparison | None = None
        self._seen: tuple = ()
        self._rows: list[ComparisonRow] = []
        self._by_title: dict[str, ChatPane] = {}
        self._build()
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._on_timer_poll)
        self._timer.start()
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self._on_theme_changed(theme.current())
        self.hide()

    def _build(self) -> None:
        self.icon = QLabel(self)
        self.rows_box = QVBoxLayout()
        self.rows_box.setContentsMargins(0, 0, 0, 0)
        self.rows_box.setSpacing(4)
        self.note = QLabel(self)
        self.note.setObjectName("CompareNote")
        self.note.setWordWrap(True)
        self.rows_box.addWidget(self.note)
        self.interleave = QToolButton(self)
        self.interleave.setObjectName("Chip")
        self.interleave.setCheckable(True)
        self.interleave.setText("Interleave")
        self.interleave.setCursor(Qt.CursorShape.PointingHandCursor)
        self.interleave.setToolTip(
            "Off: panes run one after the other, so each gets the whole machine and the "
            "timings are clean.\nOn: the engine alternates rounds between the panes, so "
            "they stream at once and share the machine (each pane's tok/s counts only "
            "its own rounds)."
        )
        self.interleave.toggled.connect(self.sig_interleave_changed)
        self.copy_button = CopyButton(
            self.markdown, "Copy the comparison as a Markdown table", self
        )
        self.save_button = IconButton(
            "download", "Save both answers and the figures as JSON", self, 16
        )
        self.save_button.clicked.connect(self._on_save_clicked)
        tools = QHBoxLayout()
        tools.setSpacing(4)
        tools.addWidget(self.interleave)
        tools.addWidget(self.copy_button)
        tools.addWidget(self.save_button)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 8)
        layout.setSpacing(10)
        layout.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(self.rows_box, 1)
        layout.addLayout(tools)
        layout.setAlignment(tools, Qt.AlignmentFlag.AlignTop)

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        self.setStyleSheet(_QSS.format(**vars(pal)))
        self.icon.setPixmap(theme.icon("compare", pal.accent, 16).pixmap(QSize(16, 16)))

    # ------------------------------------------------------------ refreshing

    def _on_timer_poll(self) -> None:
        panes = self._panes()
        seen = tuple((id(p), p.transcript.version) for p in panes)
        if seen != self._seen:
            self._seen = seen
            self.refresh(panes)

    def refresh(self, panes: list[ChatPane] | None = None) -> None:
        """Recompute the comparison from the panes' transcripts now."""
        panes = self._panes() if panes is None else panes
        self._by_title = {p.title: p for p in panes}
        self.comparison = compare([Run.of(p.title, p.transcript.messages) for p in panes])
        if self.comparison is None:
            self.hide()
            return
        rows = self.comparison.rows
        while len(self._rows) < len(rows):
            widget = ComparisonRow(self)
            widget.sig_show_difference.connect(self.show_difference)
            self.rows_box.insertWidget(len(self._rows), widget)
            self._rows.append(widget)
        for widget, row in zip(self._rows, rows, strict=False):
            widget.set_row(row)
            widget.show()
        for widget in self._rows[len(rows) :]:
            widget.hide()
        self.note.setText(self._note(self.comparison))
        self.note.setVisible(bool(self.note.text()))
        self.show()

    def _note(self, c: Comparison) -> str:
        waiting = c.waiting
        if waiting and not self.interleave.isChecked():
            names = " and ".join(r.pane for r in waiting)
            verb = "waits" if len(waiting) == 1 else "wait"
            return (
                f"{names} {verb} for its turn so each pane gets the whole machine and the "
                "timings stay clean; switch on Interleave to stream them at once."
            )
        if self.interleave.isChecked() and not c.finished:
            return "Interleaved: the panes share the machine, each timed on its own rounds."
        return ""

    # ------------------------------------------------------------ actions

    def show_difference(self, row: Row) -> None:
        """Open the first differing token of ``row`` in both panes' inspectors."""
        index = row.same.first_difference
        if index is None:
            return
        for run in (row.baseline, row.run):
            pane = self._by_title.get(run.pane)
            if pane is not None and run.message is not None and run.message.tokens:
                pane.show_token(run.message, min(index, len(run.message.tokens) - 1))

    def markdown(self) -> str:
        return markdown_table(self.comparison) if self.comparison else ""

    def save_json(self, path: str | Path) -> None:
        """Write the comparison (both answers, figures, verdict) to ``path``."""
        if self.comparison is None:
            return
        text = json.dumps(export_json(self.comparison), indent=2, ensure_ascii=False)
        Path(path).write_text(text + "\n", encoding="utf-8")

    def _on_save_clicked(self) -> None:
        if self.comparison is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the comparison", "comparison.json", "JSON (*.json)"
        )
        if not path:
            return
        try:
            self.save_json(path)
        except OSError as exc:
            self.note.setText(f"Could not save the comparison: {exc}")
            self.note.show()


__all__ = ["ComparisonBar", "ComparisonRow", "detail_text", "seconds", "speed_text"]
