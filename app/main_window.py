"""The main window: top bar, the sidebar (chats), chat panes side by side, the shared
prompt box.

GUI thread only. The window becomes *ready* (``sig_ready``) once at least one model
is available and every pane has picked one; before that it shows the first-run page.
It owns the one ConversationStore of the app; the ConversationController saves and
restores what the panes show, and the last conversation reopens on start.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.bridge import EngineBridge
from app.chat.inference_controls import set_defaults
from app.chat.pane import ChatPane
from app.chat.prompt_box import PromptBox
from app.compare.bar import ComparisonBar
from app.conversations.controller import ConversationController
from app.library.catalog import ModelCatalog
from app.library.first_run import FirstRunPage, StarterFn, StarterImport
from app.library.models_page import ModelsPage
from app.serve.page import ServePage
from app.settings.app_settings import AppSettings
from app.settings.page import SettingsPage
from app.sidebar import Sidebar
from app.tool_servers import ToolServerHost
from app.train.page import TrainPage
from app.widgets import IconButton
from engine.settings import ModelSettings
from engine.storage import ConversationStore, StorageError

MAX_PANES = 4
log = logging.getLogger(__name__)


def open_store() -> tuple[ConversationStore | None, str]:
    """The conversations database, and a message for the user when there is one to give
    (it was damaged and replaced, or it cannot be opened at all)."""
    try:
        store = ConversationStore()
    except (StorageError, OSError) as exc:
        log.exception("cannot open the conversations database")
        return None, f"Conversations cannot be saved: {exc}"
    return store, store.recovery.message if store.recovery else ""


class MainWindow(QMainWindow):
    sig_ready = Signal()
    """Models are available and the panes can chat."""

    def __init__(
        self,
        bridge: EngineBridge,
        catalog: ModelCatalog,
        starter: StarterFn | None = None,
        panes: int = 2,
        store: ConversationStore | None = None,
        settings: AppSettings | None = None,
        api_catalog: object = None,
    ):
        """``api_catalog``: the Serve page's engine.server ModelCatalog (default: the
        local library; the fake engine passes its own)."""
        super().__init__()
        self.bridge = bridge
        self.catalog = catalog
        self.settings = settings or AppSettings(parent=self)
        self._api_catalog = api_catalog
        self._on_settings_changed("pane")
        self.panes: list[ChatPane] = []
        self.focused: ChatPane | None = None
        self.ready = False
        self._pane_numbers = 0
        self._compare_rounds = 0
        self.setWindowTitle("Lookahead")
        self.setWindowIcon(theme.app_icon())
        self.resize(1360, 860)
        store_notice = ""
        if store is None:
            store, store_notice = open_store()
        self.store = store
        self.controller: ConversationController | None = None
        self.tool_servers: ToolServerHost | None = None  # with the sidebar (Settings)
        if store is not None:
            self.controller = ConversationController(store, bridge, self, self)
        self._build()
        if store_notice:
            self.statusBar().showMessage(store_notice, 15000)
            if self.sidebar is not None:
                self.sidebar.show_notice(store_notice)
        for _ in range(max(1, panes)):
            self.add_pane()
        self._importer = StarterImport(starter, self) if starter else None
        if self._importer:
            self._importer.sig_progress.connect(self.setup.show_progress)
            self._importer.sig_done.connect(self._on_importer_done)
            self._importer.sig_failed.connect(self._on_importer_failed)
        self.setup.sig_retry.connect(self._start_import)
        self.settings.sig_changed.connect(self._on_settings_changed)
        QApplication.instance().focusChanged.connect(self._on_app_focus_changed)
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self._on_theme_changed(theme.current())
        QTimer.singleShot(0, self.refresh_models)

    # ------------------------------------------------------------ layout

    def _build(self) -> None:
        central = QWidget(self)
        central.setObjectName("Central")
        self.setCentralWidget(central)
        top = QWidget(central)
        top.setObjectName("TopBar")
        self.logo = QLabel(top)
        self.logo.setPixmap(theme.app_icon().pixmap(24, 24))
        title = QLabel("Lookahead", top)
        title.setObjectName("AppTitle")
        self.subtitle = QLabel("", top)
        self.subtitle.setObjectName("AppSubtitle")
        self.new_chat_button = QPushButton("New chat", top)
        self.new_chat_button.setToolTip("Clear every pane and start over (Ctrl+N)")
        self.new_chat_button.clicked.connect(self.new_chat)
        self.add_pane_button = QPushButton("Add pane", top)
        self.add_pane_button.setToolTip("Compare another model or setting side by side")
        self.add_pane_button.clicked.connect(lambda: self.add_pane())
        self.theme_button = IconButton("moon", "Switch between light and dark", top, 18)
        self.theme_button.clicked.connect(self.toggle_theme)
        for b in (self.new_chat_button, self.add_pane_button):
            b.setIconSize(QSize(16, 16))
            b.setCursor(Qt.CursorShape.PointingHandCursor)
        tl = QHBoxLayout(top)
        tl.setContentsMargins(16, 8, 12, 8)
        tl.setSpacing(8)
        tl.addWidget(self.logo)
        tl.addWidget(title)
        tl.addSpacing(6)
        tl.addWidget(self.subtitle)
        tl.addStretch(1)
        tl.addWidget(self.new_chat_button)
        tl.addWidget(self.add_pane_button)
        tl.addWidget(self.theme_button)

        self.sidebar: Sidebar | None = None
        if self.controller is not None:
            self._build_sidebar(central)
            self.new_chat_button.hide()  # the Chats list has its own "new chat"
            self.new_chat_button = self.sidebar.conversations.new_button
        self.stack = QStackedWidget(central)
        self.setup = FirstRunPage(self.stack)
        chat = QWidget(self.stack)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, chat)
        self.splitter.setHandleWidth(10)
        self.splitter.setChildrenCollapsible(False)
        self.prompt = PromptBox(chat)
        self.prompt.sig_send.connect(self._on_prompt_send)
        self.prompt.sig_stop.connect(self.stop_all)
        cl = QVBoxLayout(chat)
        cl.setContentsMargins(12, 12, 12, 12)
        cl.setSpacing(10)
        # Compare mode's verdict: shown once two panes answered the same prompt.
        self.compare_bar = ComparisonBar(lambda: self.panes, chat)
        self.compare_bar.interleave.setChecked(self.settings.values.interleave)
        self.compare_bar.sig_interleave_changed.connect(
            lambda on: self.settings.set("interleave", on)
        )
        cl.addWidget(self.splitter, 1)
        cl.addWidget(self.compare_bar)
        cl.addWidget(self.prompt)
        self.stack.addWidget(self.setup)
        self.stack.addWidget(chat)
        self.chat_page = chat
        self.sections: dict[str, QWidget] = {"chats": chat}  # sidebar section -> page
        if self.sidebar is not None:
            for key, page in (
                ("models", self.models_page),
                ("train", self.train_page),
                ("serve", self.serve_page),
                ("settings", self.settings_page),
            ):
                # In a scroll area: a page's columns must not set the window's minimum width.
                scroll = QScrollArea(self.stack)
                scroll.setWidgetResizable(True)
                scroll.setFrameShape(QFrame.Shape.NoFrame)
                frame = QWidget(scroll)
                frame.setObjectName("Central")  # the window background, margins like the chats
                fl = QVBoxLayout(frame)
                fl.setContentsMargins(16, 12, 12, 12)
                fl.addWidget(page)
                scroll.setWidget(frame)
                self.stack.addWidget(scroll)
                self.sections[key] = scroll

        body = QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(0)
        if self.sidebar is not None:
            body.addWidget(self.sidebar)
        body.addWidget(self.stack, 1)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(top)
        layout.addLayout(body, 1)
        self.statusBar().setSizeGripEnabled(False)
        self.engine_label = QLabel("Engine idle", self)
        self.engine_label.setObjectName("Note")
        self.statusBar().addPermanentWidget(self.engine_label)
        self.bridge.sig_model_loaded.connect(self._on_bridge_model_loaded)
        self.bridge.sig_stats.connect(self._on_bridge_stats)
        QShortcut(QKeySequence("Escape"), self, activated=self.stop_all)
        QShortcut(QKeySequence("Ctrl+N"), self, activated=self.new_chat)
        QShortcut(QKeySequence("Ctrl+L"), self, activated=lambda: self.prompt.edit.setFocus())

    def _build_sidebar(self, parent: QWidget) -> None:
        assert self.controller is not None and self.store is not None
        self.sidebar = Sidebar(self.store, parent)
        chats = self.sidebar.conversations
        chats.sig_open.connect(self.controller.open)
        chats.sig_new.connect(self.new_chat)
        chats.sig_rename.connect(self.controller.rename)
        chats.sig_clone.connect(self.controller.clone)
        chats.sig_delete.connect(self.controller.delete)
        self.sidebar.sig_section.connect(self.show_section)
        self.models_page = ModelsPage(parent=parent)
        self.models_page.sig_library_changed.connect(self._on_models_library_changed)
        self.sidebar.add_section("models", "Models", "models")
        self.train_page = TrainPage(self.store, self.catalog, parent)
        self.train_page.sig_finished.connect(self._on_training_finished)
        self.train_page.sig_compare.connect(self.compare_decoder)
        self.train_page.sig_library_changed.connect(self._on_train_library_changed)
        self.sidebar.add_section("train", "Train", "train")
        self.serve_page = ServePage(self.bridge, self.settings, self._api_catalog, parent)
        self.models_page.sig_library_changed.connect(self.serve_page.refresh_models)
        self.sidebar.add_section("serve", "Serve", "serve")
        self.tool_servers = ToolServerHost(parent=self)
        self.settings_page = SettingsPage(self.settings, parent, self.tool_servers)
        QTimer.singleShot(0, self.tool_servers.start_enabled)  # mcp.json's enabled servers
        self.sidebar.add_section("settings", "Settings", "settings")
        self.controller.sig_conversations_changed.connect(chats.refresh_soon)
        self.controller.sig_conversations_changed.connect(self._refresh_title)
        self.controller.sig_current_changed.connect(self._on_controller_current_changed)
        self.controller.sig_notice.connect(self._on_pane_notice)

    def show_section(self, key: str) -> None:
        """Show the chats (panes and prompt) or another section's page."""
        page = self.sections.get(key)
        if page is not None and self.ready:
            self.stack.setCurrentWidget(page)
            self.add_pane_button.setVisible(key == "chats")  # panes live on the chats page
        if self.sidebar is not None:
            self.sidebar.set_section(key)

    def _on_controller_current_changed(self, conversation_id: int | None) -> None:
        assert self.sidebar is not None
        self.sidebar.conversations.refresh()
        self.sidebar.conversations.set_current(conversation_id)
        self._refresh_title()
        self.show_section("chats")

    def _refresh_title(self) -> None:
        title = ""
        if self.controller is not None and self.controller.current is not None:
            with contextlib.suppress(StorageError):
                title = self.controller.store.get_conversation(self.controller.current).title
        self.setWindowTitle(f"{title} \u2014 Lookahead" if title else "Lookahead")

    # ------------------------------------------------------------ panes

    def add_pane(self) -> ChatPane | None:
        if len(self.panes) >= MAX_PANES:
            return None
        self._pane_numbers += 1
        pane = ChatPane(self.bridge, f"Pane {self._pane_numbers}", self.splitter)
        pane.setMinimumWidth(340)
        pane.set_models(
            self.catalog.models(), prefer=self.focused.model_id() if self.focused else None
        )
        if self.panes:
            # A new pane starts as a copy of the last one's settings, decoder switched
            # the other way, so "add pane" immediately sets up a with/without comparison.
            template = self.panes[-1].controls.settings()
            pane.controls.set_settings(template)
            pane.controls.set_decoder_enabled(not template.decoder.enabled)
            pane.tools_button.setChecked(self.panes[-1].tools_on)
        pane.sig_close_requested.connect(lambda p=pane: self.remove_pane(p))
        pane.sig_activated.connect(lambda p=pane: self.set_focused(p))
        pane.sig_busy_changed.connect(self._on_pane_busy_changed)
        pane.sig_suggestion.connect(self.prompt.set_text)
        pane.sig_notice.connect(self._on_pane_notice)
        pane.controls.sig_changed.connect(self._sync_served_model)
        pane.load_settings = ModelSettings(self.settings.dtype)
        pane.tool_servers = self.tool_servers
        self.splitter.addWidget(pane)
        self.panes.append(pane)
        if self.controller is not None:
            self.controller.attach(pane)
        self.splitter.setSizes([1000] * len(self.panes))
        self.set_focused(pane if self.focused is None else self.focused)
        self._refresh_panes()
        return pane

    def remove_pane(self, pane: ChatPane) -> None:
        if len(self.panes) <= 1 or pane not in self.panes:
            return
        pane.stop()
        self.panes.remove(pane)
        pane.hide()
        pane.deleteLater()
        if self.focused is pane:
            self.focused = None
            self.set_focused(self.panes[0])
        self._refresh_panes()
        self._on_pane_busy_changed()
        if self.controller is not None:
            self.controller.save_layout()

    def set_focused(self, pane: ChatPane) -> None:
        self.focused = pane
        for p in self.panes:
            p.set_focused(p is pane and len(self.panes) > 1)
        self._refresh_panes()
        self._sync_served_model()

    def _sync_served_model(self) -> None:
        """Tell the Serve page what the focused pane runs (its API model override)."""
        pane = self.focused
        if self.sidebar is not None and pane is not None and pane in self.panes:
            decoder = pane.controls.settings().decoder.decoder
            self.serve_page.set_focused_model(pane.model_id(), decoder, pane.title)

    def _on_settings_changed(self, section: str) -> None:
        if section == "pane":
            d = self.settings.pane
            set_defaults(d.thinking, d.max_tokens, d.max_loop_count)
        elif section == "dtype":
            for p in self.panes:
                p.load_settings = ModelSettings(self.settings.dtype)

    def _refresh_panes(self) -> None:
        for p in self.panes:
            p.set_closable(len(self.panes) > 1)
        self.add_pane_button.setEnabled(len(self.panes) < MAX_PANES)
        name = ""
        if self.focused is not None:
            entry = self.focused.model_entry()
            name = self.focused.title + (f" ({entry.label})" if entry else "")
        self.prompt.set_panes(len(self.panes), name)

    def _on_app_focus_changed(self, _old: QWidget | None, new: QWidget | None) -> None:
        while new is not None:
            if isinstance(new, ChatPane) and new in self.panes:
                self.set_focused(new)
                return
            new = new.parentWidget()

    # ------------------------------------------------------------ sending

    def send(self, text: str, to_all: bool = True) -> list[ChatPane]:
        """Send ``text`` to every pane, or to the focused one. Returns the panes that took it."""
        targets = self.panes if to_all else [self.focused or self.panes[0]]
        group = ""
        if len(targets) > 1 and self.compare_bar.interleave.isChecked():
            self._compare_rounds += 1
            group = f"compare-{self._compare_rounds}"  # the engine alternates their rounds
        for p in targets:
            p.interleave_group = group
        started = [p for p in targets if p.send(text)]
        for p in targets:
            p.interleave_group = ""
        skipped = [p.title for p in targets if p not in started]
        if skipped:
            self.statusBar().showMessage(
                f"{', '.join(skipped)} still answering or has no model; stop it first", 5000
            )
        return started

    def _on_prompt_send(self, text: str, to_all: bool) -> None:
        self.send(text, to_all)

    def stop_all(self) -> None:
        for p in self.panes:
            p.stop()

    def new_chat(self) -> None:
        if self.controller is not None:
            self.controller.new_conversation()
        else:
            for p in self.panes:
                p.clear()
        self.prompt.edit.setFocus()

    def _on_pane_notice(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)

    # ------------------------------------------------------------ trained decoders

    def _on_training_finished(self, job) -> None:
        """A drafter finished training: list it everywhere and say so."""
        self._on_train_library_changed()
        r = job.status.get("result", {})
        acc, base = r.get("acceptance"), r.get("baseline")
        text = f"Drafter {r.get('name', '')} is ready"
        if isinstance(acc, float) and isinstance(base, float):
            text += f": {acc:.0%} of first drafts accepted on held-out text ({base:.0%} untrained)"
        text += ". It pairs with its model by itself; Compare on the Train page tries it."
        self._on_pane_notice(text)
        if self.sidebar is not None:
            self.sidebar.show_notice(text, "success")
        QApplication.alert(self)

    def _on_train_library_changed(self) -> None:
        self._on_models_library_changed()
        self.models_page.refresh_library()
        self.train_page.refresh_models()

    def compare_decoder(self, model_id: str, decoder_folder: str) -> None:
        """Two panes on ``model_id``: the first with the decoder off, the second with
        the decoder in ``decoder_folder``; then the chats, ready for a prompt."""
        self._rescan_models()
        entry = self.catalog.find(model_id)
        if entry is None:
            self._on_pane_notice(f"{model_id} is no longer in the library.")
            return
        choice = next((c for c in entry.decoders if c.path == decoder_folder), None)
        if choice is None or not choice.ok:
            self._on_pane_notice(f"{Path(decoder_folder).name} does not pair with {entry.label}.")
            return
        while len(self.panes) < 2:
            self.add_pane()
        for i, pane in enumerate(self.panes[:2]):
            pane.set_models(self.catalog.models(), prefer=model_id)
            settings = pane.controls.settings()
            decoder = replace(settings.decoder, decoder=choice.value if i else "none")
            pane.controls.set_settings(replace(settings, decoder=decoder))
            pane.controls.set_decoder_enabled(bool(i))
        self.show_section("chats")
        self.prompt.edit.setFocus()
        self._on_pane_notice(
            f"Pane 1: {entry.label} without a decoder; pane 2: with {choice.label}. "
            "Send a prompt to all panes (Ctrl+Enter) to compare."
        )

    def _on_pane_busy_changed(self, _busy: bool = False) -> None:
        self.prompt.set_busy(any(p.busy for p in self.panes))

    # ------------------------------------------------------------ models and first run

    def refresh_models(self) -> None:
        """Rescan the library; with no model, set up the starter one."""
        models = self._rescan_models()
        if models:
            self.stack.setCurrentWidget(self.chat_page)
            self.prompt.edit.setFocus()
            if not self.ready:
                self.ready = True
                self._reopen_last_conversation()
                self.sig_ready.emit()
        else:
            self.stack.setCurrentWidget(self.setup)
            self._start_import()

    def _rescan_models(self) -> list:
        """Rescan the library and give every pane's model picker the result."""
        models = self.catalog.refresh()
        for p in self.panes:
            p.set_models(models)
        self._refresh_panes()
        # Chat actions only make sense once there is a model to chat with.
        self.new_chat_button.setVisible(bool(models))
        on_page = self.stack.currentWidget() not in (self.chat_page, self.setup)
        self.add_pane_button.setVisible(bool(models) and not on_page)
        if self.sidebar is not None:
            self.sidebar.setVisible(bool(models))  # nothing to list before the first model
        n = len(models)
        self.subtitle.setText(f"{n} model{'s' if n != 1 else ''} on this computer" if n else "")
        return models

    def _on_models_library_changed(self) -> None:
        # A download or delete on the Models page: new pickers, but stay on that page.
        if not self._rescan_models() and self.ready:
            self._on_pane_notice("No chat model is left on this computer; download one here.")

    def _reopen_last_conversation(self) -> None:
        if self.controller is None or self.store is None:
            return
        try:
            latest = self.store.list_conversations(limit=1)
        except StorageError as exc:
            self._on_pane_notice(f"Could not read the saved chats: {exc}")
            return
        if latest:
            self.controller.open(latest[0].id)

    def _start_import(self) -> None:
        if self._importer is None:
            self.setup.show_error("No starter importer is available in this mode.")
            return
        self.setup.show_progress("Starting", -1.0)
        self._importer.start()

    def _on_importer_done(self, path: str) -> None:
        self.statusBar().showMessage(f"Starter model ready: {path}", 8000)
        self.refresh_models()
        if not self.catalog.models():
            self.setup.show_error(f"The model was imported to {path} but is not in the library.")

    def _on_importer_failed(self, message: str) -> None:
        self.setup.show_error(message)

    # ------------------------------------------------------------ engine status

    def _on_bridge_model_loaded(self, _rid: str, ev) -> None:
        self._loaded = f"{ev.model.rsplit('/', 1)[-1]} loaded ({ev.dtype}, {ev.memory_gb:.2f} GB)"
        self.engine_label.setText(self._loaded)

    def _on_bridge_stats(self, _rid: str, stats) -> None:
        parts = [p for p in (stats.device, stats.dtype, stats.blas) if p]
        if stats.peak_memory_gb:
            parts.append(f"peak {stats.peak_memory_gb:.2f} GB")
        self.engine_label.setText("Engine: " + "  \u00b7  ".join(parts) if parts else "")

    # ------------------------------------------------------------ theme and closing

    def toggle_theme(self) -> None:
        name = "light" if theme.current().dark else "dark"
        self.settings.set("theme", name)  # the switch is a choice, as in Settings
        theme.apply_theme(QApplication.instance(), name)

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        self.theme_button.set_icon_name("sun" if pal.dark else "moon")
        self.new_chat_button.setIcon(theme.icon("new-chat", pal.text, 16))
        self.add_pane_button.setIcon(theme.icon("add-pane", pal.text, 16))

    def closeEvent(self, event: QCloseEvent) -> None:
        self.stop_all()
        if self.controller is not None:
            self.controller.shutdown()  # a reply in progress is saved as cancelled
        if self.sidebar is not None:
            self.models_page.shutdown()  # downloads stop; their bytes stay for a resume
            self.serve_page.shutdown()  # open API streams end, the port is released
        if self.tool_servers is not None:
            self.tool_servers.close()  # MCP server processes end with the app
        super().closeEvent(event)
