"""Editing a message in place: its text (and a reply's thinking), then Save or
Continue / Send.

A reply's editor has two fields, Thinking and Answer, so a runaway reasoning can be
cut and closed ("End the thinking here") and the model asked to answer from there.
Nothing is changed until the user saves: ``sig_submitted`` carries the new text and
whether to generate. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent, QTextCursor
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.chat.pane_model import Message
from engine.chat import DEFAULT_THINK_TAGS

THINK_CLOSE = DEFAULT_THINK_TAGS[1]


def split_closing_tag(reasoning: str, close: str = THINK_CLOSE) -> tuple[str, bool]:
    """Thinking text without a typed closing tag at its end, and whether there was one."""
    stripped = reasoning.rstrip()
    if stripped.endswith(close):
        return stripped[: -len(close)].rstrip(), True
    return reasoning, False


class EditField(QPlainTextEdit):
    """A plain text field between 3 and 14 lines tall, growing with its text.
    Escape cancels and Ctrl+Enter submits (taken before the window's shortcuts)."""

    sig_escape = Signal()
    """Escape was pressed."""
    sig_submit = Signal()
    """Ctrl+Enter was pressed."""

    def __init__(self, text: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setPlainText(text)
        self.setTabChangesFocus(True)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._fit()

    @staticmethod
    def _ours(event: QKeyEvent) -> str:
        if event.key() == Qt.Key.Key_Escape:
            return "escape"
        ctrl = event.modifiers() & Qt.KeyboardModifier.ControlModifier
        if ctrl and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            return "submit"
        return ""

    def event(self, event: QEvent) -> bool:
        # Claim our keys so the window's Escape (stop all) does not fire while editing.
        if event.type() == QEvent.Type.ShortcutOverride and self._ours(event):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        which = self._ours(event)
        if which == "escape":
            self.sig_escape.emit()
        elif which == "submit":
            self.sig_submit.emit()
        else:
            super().keyPressEvent(event)

    def _fit(self, *_args) -> None:
        lines = max(3, min(14, int(self.document().size().height())))
        self.setFixedHeight(lines * self.fontMetrics().lineSpacing() + 18)


class MessageEditor(QFrame):
    """The editor that replaces a message while it is edited."""

    sig_submitted = Signal(str, str, bool, bool)
    """(content, reasoning, end the thinking, generate): save the edit as a new version."""
    sig_cancelled = Signal()
    """Editing was abandoned; nothing changed."""

    def __init__(self, message: Message, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("MessageEditor")
        self.message = message
        reply = message.role == "assistant"
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.setSpacing(6)
        self.reasoning: EditField | None = None
        self.end_thinking = QCheckBox("End the thinking here", self)
        self.end_thinking.setToolTip(
            f"Close the thinking block ({THINK_CLOSE}) so the model answers instead of thinking on"
        )
        self.end_thinking.hide()
        if reply and message.reasoning:
            layout.addWidget(self._label("Thinking"))
            reasoning, closed = split_closing_tag(message.reasoning)
            self.reasoning = EditField(reasoning, self)
            layout.addWidget(self.reasoning)
            self.end_thinking.setChecked(closed)
            self.end_thinking.show()
            layout.addWidget(self.end_thinking)
        if reply:
            layout.addWidget(self._label("Answer"))
        self.content = EditField(message.content, self)
        self.content.textChanged.connect(self._on_content_changed)
        layout.addWidget(self.content)
        buttons = QHBoxLayout()
        buttons.setSpacing(8)
        self.hint = QLabel(
            "The original stays as a version to switch back to." if reply else "", self
        )
        self.hint.setObjectName("Note")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.sig_cancelled)
        self.save_button = QPushButton("Save", self)
        self.save_button.setToolTip("Keep the edit as a new version without generating")
        self.save_button.clicked.connect(lambda: self._submit(False))
        self.run_button = QPushButton("Continue" if reply else "Send", self)
        self.run_button.setObjectName("PrimaryButton")
        self.run_button.setToolTip(
            "Keep the edit and let the model continue from its end"
            if reply
            else "Keep the edit as a new version and get a new reply"
        )
        self.run_button.clicked.connect(lambda: self._submit(True))
        buttons.addWidget(self.hint, 1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.run_button)
        layout.addLayout(buttons)
        for field in (self.reasoning, self.content):
            if field is not None:
                field.sig_escape.connect(self.sig_cancelled)
                field.sig_submit.connect(lambda: self._submit(True))
        self._on_content_changed()
        # A reply with thinking but no answer yet is edited in its thinking.
        focus = self.reasoning if self.reasoning and not message.content else self.content
        focus.setFocus(Qt.FocusReason.OtherFocusReason)
        focus.moveCursor(QTextCursor.MoveOperation.End)

    def _label(self, text: str) -> QLabel:
        label = QLabel(text.upper(), self)
        label.setObjectName("SectionTitle")
        return label

    def _on_content_changed(self) -> None:
        # An answer after the thinking closes it anyway; the box only matters without one.
        has_answer = bool(self.content.toPlainText().strip())
        self.end_thinking.setEnabled(not has_answer)
        if self.message.role == "user":
            can_send = has_answer
        else:
            can_send = has_answer or bool(self.reasoning and self.reasoning.toPlainText())
        self.save_button.setEnabled(can_send)
        self.run_button.setEnabled(can_send)

    def _submit(self, run: bool) -> None:
        if not self.run_button.isEnabled():
            return
        reasoning = self.reasoning.toPlainText() if self.reasoning else ""
        reasoning, typed_close = split_closing_tag(reasoning)
        content = self.content.toPlainText()
        close = bool(reasoning) and (typed_close or self.end_thinking.isChecked() or bool(content))
        self.sig_submitted.emit(content, reasoning, close, run)


__all__ = ["MessageEditor", "split_closing_tag"]
