"""The row of small actions under a message: branch arrows, tokens, edit, continue,
retry, copy, clone to a new pane.

It only says what was clicked (``sig_*``); the pane and the conversation controller
decide what happens. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from app.chat.pane_model import Message
from app.widgets import CopyButton, IconButton

# Replies that stopped before the model was done can be continued from where they end.
CONTINUABLE = ("length", "cancelled", "interrupted", "edited")
ICON = 15


class MessageToolbar(QWidget):
    """Actions for one message; ``update_for`` shows the ones that apply to it now."""

    sig_branch = Signal(int)
    """Show the previous (-1) or next (+1) version of this message."""
    sig_tokens_toggled = Signal(bool)
    """Show the reply as clickable tokens (True) or as formatted text (False)."""
    sig_edit = Signal()
    """Edit this message's text."""
    sig_continue = Signal()
    """Let the model carry on from the end of this reply."""
    sig_retry = Signal()
    """Generate this reply again as a new version."""
    sig_clone = Signal()
    """Copy the conversation up to here, with the pane's settings, into a new pane."""

    def __init__(self, message: Message, parent: QWidget | None = None):
        super().__init__(parent)
        self.message = message
        self.actions = False  # the store-backed actions, off until a controller is attached
        self.prev_button = IconButton("chevron-left", "Previous version", self, ICON)
        self.prev_button.clicked.connect(lambda: self.sig_branch.emit(-1))
        self.branch_label = QLabel(self)
        self.branch_label.setObjectName("BranchLabel")
        self.branch_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.next_button = IconButton("chevron-right", "Next version", self, ICON)
        self.next_button.clicked.connect(lambda: self.sig_branch.emit(1))
        self.tokens_button = IconButton(
            "tokens", "Show tokens: click one to inspect it and replay from an alternative", self
        )
        self.tokens_button.setIconSize(self.prev_button.iconSize())
        self.tokens_button.setCheckable(True)
        self.tokens_button.toggled.connect(self.sig_tokens_toggled)
        self.edit_button = IconButton("edit", "Edit (the original stays as a version)", self, ICON)
        self.edit_button.clicked.connect(self.sig_edit)
        self.continue_button = IconButton(
            "play", "Continue generating from the end of this reply", self, ICON
        )
        self.continue_button.clicked.connect(self.sig_continue)
        self.retry_button = IconButton(
            "refresh", "Generate again with this pane's settings (a new version)", self, ICON
        )
        self.retry_button.clicked.connect(self.sig_retry)
        self.copy_button = CopyButton(lambda: self.message.content, "Copy text", self)
        self.clone_button = IconButton(
            "add-pane", "Clone the conversation up to here into a new pane", self, ICON
        )
        self.clone_button.clicked.connect(self.sig_clone)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        for w in (
            self.prev_button,
            self.branch_label,
            self.next_button,
            self.tokens_button,
            self.edit_button,
            self.continue_button,
            self.retry_button,
            self.copy_button,
            self.clone_button,
        ):
            layout.addWidget(w)
        self.update_for(message)

    def set_actions(self, on: bool) -> None:
        """Offer edit, versions, continue, retry and clone (they need a store) or not."""
        self.actions = on
        self.update_for(self.message)

    def update_for(self, message: Message) -> None:
        """Show the actions that make sense for the message as it is now."""
        self.message = message
        index, count = message.branch
        branched = count > 1 and self.actions
        for w in (self.prev_button, self.branch_label, self.next_button):
            w.setVisible(branched)
        self.branch_label.setText(f"{index + 1}/{count}")
        self.prev_button.setEnabled(index > 0)
        self.next_button.setEnabled(index < count - 1)
        reply = message.role == "assistant"
        self.tokens_button.setVisible(reply and bool(message.tokens))
        self.copy_button.setVisible(bool(message.content))
        # The rest change the conversation, so they need a store (``actions``).
        can = self.actions and not message.streaming
        self.edit_button.setVisible(can and message.finish_reason != "error")
        self.continue_button.setVisible(can and reply and message.finish_reason in CONTINUABLE)
        self.retry_button.setVisible(can and reply)
        self.clone_button.setVisible(can)
        # A tool's result is the tool's, not the user's to edit or copy as a turn.
        self.setVisible(message.role != "tool" and any(not b.isHidden() for b in self._buttons()))

    def _buttons(self) -> list[QWidget]:
        return [
            self.prev_button,
            self.tokens_button,
            self.edit_button,
            self.continue_button,
            self.retry_button,
            self.copy_button,
            self.clone_button,
        ]


__all__ = ["CONTINUABLE", "MessageToolbar"]
