"""The Serve section: the local OpenAI- and Ollama-compatible API, in this process.

An ``engine.server.ApiServer`` on the app's own engine service (the one the panes
use, so API requests queue with chats, first come first served). The page starts and
stops it on a worker thread, shows where it listens or why it could not, and keeps
its settings (address, port, API key, answer with the focused pane's model, prompt
caches on disk, start on launch) in AppSettings. Below: the model ids clients may
name, ready-to-paste snippets, and a log of requests (app.serve.activity).

The server itself is started and stopped by app.serve.runner.ApiRunner (worker
threads, a thread-safe model override). Everything in this module runs on the GUI
thread.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.bridge import EngineBridge
from app.page_parts import Banner, Card, StatusLine, page_qss, page_title
from app.serve.activity import RequestLog, RequestLogView
from app.serve.runner import ApiRunner, is_loopback, lan_address, new_api_key, served_id
from app.serve.snippets import ConnectPanel, ModelIdList
from app.settings.app_settings import AppSettings
from app.tasks import run_blocking
from app.widgets import CopyButton, IconButton

HOSTS = ("127.0.0.1", "0.0.0.0")


class ServePage(QWidget):
    """Start/stop the API, its settings, model ids, snippets and the request log."""

    sig_state_changed = Signal(str)
    """The server is now "stopped", "starting", "running", "stopping" or "error"."""

    def __init__(
        self,
        bridge: EngineBridge,
        settings: AppSettings,
        api_catalog: Any = None,
        parent: QWidget | None = None,
    ):
        """``api_catalog``: an engine.server ModelCatalog (default: the local library)."""
        super().__init__(parent)
        self.bridge = bridge
        self.settings = settings
        self.runner = ApiRunner(bridge.service, api_catalog, self)
        self.runner.set_override(None, settings.serve.override_model)
        self._override_label = ""
        self._listed = False
        self.log = RequestLog(bridge, self)
        self._build()
        self._load_settings()
        self._apply_cache_prompts()
        self.runner.sig_state_changed.connect(self._on_runner_state_changed)
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self._on_theme_changed(theme.current())
        QApplication.instance().aboutToQuit.connect(self.shutdown)
        self._refresh()
        if settings.serve.start_on_launch:
            QTimer.singleShot(0, self.start)

    # ------------------------------------------------------------ layout

    def _build(self) -> None:
        title, subtitle = page_title(
            "Serve",
            "An OpenAI- and Ollama-compatible API on this computer. Requests are answered "
            "by the same engine as your chats, one at a time in arrival order.",
            self,
        )
        api = Card("Local API", parent=self)
        self.start_button = QPushButton("Start serving", api)
        self.start_button.setObjectName("PrimaryButton")
        self.start_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.start_button.clicked.connect(self._on_start_button_clicked)
        self.restart_button = QPushButton("Restart to apply", api)
        self.restart_button.setToolTip("Stop and start again with the address, port and key")
        self.restart_button.clicked.connect(self.restart)
        api.header.addWidget(self.restart_button)
        api.header.addWidget(self.start_button)
        self.status = StatusLine(api)
        self.url_copy = CopyButton(lambda: self.url, "Copy the URL", api)
        status_row = QHBoxLayout()
        status_row.addWidget(self.status, 1)
        status_row.addWidget(self.url_copy)
        self.banner = Banner(api)

        self.host = QComboBox(api)
        self.host.setEditable(True)
        self.host.addItems(HOSTS)
        self.host.setToolTip(
            "127.0.0.1: only programs on this computer. 0.0.0.0: every network it is on."
        )
        self.host.setMinimumWidth(150)
        self.port = QSpinBox(api)
        self.port.setRange(0, 65535)
        self.port.setSpecialValueText("any free")
        self.port.setMinimumWidth(96)
        self.port.lineEdit().setTextMargins(6, 0, 6, 0)
        where = QHBoxLayout()
        where.setSpacing(8)
        where.addWidget(self.host, 1)
        port_label = QLabel("Port", api)
        port_label.setObjectName("FieldLabel")
        where.addWidget(port_label)
        where.addWidget(self.port)

        self.key = QLineEdit(api)
        self.key.setPlaceholderText("No key: any local program may call the API")
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setClearButtonEnabled(True)
        self.show_key = IconButton("eye", "Show the key", api, 16)
        self.show_key.setCheckable(True)
        self.show_key.toggled.connect(self._on_show_key_toggled)
        self.copy_key = CopyButton(self.key.text, "Copy the key", api)
        self.generate_key = QPushButton("Generate", api)
        self.generate_key.setToolTip("Make a new random key (clients need the new one)")
        self.generate_key.clicked.connect(self._on_generate_key_clicked)
        key_row = QHBoxLayout()
        key_row.setSpacing(6)
        key_row.addWidget(self.key, 1)
        key_row.addWidget(self.show_key)
        key_row.addWidget(self.copy_key)
        key_row.addWidget(self.generate_key)
        form = QFormLayout()
        form.setContentsMargins(0, 4, 0, 4)
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(10)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        form.addRow(self._field("Address"), where)
        form.addRow(self._field("API key"), key_row)

        self.override = QCheckBox("Answer with the focused pane\u2019s model", api)
        self.override_note = self._note(api)
        self.cache = QCheckBox("Cache prompts on disk", api)
        self.cache_note = self._note(api)
        self.autostart = QCheckBox("Start serving when Lookahead opens", api)
        api.body.addLayout(status_row)
        api.body.addWidget(self.banner)
        api.body.addLayout(form)
        for box, note in ((self.override, self.override_note), (self.cache, self.cache_note)):
            api.body.addWidget(box)
            api.body.addWidget(note)
        api.body.addWidget(self.autostart)

        connect = Card("Connect a client", parent=self)
        self.connect_panel = ConnectPanel(connect)
        connect.body.addWidget(self.connect_panel)

        ids = Card("Model ids", parent=self)
        self.ids_card = ids
        self.refresh_ids_button = IconButton("refresh", "Read the library again", ids, 16)
        self.refresh_ids_button.clicked.connect(self.refresh_models)
        ids.header.addWidget(self.refresh_ids_button)
        self.model_ids = ModelIdList(ids)
        ids.body.addWidget(self.model_ids)

        activity = Card("Requests", parent=self)
        self.log_view = RequestLogView(self.log, activity)
        activity.body.addWidget(self.log_view, 1)

        columns = QHBoxLayout()
        columns.setSpacing(14)
        for cards in ((api, ids), (connect,)):
            column = QVBoxLayout()
            column.setSpacing(14)
            for card in cards:
                card.setMinimumWidth(440)
                column.addWidget(card)
            column.addStretch(1)
            columns.addLayout(column, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(6)
        layout.addWidget(title)
        layout.addWidget(subtitle)
        layout.addSpacing(6)
        layout.addLayout(columns)
        layout.addSpacing(8)
        layout.addWidget(activity, 1)

        self.host.editTextChanged.connect(self._on_address_edited)
        self.port.valueChanged.connect(self._on_address_edited)
        self.key.textChanged.connect(self._on_address_edited)
        self.override.toggled.connect(self._on_override_toggled)
        self.cache.toggled.connect(self._on_cache_toggled)
        self.autostart.toggled.connect(lambda on: self.settings.set_serve(start_on_launch=bool(on)))

    @staticmethod
    def _field(text: str) -> QLabel:
        label = QLabel(text)
        label.setObjectName("FieldLabel")
        return label

    @staticmethod
    def _note(parent: QWidget) -> QLabel:
        note = QLabel(parent)
        note.setObjectName("Note")
        note.setWordWrap(True)
        note.setContentsMargins(26, 0, 0, 4)  # under the check box's text
        return note

    def _load_settings(self) -> None:
        s = self.settings.serve
        for w in (self.host, self.port, self.key, self.override, self.cache, self.autostart):
            w.blockSignals(True)
        self.host.setEditText(s.host)
        self.port.setValue(s.port)
        self.key.setText(s.api_key)
        self.override.setChecked(s.override_model)
        self.cache.setChecked(s.cache_prompts)
        self.autostart.setChecked(s.start_on_launch)
        for w in (self.host, self.port, self.key, self.override, self.cache, self.autostart):
            w.blockSignals(False)

    # ------------------------------------------------------------ reading

    def config(self) -> tuple[str, int, str]:
        """(address, port, key) as the fields say now."""
        return self.host.currentText().strip(), self.port.value(), self.key.text().strip()

    @property
    def state(self) -> str:
        return self.runner.state

    @property
    def error(self) -> str:
        return self.runner.error

    @property
    def server(self) -> Any:
        return self.runner.server

    @property
    def running(self) -> bool:
        return self.runner.running

    @property
    def url(self) -> str:
        """Where clients reach the API (the fields' address while stopped)."""
        if self.runner.server is not None:
            return self.runner.server.url
        host, port, _ = self.config()
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port or 'PORT'}"

    def served_model(self) -> str | None:
        """The id the focused pane runs (with its decoder), or None."""
        return self.runner.served_model()

    # ------------------------------------------------------------ actions

    def start(self) -> None:
        """Start serving with the fields' settings (the outcome shows in the status)."""
        self.runner.start(*self.config())

    def stop(self) -> None:
        self.runner.stop()

    def restart(self) -> None:
        """Stop, then start with the settings in the fields."""
        self.runner.restart(*self.config())

    def shutdown(self) -> None:
        """Stop now, blocking (quitting); safe to call more than once."""
        self.runner.shutdown()
        self.log.tap.detach()

    def refresh_models(self) -> None:
        """Read the model ids the API offers (worker thread)."""
        self.refresh_ids_button.setEnabled(False)
        catalog = self.runner.catalog
        run_blocking(
            lambda: [(m.id, m.note) for m in catalog().listing()],
            self._on_worker_listed,
            self._on_worker_list_failed,
            "api-models",
        )

    def set_focused_model(self, model_id: str | None, decoder: str, pane: str) -> None:
        """The focused pane's model and decoder ("none" when off), from the main window."""
        self.runner.set_override(served_id(model_id, decoder), self.override.isChecked())
        label = model_id.rsplit("/", 1)[-1] if model_id else ""
        if label and decoder not in ("", "none"):
            label += f" with {decoder.rsplit('/', 1)[-1]}"
        self._override_label = f"{label} ({pane})" if label else ""
        self._refresh()

    # ------------------------------------------------------------ worker outcomes

    def _on_runner_state_changed(self, state: str) -> None:
        if state == "running":
            self.log.tap.attach()
        elif state in ("stopped", "error"):
            self.log.drain()
            self.log.tap.detach()
        self._refresh()
        self.sig_state_changed.emit(state)

    def _on_worker_listed(self, items: list[tuple[str, str]]) -> None:
        self.refresh_ids_button.setEnabled(True)
        self._listed = True
        self.model_ids.set_ids(items)
        n = sum(1 for _i, note in items if not note)
        self.ids_card.set_note(f"{n} model{'s' if n != 1 else ''}, {len(items)} ids")
        self._refresh()

    def _on_worker_list_failed(self, exc: BaseException) -> None:
        self.refresh_ids_button.setEnabled(True)
        self.model_ids.set_message(f"Could not read the library: {exc}")

    # ------------------------------------------------------------ slots

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._listed:
            QTimer.singleShot(0, self.refresh_models)

    def _on_start_button_clicked(self) -> None:
        if self.runner.server is not None:
            self.stop()
        else:
            self.start()

    def _on_address_edited(self, *_args: object) -> None:
        host, port, key = self.config()
        self.settings.set_serve(host=host or self.settings.serve.host, port=port, api_key=key)
        self._refresh()

    def _on_generate_key_clicked(self) -> None:
        self.key.setText(new_api_key())
        self.show_key.setChecked(True)

    def _on_show_key_toggled(self, on: bool) -> None:
        self.key.setEchoMode(QLineEdit.EchoMode.Normal if on else QLineEdit.EchoMode.Password)
        self.show_key.set_icon_name("eye-off" if on else "eye")
        self.show_key.setToolTip("Hide the key" if on else "Show the key")
        self._refresh()

    def _on_override_toggled(self, on: bool) -> None:
        self.runner.set_override(self.runner.served_model(), bool(on))
        self.settings.set_serve(override_model=bool(on))
        self._refresh()

    def _on_cache_toggled(self, on: bool) -> None:
        self.settings.set_serve(cache_prompts=bool(on))
        self._apply_cache_prompts()

    def _apply_cache_prompts(self) -> None:
        """Tell the engine (any-thread setter), then say what it did."""
        service = self.bridge.service
        wanted = self.settings.serve.cache_prompts
        if not hasattr(service, "cache_prompts"):
            self.cache.hide()
            self.cache_note.hide()
            return
        service.cache_prompts = wanted
        disk = getattr(service, "prompt_cache_disk", None)
        if wanted and not service.cache_prompts:
            text = "Off while models run across several computers (each holds a slice)."
        elif disk is not None:
            size = disk.max_bytes / 1024**3
            text = (
                f"Long prompts are also kept in {disk.folder} (up to {size:.0f} GB), so they "
                "are not computed again after a restart. Applies to chats too."
            )
        else:
            text = "Long prompts are kept on disk so they are not computed again. Applies to chats too."
        self.cache_note.setText(text)

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        self.setStyleSheet(page_qss(pal))
        self.start_button.setIconSize(QSize(14, 14))
        self._refresh()

    # ------------------------------------------------------------ showing

    def _refresh(self) -> None:
        host, port, key = self.config()
        state = self.state
        busy = state in ("starting", "stopping")
        if state == "running":
            self.status.set_state("running", f"Running at {self.url}")
        elif state == "starting":
            self.status.set_state("busy", "Starting\u2026")
        elif state == "stopping":
            self.status.set_state("busy", "Stopping\u2026")
        elif state == "error":
            self.status.set_state("error", self.error)
        else:
            self.status.set_state("stopped", "Stopped")
        self.url_copy.setVisible(state == "running")
        self.start_button.setText("Stop serving" if self.server is not None else "Start serving")
        self.start_button.setEnabled(not busy)
        self.start_button.setIcon(
            theme.icon("stop" if self.server is not None else "play", theme.current().on_accent, 14)
        )
        dirty = state == "running" and self.runner.config != (host, port, key)
        self.restart_button.setVisible(dirty)
        self.restart_button.setEnabled(not busy)
        if dirty:
            self.status.set_state("running", f"Running at {self.url}; restart to use the changes")
        self._refresh_banner(host, port, key)
        on = self.override.isChecked()
        if self._override_label:
            self.override_note.setText(
                f"Every request is answered by {self._override_label}, whatever model it names."
                if on
                else f"Off: clients choose the model. On: {self._override_label} answers all."
            )
        else:
            self.override_note.setText("No pane has a model yet.")
        model = self.served_model() or (self.model_ids.ids[0] if self.model_ids.ids else "")
        self.connect_panel.set_endpoint(self.url, key, model, self.show_key.isChecked())

    def _refresh_banner(self, host: str, port: int, key: str) -> None:
        if not host or is_loopback(host):
            self.banner.show_message("")
            return
        where = f"http://{lan_address()}:{port or 'PORT'}"
        if key:
            self.banner.show_message(
                f"Reachable from other computers on your network ({where}). "
                "Only clients with the API key get answers.",
                "warning",
            )
        else:
            self.banner.show_message(
                f"On {host} with no API key, anyone who can reach this computer ({where}) "
                "can use your models. Generate a key, or use 127.0.0.1.",
                "danger",
            )
