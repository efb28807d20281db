"""One chat pane: model picker, transcript, live metrics and its own inference controls.

A pane owns one PaneTranscript and at most one request in flight. It listens to the
bridge's signals (GUI thread, already coalesced to ~20 Hz) and ignores other panes'
requests. ``python -m app.chat_pane`` shows one against the fake engine.
"""

from __future__ import annotations

import itertools

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.bridge import EngineBridge
from app.catalog import ModelEntry
from app.inference_controls import InferenceControls
from app.metrics_plot import MetricsStrip
from app.pane_model import PaneTranscript
from app.transcript_view import TranscriptView
from app.widgets import IconButton
from engine.events import Finished, Generate, GenerationStats, LoadProgress, ModelLoaded
from engine.settings import SettingsError

_request_ids = itertools.count(1)


class ChatPane(QFrame):
    """A conversation with one model. Talks to the engine only through the bridge."""

    sig_busy_changed = Signal(bool)
    """A generation started (True) or ended (False)."""
    sig_close_requested = Signal()
    """The user asked to close this pane."""
    sig_activated = Signal()
    """The user clicked or typed into this pane (it becomes the Send target)."""
    sig_suggestion = Signal(str)
    """A suggested prompt was clicked in the empty transcript."""
    sig_notice = Signal(str)
    """Something the user should know that is not an error (e.g. a decoder fallback)."""

    def __init__(self, bridge: EngineBridge, title: str = "Pane", parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ChatPane")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.bridge = bridge
        self.title = title
        self.transcript = PaneTranscript()
        self.request_id: str | None = None
        self._status = ""
        self._entries: list[ModelEntry] = []
        self._build()
        bridge.sig_tokens.connect(self._on_bridge_tokens)
        bridge.sig_stats.connect(self._on_bridge_stats)
        bridge.sig_finished.connect(self._on_bridge_finished)
        bridge.sig_failed.connect(self._on_bridge_failed)
        bridge.sig_load_progress.connect(self._on_bridge_load_progress)
        bridge.sig_model_loaded.connect(self._on_bridge_model_loaded)
        bridge.sig_prompt_progress.connect(self._on_bridge_prompt_progress)
        self._refresh_header()

    # ------------------------------------------------------------ layout

    def _build(self) -> None:
        self.header = QWidget(self)
        self.header.setObjectName("PaneHeader")
        self.model_picker = QComboBox(self.header)
        self.model_picker.setObjectName("ModelPicker")
        self.model_picker.setToolTip("Model for this pane")
        # Long model names shrink with the pane instead of pushing the header wider.
        self.model_picker.setMinimumContentsLength(10)
        self.model_picker.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.model_picker.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.model_picker.setMaximumWidth(300)
        self.model_picker.currentIndexChanged.connect(self._on_picker_changed)
        self.decoder_chip = QToolButton(self.header)
        self.decoder_chip.setObjectName("Chip")
        self.decoder_chip.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.decoder_chip.setCursor(Qt.CursorShape.PointingHandCursor)
        self.decoder_chip.setToolTip("Speculative decoder: click to change")
        self.decoder_chip.clicked.connect(self._on_chip_clicked)
        self.live = QLabel(self.header)
        self.live.setObjectName("MessageMeta")
        self.highlight_button = IconButton(
            "highlight", "Highlight accepted draft tokens", self.header
        )
        self.highlight_button.setCheckable(True)
        self.highlight_button.toggled.connect(lambda _on: self._sync_view())
        self.settings_button = IconButton("settings", "Inference controls", self.header)
        self.settings_button.setCheckable(True)
        self.settings_button.toggled.connect(self.show_controls)
        self.stop_button = IconButton("stop", "Stop this reply", self.header, 16, "danger")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.hide()
        self.close_button = IconButton("close", "Close this pane", self.header)
        self.close_button.clicked.connect(self.sig_close_requested)
        hl = QHBoxLayout(self.header)
        hl.setContentsMargins(8, 6, 6, 6)
        hl.setSpacing(6)
        hl.addWidget(self.model_picker, 1)
        hl.addWidget(self.decoder_chip)
        hl.addStretch(0)
        hl.addWidget(self.live)
        hl.addWidget(self.stop_button)
        hl.addWidget(self.highlight_button)
        hl.addWidget(self.settings_button)
        hl.addWidget(self.close_button)

        self.view = TranscriptView(self)
        self.view.sig_suggestion.connect(self.sig_suggestion)
        self.metrics = MetricsStrip(self)
        self.metrics.hide()  # shown from the first generation on; empty plots say nothing
        self.controls = InferenceControls(self)
        self.controls.setFixedWidth(292)
        self.controls.hide()
        self.controls.sig_changed.connect(self._refresh_header)
        self.controls.sig_close_requested.connect(lambda: self.settings_button.setChecked(False))

        left = QVBoxLayout()
        left.setContentsMargins(0, 0, 0, 0)
        left.setSpacing(0)
        left.addWidget(self.view, 1)
        left.addWidget(self.metrics)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addLayout(left, 1)
        row.addWidget(self.controls)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(1, 1, 1, 1)
        outer.setSpacing(0)
        outer.addWidget(self.header)
        outer.addLayout(row, 1)
        for w in (self, self.view.viewport(), self.header, self.metrics):
            w.installEventFilter(self)
        theme.manager().sig_changed.connect(self._on_theme_changed)

    def _on_theme_changed(self, _pal: theme.Palette) -> None:
        # A bound method, so Qt drops the connection when this widget is deleted.
        self._refresh_header()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.MouseButtonPress:
            self.sig_activated.emit()
        return False

    def show_controls(self, on: bool) -> None:
        self.controls.setVisible(on)
        if self.settings_button.isChecked() != on:
            self.settings_button.setChecked(on)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        # In a narrow pane the model name matters more than the header's tok/s figure
        # (the metrics strip below shows it anyway).
        self.live.setVisible(event.size().width() >= 600)

    def _on_chip_clicked(self) -> None:
        # The chip is the quickest way to the decoder settings.
        self.show_controls(not self.controls.isVisible())

    def set_focused(self, on: bool) -> None:
        theme.set_property(self, "focused", on)

    def set_closable(self, on: bool) -> None:
        self.close_button.setVisible(on)

    # ------------------------------------------------------------ models

    def set_models(self, entries: list[ModelEntry], prefer: str | None = None) -> None:
        """Fill the model picker, keeping the current choice when it is still there."""
        current = prefer or self.model_id()
        self._entries = list(entries)
        self.model_picker.blockSignals(True)
        self.model_picker.clear()
        for e in entries:
            self.model_picker.addItem(
                theme.icon("models", theme.current().muted, 16), e.label, e.id
            )
        if not entries:
            self.model_picker.addItem("No models yet")
        ids = [e.id for e in entries]
        self.model_picker.setCurrentIndex(ids.index(current) if current in ids else 0)
        self.model_picker.setEnabled(bool(entries))
        self.model_picker.blockSignals(False)
        self._on_picker_changed()

    def model_entry(self) -> ModelEntry | None:
        i = self.model_picker.currentIndex()
        return self._entries[i] if 0 <= i < len(self._entries) else None

    def model_id(self) -> str | None:
        entry = self.model_entry()
        return entry.id if entry else None

    def _on_picker_changed(self, _index: int = 0) -> None:
        entry = self.model_entry()
        self.controls.set_model(entry)
        self.view.empty.set_model(entry.label if entry else "")

    # ------------------------------------------------------------ requests

    @property
    def busy(self) -> bool:
        return self.request_id is not None

    def send(self, text: str) -> bool:
        """Add ``text`` as a user turn and ask for a reply. False if it cannot start now."""
        entry = self.model_entry()
        if self.busy or not text.strip() or entry is None:
            return False
        settings = self.controls.settings()
        self.transcript.add_user(text.strip())
        self.transcript.start_assistant(entry.id, settings.to_dict())
        rid = f"{self.title.lower().replace(' ', '-')}-{next(_request_ids)}"
        try:
            command = Generate(
                request_id=rid,
                model=entry.id,
                messages=self.transcript.chat_messages(settings.system_prompt),
                thinking=settings.thinking,
                sampling=settings.sampling.validated(),
                decoder=settings.decoder.validated(),
            )
        except SettingsError as e:
            self.transcript.fail(str(e))
            self._sync_view()
            return False
        self.request_id = rid
        self._status = "Waiting for the engine\u2026"
        self.metrics.reset(drafting=settings.decoder.enabled)
        self.metrics.show()
        self.bridge.submit(command)
        self._sync_view()
        self.sig_busy_changed.emit(True)
        self._refresh_header()
        return True

    def stop(self) -> None:
        if self.request_id is not None:
            self._status = "Stopping\u2026"
            self.bridge.cancel(self.request_id)
            self._sync_view()

    def clear(self) -> None:
        """Start a new conversation in this pane (stops a reply in progress)."""
        self.stop()
        self._end_request()
        self.transcript.clear()
        self.metrics.reset(drafting=self.controls.settings().decoder.enabled)
        self.metrics.hide()
        self._sync_view()

    def _end_request(self) -> None:
        if self.request_id is not None:
            self.request_id = None
            self._status = ""
            self.sig_busy_changed.emit(False)
        self._refresh_header()

    def _sync_view(self) -> None:
        self.view.sync(self.transcript, self.highlight_button.isChecked(), self._status)

    # ------------------------------------------------------------ bridge slots (GUI thread)

    def _on_bridge_tokens(self, rid: str, tokens: list) -> None:
        if rid != self.request_id:
            return
        self._status = ""
        self.transcript.append_tokens(tokens)
        self._sync_view()

    def _on_bridge_stats(self, rid: str, stats: GenerationStats) -> None:
        if rid != self.request_id:
            return
        self.transcript.update_stats(stats)
        self.metrics.add_stats(stats)
        self.live.setText(f"{stats.generation_tps:.1f} tok/s")

    def _on_bridge_finished(self, rid: str, ev: Finished) -> None:
        if rid != self.request_id:
            return
        self.transcript.finish(ev)
        self.metrics.finish(ev.stats)
        self._status = ""
        self._sync_view()
        self._end_request()

    def _on_bridge_failed(self, rid: str, message: str) -> None:
        if rid != self.request_id:
            return
        self.transcript.fail(message)
        self._status = ""
        self._sync_view()
        self._end_request()

    def _on_bridge_load_progress(self, rid: str, ev: LoadProgress) -> None:
        if rid == self.request_id:
            self._status = (
                f"Loading {ev.model.rsplit('/', 1)[-1]} \u00b7 {ev.stage} {ev.fraction:.0%}"
            )
            self._sync_view()

    def _on_bridge_model_loaded(self, rid: str, ev: ModelLoaded) -> None:
        if rid == self.request_id:
            self._status = "Reading the prompt\u2026"
            if ev.decoder_note:
                self.sig_notice.emit(f"{self.title}: {ev.decoder_note}")
            self._sync_view()

    def _on_bridge_prompt_progress(self, rid: str, ev) -> None:
        if rid == self.request_id and ev.total:
            cached = f", {ev.cached} cached" if ev.cached else ""
            self._status = f"Reading the prompt \u00b7 {ev.processed}/{ev.total} tokens{cached}"
            self._sync_view()

    # ------------------------------------------------------------ header

    def _refresh_header(self) -> None:
        pal = theme.current()
        self.stop_button.setVisible(self.busy)
        label = self.controls.decoder_label()
        on = label != "Decoder off"
        self.decoder_chip.setText(label)
        self.decoder_chip.setIcon(theme.icon("bolt", pal.accent if on else pal.muted, 14))
        theme.set_property(self.decoder_chip, "active", on)
        self.highlight_button.setVisible(
            on or any(t.drafted for m in self.transcript.messages for t in m.tokens)
        )
        if not self.busy:
            last = self.transcript.last
            tps = last.stats.get("generation_tps", 0.0) if last and last.stats else 0.0
            self.live.setText(f"{tps:.1f} tok/s" if tps else "")


def _demo_pane(bridge: EngineBridge, catalog) -> ChatPane:
    pane = ChatPane(bridge, "Pane 1")
    pane.set_models(catalog.models())
    pane.sig_suggestion.connect(pane.send)
    return pane


if __name__ == "__main__":
    from app.demo import run_demo

    run_demo(_demo_pane)
