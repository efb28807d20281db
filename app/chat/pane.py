"""One chat pane: model picker, transcript, live metrics and its own inference controls.

A pane owns one PaneTranscript and at most one request in flight. It listens to the
bridge's signals (GUI thread, already coalesced to 10 Hz) and ignores other panes'
requests. Clicking a token opens the token inspector in the pane's right drawer.
Saving, branches, edits and replays are the conversation controller's job: the pane
announces them (``sig_turn_started``, ``sig_*_requested``) and runs the commands it is
given (``start``). ``python -m app.chat.pane`` shows one against the fake engine.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.bridge import EngineBridge
from app.chat.inference_controls import InferenceControls
from app.chat.metrics_plot import MetricsStrip
from app.chat.pane_model import Message, PaneTranscript
from app.chat.styles import pane_qss
from app.chat.token_inspector import TokenInspector
from app.chat.transcript_view import TranscriptView
from app.library.catalog import ModelEntry
from app.tasks import run_blocking
from app.widgets import IconButton
from engine import chat_tools
from engine.chat import DEFAULT_THINK_TAGS
from engine.events import Finished, Generate, GenerationStats, LoadProgress, ModelLoaded
from engine.settings import ModelSettings, SettingsError

_request_ids = itertools.count(1)
INSPECTOR_WIDTH = 276


class _ToolRun(QObject):
    """One tool call on a worker thread; its result comes back to the pane."""

    def __init__(self, pane: ChatPane, message: Message, call: dict):
        super().__init__(pane)
        self.pane, self.message, self.call = pane, message, call

    def start(self, host) -> None:
        name, arguments = self.call["name"], self.call.get("arguments", {})
        run_blocking(lambda: host.call(name, arguments), self._on_worker_done, self._on_failed)

    def _on_worker_done(self, result) -> None:
        self.pane._tool_done(self.message, self.call, result)
        self.deleteLater()

    def _on_failed(self, exc: BaseException) -> None:
        from engine.mcp import ToolResult

        self._on_worker_done(ToolResult(f"the tool could not run: {exc}", True, 0.0))


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
    sig_turn_started = Signal(object, object)
    """A reply was asked for: (the user Message it answers, the Generate command); the
    reply is ``transcript.last``. Emitted before the command reaches the engine."""
    sig_replay_requested = Signal(object, int, int)
    """Replay a reply from a token: (Message, token index, chosen token id)."""
    sig_edit_requested = Signal(object, str, str, bool, bool)
    """Save an edit: (Message, content, reasoning, end the thinking, then generate)."""
    sig_branch_requested = Signal(object, int)
    """Show another version of a message: (Message, -1 or +1)."""
    sig_continue_requested = Signal(object)
    """Continue generating a reply (Message)."""
    sig_retry_requested = Signal(object)
    """Generate a reply again as a new version (Message)."""
    sig_clone_requested = Signal(object)
    """Clone the conversation up to a message into a new pane (Message)."""
    sig_tool_calls_changed = Signal(object)
    """A reply's tool calls were found or answered (Message): save its text and calls."""
    sig_tool_result = Signal(object)
    """A tool's result was added to the transcript (a "tool" Message): save it."""
    sig_tools_changed = Signal()
    """The Tools switch or the servers it offers changed (saved with the panes)."""

    def __init__(self, bridge: EngineBridge, title: str = "Pane", parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ChatPane")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.bridge = bridge
        self.title = title
        self.key = ""  # this pane's name in the conversation store, set by the controller
        self.transcript = PaneTranscript()
        self.request_id: str | None = None
        # How models load for this pane's requests (the app's dtype setting).
        self.load_settings = ModelSettings()
        # Compare mode's interleave group for the next request ("" runs it on its own).
        self.interleave_group = ""
        # MCP tools (app.tool_servers.ToolServerHost, set by the window) and the tool
        # round in progress: how the current request offered them, rounds in a row.
        self.tool_servers = None
        self._tool_turn: chat_tools.ToolTurn | None = None
        self._tool_rounds = 0
        self._tools_running = 0
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
        # Context used by the latest reply (prompt + generated) against the model's window.
        self.context_meter = QLabel(self.header)
        self.context_meter.setObjectName("MessageMeta")
        self._context_length: int | None = None
        self.highlight_button = IconButton(
            "highlight", "Highlight accepted draft tokens", self.header
        )
        self.highlight_button.setCheckable(True)
        self.highlight_button.toggled.connect(lambda _on: self._sync_view())
        self.tools_button = IconButton(
            "tool",
            "Tools: let the model call the MCP servers' tools (Settings \u203a Tools)",
            self.header,
        )
        self.tools_button.setCheckable(True)
        self.tools_button.toggled.connect(self._on_tools_toggled)
        # Its arrow picks which servers this pane offers (all that run, by default).
        self.tools_menu = QMenu(self.tools_button)
        self.tools_menu.aboutToShow.connect(self._fill_tools_menu)
        self.tools_button.setMenu(self.tools_menu)
        self.tools_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        self.servers_off: set[str] = set()
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
        hl.addWidget(self.context_meter)
        hl.addWidget(self.live)
        hl.addWidget(self.stop_button)
        hl.addWidget(self.highlight_button)
        hl.addWidget(self.tools_button)
        hl.addWidget(self.settings_button)
        hl.addWidget(self.close_button)

        self.view = TranscriptView(self)
        self.view.sig_suggestion.connect(self.sig_suggestion)
        self.view.sig_token_clicked.connect(self.inspect)
        self.view.sig_edit_submitted.connect(self.sig_edit_requested)
        self.view.sig_branch.connect(self.sig_branch_requested)
        self.view.sig_continue.connect(self.sig_continue_requested)
        self.view.sig_retry.connect(self.sig_retry_requested)
        self.view.sig_clone.connect(self.sig_clone_requested)
        self.view.sig_tool_decision.connect(self.answer_tool_call)
        self.inspector = TokenInspector(self)
        self.inspector.setFixedWidth(INSPECTOR_WIDTH)
        self.inspector.hide()
        self.inspector.sig_replay.connect(self.sig_replay_requested)
        self.inspector.sig_token_changed.connect(self._on_inspector_token_changed)
        self.inspector.sig_closed.connect(lambda: self._on_inspector_token_changed(None, -1))
        self.metrics = MetricsStrip(self)
        self.metrics.hide()  # shown with a reply's first figures; empty plots say nothing
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
        row.addWidget(self.inspector)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(1, 1, 1, 1)
        outer.setSpacing(0)
        outer.addWidget(self.header)
        outer.addLayout(row, 1)
        for w in (self, self.view.viewport(), self.header, self.metrics):
            w.installEventFilter(self)
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self.setStyleSheet(pane_qss())

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        # A bound method, so Qt drops the connection when this widget is deleted.
        self.setStyleSheet(pane_qss(pal))
        self._refresh_header()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.MouseButtonPress:
            self.sig_activated.emit()
        return False

    def show_controls(self, on: bool) -> None:
        if on and self.inspector.isVisible():
            self.inspector.hide()  # one drawer at a time: a pane is narrow enough
            self._on_inspector_token_changed(None, -1)
        self.controls.setVisible(on)
        if self.settings_button.isChecked() != on:
            self.settings_button.setChecked(on)

    # ------------------------------------------------------------ token inspector

    def inspect(self, message: Message, index: int) -> None:
        """Open the token inspector on token ``index`` of ``message``."""
        if not message.tokens:
            return
        self.show_controls(False)
        widget = self.view.widget_for(message)
        if widget is not None and not widget.tokens_mode:
            widget.set_tokens_mode(True)
        self.inspector.show_token(message, index)
        self._refresh_inspector()

    def show_token(self, message: Message, index: int) -> None:
        """Inspect token ``index`` and scroll the transcript to it (compare's "Show")."""
        self.inspect(message, index)
        self.view.scroll_to_token(message, index)

    def _on_inspector_token_changed(self, message: Message | None, index: int) -> None:
        for w in self.view.message_widgets:
            w.select_token(index if w.message is message else None)

    def _refresh_inspector(self) -> None:
        m = self.inspector.message
        if not self.inspector.isVisible() or m is None:
            return
        if not any(x is m for x in self.transcript.messages):
            self.inspector.hide()  # its message went with another branch
            return
        if self.busy:
            why = "Replay is available once the reply in progress ends."
        elif m.id is None or not self.view.actions:
            why = "This reply is not saved in a conversation, so it cannot be replayed."
        else:
            why = ""
        self.inspector.set_replay_blocked(why)
        self.inspector.refresh()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        # In a narrow pane the model name matters more than the header's tok/s figure
        # (the metrics strip below shows it anyway).
        self.live.setVisible(event.size().width() >= 600)
        self.context_meter.setVisible(event.size().width() >= 680)

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
        return self.request_id is not None or self._tools_running > 0

    def new_request_id(self) -> str:
        return f"{self.title.lower().replace(' ', '-')}-{next(_request_ids)}"

    def send(self, text: str) -> bool:
        """Add ``text`` as a user turn and ask for a reply. False if it cannot start now."""
        if self.busy or not text.strip() or self.model_entry() is None:
            return False
        self.transcript.add_user(text.strip())
        self._tool_rounds = 0
        return self.ask()

    def ask(self) -> bool:
        """Ask for a reply to the transcript as it is (its last message is the user's)."""
        entry = self.model_entry()
        last = self.transcript.last
        if self.busy or entry is None or last is None or last.role not in ("user", "tool"):
            return False
        settings = self.controls.settings()
        messages = self.transcript.chat_messages(settings.system_prompt)
        self.transcript.start_assistant(entry.id, settings.to_dict())
        try:
            messages, offered = self._with_tools(entry, messages)
            command = Generate(
                request_id=self.new_request_id(),
                model=entry.id,
                messages=messages,
                thinking=settings.thinking,
                sampling=settings.sampling.validated(),
                decoder=settings.decoder.validated(),
                interleave=self.interleave_group,
                **offered,
            )
        except SettingsError as e:
            self.transcript.fail(str(e))
            self._sync_view()
            return False
        self.sig_turn_started.emit(last, command)
        self.start(command)
        return True

    def start(self, command: Generate) -> None:
        """Run ``command``; its events stream into ``transcript.last``."""
        if command.load != self.load_settings:
            command = replace(command, load=self.load_settings)
        self.request_id = command.request_id
        self._status = "Waiting for the engine\u2026"
        self.metrics.reset(drafting=command.decoder.enabled)
        self.bridge.submit(command)
        self._sync_view()
        self.sig_busy_changed.emit(True)
        self._refresh_header()

    def set_messages(self, messages: list[Message], start: int = 0) -> None:
        """Show ``messages`` from position ``start`` on (a loaded conversation, a branch)."""
        self.transcript.replace_from(start, messages)
        if start == 0:
            self.metrics.hide()
        self._sync_view()
        self._refresh_header()

    def set_actions_enabled(self, on: bool) -> None:
        """Offer edit, versions, continue, retry, clone and replay (they need a store)."""
        self.view.set_actions(on)
        self._refresh_inspector()

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
        self._refresh_inspector()

    def _sync_view(self) -> None:
        self.view.sync(self.transcript, self.highlight_button.isChecked(), self._status)
        self._refresh_inspector()

    # ------------------------------------------------------------ bridge slots (GUI thread)

    def _show_metrics(self) -> None:
        """Shown with the first figures, not on send: sending to several panes then
        stays one quick step, and each pane's plot first paints on its own."""
        if self.metrics.isHidden():
            self.metrics.show()

    def _on_bridge_tokens(self, rid: str, tokens: list) -> None:
        if rid != self.request_id:
            return
        self._show_metrics()
        self._status = ""
        self.transcript.append_tokens(tokens)
        self._sync_view()

    def _on_bridge_stats(self, rid: str, stats: GenerationStats) -> None:
        if rid != self.request_id:
            return
        self._show_metrics()
        self.transcript.update_stats(stats)
        self.metrics.add_stats(stats)
        self.live.setText(f"{stats.generation_tps:.1f} tok/s")
        self._show_context(stats.prompt_tokens + stats.generation_tokens)

    def _on_bridge_finished(self, rid: str, ev: Finished) -> None:
        if rid != self.request_id:
            return
        self.transcript.finish(ev)
        calls = self._read_tool_calls()
        if ev.stats is not None:
            self._show_context(ev.stats.prompt_tokens + ev.stats.generation_tokens)
        self._show_metrics()
        self.metrics.finish(ev.stats)
        self._status = ""
        self._sync_view()
        self._end_request()
        if calls:
            self._run_allowed_calls(self.transcript.last)

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
            self._context_length = ev.context_length
            self.transcript.think_tags = ev.think_tags or DEFAULT_THINK_TAGS
            if ev.decoder_note:
                self.sig_notice.emit(f"{self.title}: {ev.decoder_note}")
            self._sync_view()

    def _on_bridge_prompt_progress(self, rid: str, ev) -> None:
        if rid == self.request_id and ev.total:
            cached = f", {ev.cached} cached" if ev.cached else ""
            self._status = f"Reading the prompt \u00b7 {ev.processed}/{ev.total} tokens{cached}"
            self._sync_view()

    def _show_context(self, used: int) -> None:
        """'used / window ctx' in the header; the window once the engine has said it."""
        if not used:
            self.context_meter.setText("")
            return
        size = self._context_length
        self.context_meter.setText(f"{used:,} / {size:,} ctx" if size else f"{used:,} ctx")
        share = f" ({used / size:.0%} of the model's {size:,}-token window)" if size else ""
        self.context_meter.setToolTip(f"Context: {used:,} tokens{share}, prompt and reply")
        full = bool(size) and used >= 0.9 * size
        theme.set_property(self.context_meter, "warn", full)

    # ------------------------------------------------------------ tools (MCP)

    @property
    def tools_on(self) -> bool:
        """The pane offers the MCP servers' tools to its model."""
        return self.tools_button.isChecked()

    def _on_tools_toggled(self, on: bool) -> None:
        self.sig_tools_changed.emit()
        host = self.tool_servers
        if on and (host is None or not host.config.enabled):
            self.sig_notice.emit(
                f"{self.title}: there is no tool server yet; add one in Settings \u203a Tools."
            )

    def _fill_tools_menu(self) -> None:
        menu, host = self.tools_menu, self.tool_servers
        menu.clear()
        servers = host.config.enabled if host is not None else ()
        if not servers:
            menu.addAction("No tool servers: add one in Settings \u203a Tools").setEnabled(False)
            return
        for server in servers:
            status = host.status(server.name)
            ready = status is not None and status.state == "ready"
            n = len(status.tools) if ready else 0
            label = (
                f"{server.name}  \u00b7  {n} tool{'s' if n != 1 else ''}"
                if ready
                else (f"{server.name}  \u00b7  {status.state if status else 'stopped'}")
            )
            action = menu.addAction(label)
            action.setCheckable(True)
            action.setChecked(server.name not in self.servers_off)
            action.toggled.connect(lambda on, name=server.name: self._set_server_offered(name, on))

    def _set_server_offered(self, name: str, on: bool) -> None:
        (self.servers_off.discard if on else self.servers_off.add)(name)
        self.sig_tools_changed.emit()

    def _offered_tools(self) -> list[dict]:
        """The ready servers' tools this pane offers (its menu may leave servers out)."""
        host = self.tool_servers
        if host is None:
            return []
        defs = host.tool_definitions()
        if self.servers_off:
            defs = [
                d for d in defs if host.server_of(d["function"]["name"]) not in self.servers_off
            ]
        return defs

    def _with_tools(self, entry: ModelEntry, messages) -> tuple[tuple, dict]:
        """The request's messages and Generate fields with the tools offered, when the
        pane's Tools switch is on and a server has some."""
        self._tool_turn = None
        defs = self._offered_tools()
        offer = self.tools_button.isChecked() and bool(defs)
        if not offer and not any(m.role == "tool" for m in messages):
            return messages, {}
        # Earlier calls and results are written in the model's format even when no tool
        # is offered now (the switch is off, or the server has gone).
        folder = Path(entry.path) if entry.path else None
        turn = chat_tools.prepare(folder, entry.id, messages, defs if offer else [])
        if offer:
            self._tool_turn = turn
        return turn.messages, {"tools": turn.template_tools, "continue_final": turn.continue_final}

    def _read_tool_calls(self) -> list[dict]:
        """The calls in the reply that just finished, kept on it as pending."""
        msg, turn = self.transcript.last, self._tool_turn
        self._tool_turn = None
        if turn is None or msg is None or msg.role != "assistant" or msg.error:
            return []
        visible, found = chat_tools.reply_calls(turn, msg.content)
        if not found:
            return []
        host = self.tool_servers
        calls = [
            {
                "id": c.id,
                "name": c.name,
                "server": host.server_of(c.name) if host else "",
                "arguments": c.arguments,
                "text": chat_tools.history_text(turn, c.name, c.arguments),
                "state": "pending",
            }
            for c in found
        ]
        msg.content = visible
        msg.settings = {**msg.settings, "tool_calls": calls}
        self.transcript.changed()
        self.sig_tool_calls_changed.emit(msg)
        return calls

    def _answerable(self, message: Message) -> bool:
        """Calls can be answered while their reply is the last one (results follow it)."""
        msgs = self.transcript.messages
        if not any(m is message for m in msgs):
            return False
        after = msgs[self.transcript.index_of(message) + 1 :]
        return all(m.role == "tool" for m in after) and self.request_id is None

    def _run_allowed_calls(self, message: Message | None) -> None:
        host = self.tool_servers
        if message is None or host is None:
            return
        for call in message.settings.get("tool_calls") or ():
            if call["state"] == "pending" and call.get("server") in host.always_allowed:
                self.answer_tool_call(message, call["id"], "once")

    def answer_tool_call(self, message: Message, call_id: str, decision: str) -> None:
        """Run a tool call ("once", "always" for its server too) or refuse it ("deny")."""
        calls = message.settings.get("tool_calls") or []
        call = next((c for c in calls if c["id"] == call_id), None)
        if call is None or call["state"] != "pending":
            return
        if not self._answerable(message):
            self.sig_notice.emit(f"{self.title}: that tool call belongs to an earlier turn.")
            return
        if decision == "deny":
            call["state"] = "denied"
            self._add_result(message, call, "The user did not allow this tool call.", True, 0.0)
            return
        host = self.tool_servers
        if host is None:
            return
        if decision == "always" and call.get("server"):
            host.always_allowed.add(call["server"])
        call["state"] = "running"
        self._tools_running += 1
        self.transcript.changed()
        self._sync_view()
        self.sig_busy_changed.emit(True)
        self._refresh_header()
        _ToolRun(self, message, call).start(host)
        if decision == "always":
            self._run_allowed_calls(message)

    def _tool_done(self, message: Message, call: dict, result) -> None:
        self._tools_running -= 1
        call["state"] = "done"
        # The pane may have moved on meanwhile (a new chat, another conversation): the
        # result then belongs nowhere on screen.
        if any(m is message for m in self.transcript.messages):
            self._add_result(
                message, call, result.text, result.is_error, result.duration_s, result.truncated
            )
        if not self.busy:
            self.sig_busy_changed.emit(False)
            self._refresh_header()

    def _add_result(
        self,
        message: Message,
        call: dict,
        text: str,
        is_error: bool,
        seconds: float,
        truncated: bool = False,
    ) -> None:
        tool = {
            "call_id": call["id"],
            "name": call["name"],
            "server": call.get("server", ""),
            "arguments": call.get("arguments", {}),
            "duration_s": round(seconds, 4),
            "is_error": is_error,
            "truncated": truncated,
        }
        result = Message("tool", text, model=message.model, settings={"tool": tool})
        self.transcript.messages.append(result)
        self.transcript.changed()
        self.sig_tool_calls_changed.emit(message)
        self.sig_tool_result.emit(result)
        self._sync_view()
        if all(c["state"] in ("done", "denied") for c in message.settings["tool_calls"]):
            self._continue_after_tools()

    def _continue_after_tools(self) -> None:
        """Every call of the reply is answered: the model carries on from the results."""
        if self._tool_rounds >= chat_tools.MAX_TOOL_ROUNDS:
            self.sig_notice.emit(
                f"{self.title}: stopped after {chat_tools.MAX_TOOL_ROUNDS} tool rounds in a "
                "row; send a message to carry on."
            )
            return
        self._tool_rounds += 1
        self.ask()

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
