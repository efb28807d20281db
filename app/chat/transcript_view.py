"""The scrolling transcript of one pane, drawn from a PaneTranscript.

``sync`` is called on the GUI thread (at most once per bridge drain); it creates
widgets for new messages and updates only the one that is streaming. The view sticks
to the bottom while the user has not scrolled up. What the user asks of a message
(inspect a token, edit, switch version, continue, retry, clone) comes out as a
``sig_*`` carrying that Message.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.chat.message_widgets import MessageWidget
from app.chat.pane_model import Message, PaneTranscript

SUGGESTIONS = (
    "Write a Python function that checks whether a string is a palindrome.",
    "Explain speculative decoding in three sentences.",
    "Give me five names for a friendly robot, as a list.",
)


class NewPaneWelcome(QWidget):
    """What a new pane shows: a title and prompts to start from."""

    sig_suggestion = Signal(str)
    """A suggested prompt was clicked."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 24, 28, 24)
        layout.setSpacing(8)
        layout.addStretch(2)
        self.title = QLabel("Start a conversation", self)
        self.title.setObjectName("EmptyTitle")
        self.text = QLabel(self)
        self.text.setObjectName("EmptyText")
        self.text.setWordWrap(True)
        self.title.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.title)
        layout.addWidget(self.text)
        layout.addSpacing(12)
        for prompt in SUGGESTIONS:
            button = QPushButton(prompt, self)
            button.setObjectName("Suggestion")
            button.setCursor(Qt.CursorShape.PointingHandCursor)
            button.setMaximumWidth(560)
            button.clicked.connect(lambda _=False, p=prompt: self.sig_suggestion.emit(p))
            layout.addWidget(button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(3)
        self.set_model("")

    def set_model(self, model: str) -> None:
        who = f"<b>{model}</b> is ready." if model else "Pick a model above."
        self.text.setText(f"{who} Ask anything below, or start from one of these.")
        self.text.setAlignment(Qt.AlignmentFlag.AlignHCenter)


class TranscriptView(QScrollArea):
    """A pane's messages, or the empty state when there are none."""

    sig_suggestion = Signal(str)
    """A suggested prompt in the empty state was clicked."""
    sig_token_clicked = Signal(object, int)
    """A token was clicked: (Message, token index)."""
    sig_edit_submitted = Signal(object, str, str, bool, bool)
    """An edit was saved: (Message, content, reasoning, end the thinking, generate)."""
    sig_branch = Signal(object, int)
    """Show another version of a message: (Message, -1 or +1)."""
    sig_continue = Signal(object)
    """Continue generating a reply (Message)."""
    sig_retry = Signal(object)
    """Generate a reply again as a new version (Message)."""
    sig_clone = Signal(object)
    """Clone the conversation up to a message into a new pane (Message)."""
    sig_tool_decision = Signal(object, str, str)
    """A tool call of a reply was answered: (Message, call id, once | always | deny)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("Transcript")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.body = QWidget()
        self.body.setObjectName("TranscriptBody")
        self._layout = QVBoxLayout(self.body)
        self._layout.setContentsMargins(0, 12, 0, 12)
        self._layout.setSpacing(6)
        self.empty = NewPaneWelcome(self.body)
        self.empty.sig_suggestion.connect(self.sig_suggestion)
        self._layout.addWidget(self.empty)
        self._layout.addStretch(1)
        self.setWidget(self.body)
        # Let the pane's rounded background show through.
        self.viewport().setAutoFillBackground(False)
        self.body.setAutoFillBackground(False)
        self._widgets: list[MessageWidget] = []
        self.actions = False  # edit, versions, continue, retry, clone: need a store
        self._stick = True
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrollbar_moved)
        bar.rangeChanged.connect(self._on_scrollbar_range)

    @property
    def message_widgets(self) -> list[MessageWidget]:
        return list(self._widgets)

    def sync(self, transcript: PaneTranscript, highlight: bool = False, status: str = "") -> None:
        """Match the widgets to ``transcript``; only changed messages repaint."""
        messages = transcript.messages
        # Another branch, an edit or a cleared transcript: redo from the first difference.
        first = next(
            (
                i
                for i, (w, m) in enumerate(zip(self._widgets, messages, strict=False))
                if w.message is not m
            ),
            min(len(self._widgets), len(messages)),
        )
        if first < len(self._widgets):
            for w in self._widgets[first:]:
                w.hide()
                w.deleteLater()
            del self._widgets[first:]
            self._stick = self._stick or not messages
        for m in messages[len(self._widgets) :]:
            self._add(m)
        for i, w in enumerate(self._widgets):
            is_last = i == len(self._widgets) - 1
            w.update_from(highlight, status if is_last else "")
        self.empty.setVisible(not messages)

    def set_actions(self, on: bool) -> None:
        """Offer the message actions that need the conversation store (or hide them)."""
        self.actions = on
        for w in self._widgets:
            w.toolbar.set_actions(on)

    def widget_for(self, message: Message) -> MessageWidget | None:
        return next((w for w in self._widgets if w.message is message), None)

    def scroll_to_token(self, message: Message, index: int) -> None:
        """Bring token ``index`` of ``message`` into view (the message shows its tokens).

        The token's height in the message is estimated from the text before it: exact
        enough to land the token on screen in a long reply."""
        widget = self.widget_for(message)
        if widget is None:
            return
        self.widget().layout().activate()
        text = widget.token_text if widget.tokens_mode else None
        y = widget.y()
        if text is not None and message.tokens:
            before = sum(len(t.text) for t in message.tokens[:index])
            total = max(1, sum(len(t.text) for t in message.tokens))
            y += text.y() + int(text.height() * before / total)
        self._stick = False
        self.ensureVisible(0, y, 0, self.viewport().height() // 3)

    def _add(self, message: Message) -> None:
        widget = MessageWidget(message, self.body)
        widget.toolbar.set_actions(self.actions)
        m = message
        widget.sig_token_clicked.connect(lambda i: self.sig_token_clicked.emit(m, i))
        widget.sig_edit_submitted.connect(lambda *a: self.sig_edit_submitted.emit(m, *a))
        widget.sig_branch.connect(lambda d: self.sig_branch.emit(m, d))
        widget.sig_continue.connect(lambda: self.sig_continue.emit(m))
        widget.sig_retry.connect(lambda: self.sig_retry.emit(m))
        widget.sig_clone.connect(lambda: self.sig_clone.emit(m))
        widget.sig_tool_decision.connect(lambda c, d: self.sig_tool_decision.emit(m, c, d))
        self._layout.insertWidget(self._layout.count() - 1, widget)
        self._widgets.append(widget)
        if message.role == "user":
            self._stick = True  # sending a prompt always brings the reply into view

    def _on_scrollbar_moved(self, value: int) -> None:
        bar = self.verticalScrollBar()
        self._stick = value >= bar.maximum() - 24

    def _on_scrollbar_range(self, _low: int, high: int) -> None:
        if self._stick:
            self.verticalScrollBar().setValue(high)
