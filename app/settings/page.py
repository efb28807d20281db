"""The Settings section: theme, what new panes start with, how models load on CPU,
where the app keeps its data, the Distributed hosts, and the MCP tool servers.

Every change is saved at once in AppSettings (settings.json); the main window applies
the pane defaults and the dtype to its panes when ``AppSettings.sig_changed`` says
so. GUI thread only.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.page_parts import Card, page_qss, page_title
from app.settings.app_settings import AppSettings, apply_theme_setting, settings_path
from app.tool_servers import ToolServerHost
from app.widgets import ElidedLabel
from engine import paths

THEME_LABELS = {"light": "Light", "dark": "Dark", "system": "System"}
THINKING_LABELS = {"off": "Off", "on": "Think", "max": "Max"}
DTYPE_LABELS = {"auto": "Auto", "native": "Native"}


def hub_cache_dir() -> Path:
    """Where hub downloads live (huggingface_hub's cache, HF_HOME / HF_HUB_CACHE aware)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def data_locations() -> list[tuple[str, Path, Path]]:
    """(what, the path shown, the folder "Open folder" opens)."""
    db = paths.database_path()
    return [
        ("Downloaded models", hub_cache_dir(), hub_cache_dir()),
        ("Imported models", paths.models_dir(), paths.models_dir()),
        ("Conversations", db, db.parent),
        ("Cache", paths.cache_dir(), paths.cache_dir()),
        ("Settings", settings_path(), settings_path().parent),
    ]


def segments(
    labels: dict[str, str], parent: QWidget
) -> tuple[QButtonGroup, dict[str, QToolButton], QHBoxLayout]:
    group = QButtonGroup(parent)
    buttons: dict[str, QToolButton] = {}
    row = QHBoxLayout()
    row.setSpacing(0)
    for i, (key, label) in enumerate(labels.items()):
        b = QToolButton(parent)
        b.setObjectName("SegButton")
        b.setText(label)
        b.setCheckable(True)
        b.setCursor(Qt.CursorShape.PointingHandCursor)
        b.setProperty("pos", "first" if i == 0 else "last" if i == len(labels) - 1 else "mid")
        group.addButton(b)
        buttons[key] = b
        row.addWidget(b)
    row.addStretch(1)
    return group, buttons, row


class SettingsPage(QWidget):
    """Appearance, new panes, model loading, data locations, Distributed."""

    def __init__(
        self,
        settings: AppSettings,
        parent: QWidget | None = None,
        tool_servers: ToolServerHost | None = None,
    ):
        super().__init__(parent)
        self.settings = settings
        self.tool_servers = tool_servers
        self._build()
        self._load()
        settings.sig_changed.connect(self._on_settings_changed)
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self._on_theme_changed(theme.current())

    # ------------------------------------------------------------ layout

    def _build(self) -> None:
        title, subtitle = page_title(
            "Settings", "Saved as you change them, and used the next time Lookahead opens.", self
        )
        look = Card("Appearance", parent=self)
        self.theme_group, self.theme_buttons, row = segments(THEME_LABELS, look)
        self.theme_group.buttonClicked.connect(self._on_theme_clicked)
        look.body.addLayout(self._form(("Theme", row)))

        panes = Card("New panes", parent=self)
        self.thinking_group, self.thinking_buttons, thinking_row = segments(THINKING_LABELS, panes)
        self.thinking_group.buttonClicked.connect(self._on_pane_defaults_edited)
        self.max_tokens = self._spin(panes, 1, 32768, 128)
        self.max_loop = self._spin(panes, 0, 100, 1, "off")
        self.max_loop.setToolTip("Stop when the same passage repeats this many times")
        panes.body.addLayout(
            self._form(
                ("Thinking", thinking_row),
                ("Max tokens", self.max_tokens),
                ("Max loop count", self.max_loop),
            )
        )
        panes.body.addWidget(
            self._note(
                "What a pane starts with, and what \u201cReset to defaults\u201d in its "
                "Inference drawer gives. Thinking applies where the model can think; an "
                "added pane copies the one beside it.",
                panes,
            )
        )

        loading = Card("Model loading", parent=self)
        self.dtype_group, self.dtype_buttons, dtype_row = segments(DTYPE_LABELS, loading)
        self.dtype_group.buttonClicked.connect(self._on_dtype_clicked)
        loading.body.addLayout(self._form(("Weights on CPU", dtype_row)))
        loading.body.addWidget(
            self._note(
                "Auto: the fastest that fits in memory. On a CPU that is bfloat16 weights "
                "through Lookahead's own matrix product (half the bytes per token, float32 "
                "arithmetic), or float32 where it could not be built. Native: the weights "
                "as stored, the least memory. On a GPU both keep the stored dtype. "
                "Chat panes use it from their next model load; API requests use Auto.",
                loading,
            )
        )

        places = Card("Data locations", parent=self)
        self.location_rows: dict[str, tuple[ElidedLabel, QPushButton]] = {}
        grid = QFormLayout()
        grid.setHorizontalSpacing(14)
        grid.setVerticalSpacing(8)
        for what, shown, folder in data_locations():
            value = ElidedLabel(str(shown), places)
            value.setObjectName("Value")
            value.setToolTip(str(shown))
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setMinimumWidth(120)
            button = QPushButton("Open folder", places)
            button.setToolTip(f"Show {folder} in the file manager")
            button.clicked.connect(lambda _=False, f=folder: self.open_folder(f))
            line = QHBoxLayout()
            line.setSpacing(8)
            line.addWidget(value, 1)
            line.addWidget(button)
            label = QLabel(what, places)
            label.setObjectName("FieldLabel")
            grid.addRow(label, line)
            self.location_rows[what] = (value, button)
        places.body.addLayout(grid)
        self.places_note = self._note("", places)
        self.places_note.hide()
        places.body.addWidget(self.places_note)

        self.distributed_card = Card("Distributed", "one model, several computers", self)
        from app.settings.distributed import DistributedSettings

        self.distributed = DistributedSettings(self.settings, self.distributed_card)
        self.distributed_card.body.addWidget(self.distributed)

        self.tools_card: Card | None = None
        if self.tool_servers is not None:
            from app.settings.tool_servers import ToolServerSettings

            self.tools_card = Card("Tools", "MCP servers for the chat", self)
            self.tools = ToolServerSettings(self.tool_servers, self.tools_card)
            self.tools_card.body.addWidget(self.tools)

        left = QVBoxLayout()
        left.setSpacing(14)
        for card in (look, panes, loading):
            left.addWidget(card)
        left.addStretch(1)
        right = QVBoxLayout()
        right.setSpacing(14)
        right.addWidget(places)
        right.addWidget(self.distributed_card)
        if self.tools_card is not None:
            right.addWidget(self.tools_card)
        right.addStretch(1)
        columns = QHBoxLayout()
        columns.setSpacing(14)
        columns.addLayout(left, 2)
        columns.addLayout(right, 3)
        for card in (look, panes, loading):
            card.setMinimumWidth(380)
        places.setMinimumWidth(480)
        self.problem = self._note("", self)
        self.problem.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(6)
        layout.addWidget(title)
        layout.addWidget(subtitle)
        layout.addWidget(self.problem)
        layout.addSpacing(6)
        layout.addLayout(columns, 1)

    @staticmethod
    def _form(*rows: tuple[str, object]) -> QFormLayout:
        form = QFormLayout()
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(10)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        for text, field in rows:
            label = QLabel(text)
            label.setObjectName("FieldLabel")
            label.setMinimumWidth(110)
            form.addRow(label, field)
        return form

    @staticmethod
    def _spin(parent: QWidget, low: int, high: int, step: int, special: str = "") -> QSpinBox:
        box = QSpinBox(parent)
        box.setRange(low, high)
        box.setSingleStep(step)
        if special:
            box.setSpecialValueText(special)
        box.setAlignment(Qt.AlignmentFlag.AlignRight)
        box.lineEdit().setTextMargins(6, 0, 6, 0)
        box.setMinimumWidth(96)
        box.setMaximumWidth(120)
        return box

    @staticmethod
    def _note(text: str, parent: QWidget) -> QLabel:
        note = QLabel(text, parent)
        note.setObjectName("Note")
        note.setWordWrap(True)
        return note

    def _load(self) -> None:
        s = self.settings
        self.theme_buttons[s.theme].setChecked(True)
        self.thinking_buttons[s.pane.thinking].setChecked(True)
        for box, value in (
            (self.max_tokens, s.pane.max_tokens),
            (self.max_loop, s.pane.max_loop_count),
        ):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)
        self.dtype_buttons[s.dtype].setChecked(True)
        self.max_tokens.valueChanged.connect(self._on_pane_defaults_edited)
        self.max_loop.valueChanged.connect(self._on_pane_defaults_edited)
        if s.error:
            self.problem.setText(s.error)
            self.problem.show()

    # ------------------------------------------------------------ actions

    def open_folder(self, folder: Path) -> bool:
        """Show ``folder`` in the desktop's file manager; says so when it cannot."""
        folder.mkdir(parents=True, exist_ok=True)
        ok = QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
        self.places_note.setText("" if ok else f"No file manager could open {folder}.")
        self.places_note.setVisible(not ok)
        return ok

    # ------------------------------------------------------------ slots

    def _on_theme_clicked(self, _button: QToolButton) -> None:
        name = next(k for k, b in self.theme_buttons.items() if b.isChecked())
        self.settings.set("theme", name)
        apply_theme_setting(QApplication.instance(), name)

    def _on_pane_defaults_edited(self, *_args: object) -> None:
        thinking = next((k for k, b in self.thinking_buttons.items() if b.isChecked()), "off")
        self.settings.set_pane(
            thinking=thinking,
            max_tokens=self.max_tokens.value(),
            max_loop_count=self.max_loop.value(),
        )

    def _on_dtype_clicked(self, _button: QToolButton) -> None:
        name = next(k for k, b in self.dtype_buttons.items() if b.isChecked())
        self.settings.set("dtype", name)

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        self.setStyleSheet(page_qss(pal))

    def _on_settings_changed(self, section: str) -> None:
        if section == "theme":  # e.g. the top bar's light/dark switch
            self.theme_buttons[self.settings.theme].setChecked(True)
