"""The shared prompt box: one text field that sends to the focused pane or to every pane.

Enter sends (to all panes in compare mode), Shift+Enter adds a line, Ctrl+Enter
always sends to all panes. GUI thread only. ``python -m app.chat.prompt_box`` shows it.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import theme

SEND_ALL_KEY = "\u2318\u21a9" if sys.platform == "darwin" else "Ctrl+Enter"


class PromptEdit(QPlainTextEdit):
    """A text field that grows with its text (up to a limit) and sends on Enter."""

    sig_submit = Signal(bool)
    """Enter (False) or Ctrl+Enter (True: send to every pane) was pressed."""

    MAX_LINES = 8

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("PromptEdit")
        self.setTabChangesFocus(True)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._fit()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            mods = event.modifiers()
            if mods & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
                return
            self.sig_submit.emit(bool(mods & Qt.KeyboardModifier.ControlModifier))
            return
        super().keyPressEvent(event)

    def _fit(self, *_args) -> None:
        lines = max(1, min(self.MAX_LINES, int(self.document().size().height())))
        height = lines * self.fontMetrics().lineSpacing() + 14
        self.setFixedHeight(height)


class PromptBox(QFrame):
    """The bottom bar of the main window."""

    sig_send = Signal(str, bool)
    """Send this text; True means to every pane."""
    sig_stop = Signal()
    """Stop every reply in progress."""
    sig_compare_toggled = Signal(bool)
    """Compare mode (Enter sends to every pane) was switched."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("PromptBox")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.edit = PromptEdit(self)
        self.edit.setPlaceholderText("Message the model\u2026")
        self.edit.sig_submit.connect(self._on_edit_submit)
        self.edit.installEventFilter(self)
        self.compare = QToolButton(self)
        self.compare.setObjectName("Chip")
        self.compare.setCheckable(True)
        self.compare.setChecked(True)
        self.compare.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.compare.setText("Compare")
        self.compare.setToolTip("Enter sends the prompt to every pane at once")
        self.compare.setCursor(Qt.CursorShape.PointingHandCursor)
        self.compare.toggled.connect(self._on_compare_toggled)
        self.target = QLabel(self)
        self.target.setObjectName("PromptHint")
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setObjectName("DangerButton")
        self.stop_button.setToolTip("Stop every reply in progress (Esc)")
        self.stop_button.clicked.connect(self.sig_stop)
        self.stop_button.hide()
        self.send_button = QPushButton("Send", self)
        self.send_button.setObjectName("PrimaryButton")
        self.send_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.send_button.clicked.connect(lambda: self._on_edit_submit(False))
        for b in (self.stop_button, self.send_button):
            b.setIconSize(QSize(16, 16))
        bottom = QHBoxLayout()
        bottom.setSpacing(8)
        bottom.addWidget(self.compare)
        bottom.addWidget(self.target, 1)
        bottom.addWidget(self.stop_button)
        bottom.addWidget(self.send_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 10, 10)
        layout.setSpacing(6)
        layout.addWidget(self.edit)
        layout.addLayout(bottom)
        self._pane_count = 1
        self._focused_name = ""
        self.edit.textChanged.connect(self._refresh)
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self._refresh()

    def _on_theme_changed(self, _pal: theme.Palette) -> None:
        # A bound method, so Qt drops the connection when this widget is deleted.
        self._refresh()

    def eventFilter(self, obj, event) -> bool:
        if obj is self.edit and event.type() in (event.Type.FocusIn, event.Type.FocusOut):
            theme.set_property(self, "focused", event.type() == event.Type.FocusIn)
        return False

    @property
    def compare_mode(self) -> bool:
        return self.compare.isChecked() and self._pane_count > 1

    def set_panes(self, count: int, focused_name: str) -> None:
        """How many panes there are, and which one plain Send goes to."""
        self._pane_count = count
        self._focused_name = focused_name
        self._refresh()

    def set_busy(self, busy: bool) -> None:
        self.stop_button.setVisible(busy)
        self._refresh()

    def text(self) -> str:
        return self.edit.toPlainText()

    def set_text(self, text: str) -> None:
        self.edit.setPlainText(text)
        self.edit.setFocus()
        cursor = self.edit.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        self.edit.setTextCursor(cursor)

    def _on_compare_toggled(self, on: bool) -> None:
        self._refresh()
        self.sig_compare_toggled.emit(on)

    def _on_edit_submit(self, to_all: bool) -> None:
        text = self.edit.toPlainText().strip()
        if not text:
            return
        self.sig_send.emit(text, to_all or self.compare_mode)
        self.edit.clear()

    def _refresh(self) -> None:
        pal = theme.current()
        many = self._pane_count > 1
        self.compare.setVisible(many)
        self.compare.setIcon(
            theme.icon("compare", pal.accent if self.compare.isChecked() else pal.muted, 14)
        )
        if self.compare_mode:
            self.send_button.setText("Send to all")
            self.target.setText(
                f"Goes to all {self._pane_count} panes  \u00b7  Shift+Enter for a new line"
            )
        else:
            self.send_button.setText("Send")
            who = (
                f"Goes to {self._focused_name}" if many and self._focused_name else "Enter to send"
            )
            extra = f"  \u00b7  {SEND_ALL_KEY} sends to all panes" if many else ""
            self.target.setText(f"{who}  \u00b7  Shift+Enter for a new line{extra}")
        self.send_button.setIcon(theme.icon("send", pal.on_accent, 16))
        self.stop_button.setIcon(theme.icon("stop", pal.danger, 16))
        self.send_button.setEnabled(bool(self.edit.toPlainText().strip()))
