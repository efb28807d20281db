"""The token inspector: a side panel about one generated token.

It shows the token, its probability, the entropy of the distribution it was drawn from,
whether a drafter proposed it, and the top-10 alternatives as bars; each alternative
has "Replay from here" (``sig_replay``). It reads ``engine.events.TokenRecord``s, the one
token shape of the transcript and the conversation store (``as_record`` makes one from a
live ``TokenEvent``), so it works while a reply streams and after a restart. GUI thread
only.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.chat.pane_model import Message
from app.chat.token_text import visible_text
from app.widgets import IconButton, Tag
from engine.events import Alternative, TokenEvent, TokenRecord

TOP_N = 10


def as_record(token: TokenRecord | TokenEvent) -> TokenRecord:
    """A live token or a kept one, as the record the inspector reads."""
    return TokenRecord.from_event(token) if isinstance(token, TokenEvent) else token


class AlternativeRow(QWidget):
    """One alternative: its text, a probability bar, the figure and a replay button."""

    def __init__(self, parent: QWidget, on_replay) -> None:
        super().__init__(parent)
        self.setObjectName("AltRow")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.token_id = 0
        self.text = QLabel(self)
        self.text.setObjectName("AltText")
        self.text.setFont(theme.mono_font())
        self.text.setFixedWidth(84)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setFixedHeight(8)
        self.bar.setMinimumWidth(36)
        self.figure = QLabel(self)
        self.figure.setObjectName("AltFigure")
        self.figure.setFixedWidth(46)
        self.figure.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.replay = IconButton(
            "branch", "Replay from here: continue with this token, as a new version", self, 15
        )
        self.replay.clicked.connect(lambda: on_replay(self.token_id))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 1, 2, 1)
        layout.setSpacing(6)
        layout.addWidget(self.text)
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.figure)
        layout.addWidget(self.replay)

    def set_alternative(self, token_id: int, text: str, prob: float, chosen: bool) -> None:
        self.token_id = token_id
        shown = visible_text(text)
        metrics = self.text.fontMetrics()
        self.text.setText(metrics.elidedText(shown, Qt.TextElideMode.ElideRight, 82))
        self.text.setToolTip(repr(text))
        self.bar.setValue(round(prob * 1000))
        self.figure.setText(f"{prob:.1%}" if prob >= 0.001 else "<0.1%")
        theme.set_property(self, "chosen", chosen)


class TokenInspector(QFrame):
    """Side panel for one token of one message."""

    sig_replay = Signal(object, int, int)
    """Replay (Message, token index, alternative token id) as a new version."""
    sig_token_changed = Signal(object, int)
    """The inspected token changed (Message, index): the view highlights it."""
    sig_closed = Signal()
    """The user closed the panel."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("Drawer")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.message: Message | None = None
        self.index = 0
        self.replay_blocked = ""  # why replay is off now ("" when it is on)
        self._build()

    def _build(self) -> None:
        head = QHBoxLayout()
        head.setContentsMargins(16, 10, 8, 6)
        self.title = QLabel("Token", self)
        self.title.setObjectName("DrawerTitle")
        self.prev_button = IconButton("chevron-left", "Previous token", self, 16)
        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.next_button = IconButton("chevron-right", "Next token", self, 16)
        self.next_button.clicked.connect(lambda: self.step(1))
        close = IconButton("close", "Close the token inspector", self, 16)
        close.clicked.connect(self._on_close_clicked)
        head.addWidget(self.title)
        head.addStretch(1)
        head.addWidget(self.prev_button)
        head.addWidget(self.next_button)
        head.addWidget(close)

        body = QWidget(self)
        body.setObjectName("DrawerBody")
        self.chip = QLabel(body)
        self.chip.setObjectName("TokenChip")
        self.chip.setFont(theme.mono_font(2.0))
        self.chip.setTextFormat(Qt.TextFormat.PlainText)
        self.chip.setWordWrap(True)
        self.prob = self._figure(body)
        self.entropy = self._figure(body)
        self.channel = self._figure(body)
        self.draft = Tag("", "", body)
        grid = QGridLayout()
        grid.setHorizontalSpacing(16)
        grid.setVerticalSpacing(2)
        for col, (name, value) in enumerate(
            (("Probability", self.prob), ("Entropy", self.entropy), ("Channel", self.channel))
        ):
            label = QLabel(name, body)
            label.setObjectName("Figure")
            grid.addWidget(label, 0, col)
            grid.addWidget(value, 1, col)
        alts_title = QLabel("TOP ALTERNATIVES", body)
        alts_title.setObjectName("SectionTitle")
        self.rows = [AlternativeRow(body, self._on_row_replay) for _ in range(TOP_N)]
        self.note = QLabel(body)
        self.note.setObjectName("Note")
        self.note.setWordWrap(True)
        bl = QVBoxLayout(body)
        bl.setContentsMargins(16, 4, 12, 16)
        bl.setSpacing(10)
        bl.addWidget(self.chip)
        bl.addLayout(grid)
        bl.addWidget(self.draft, 0, Qt.AlignmentFlag.AlignLeft)
        bl.addSpacing(4)
        bl.addWidget(alts_title)
        rows = QVBoxLayout()
        rows.setSpacing(2)
        for row in self.rows:
            rows.addWidget(row)
        bl.addLayout(rows)
        bl.addWidget(self.note)
        bl.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        outer.addLayout(head)
        outer.addWidget(scroll, 1)

    @staticmethod
    def _figure(parent: QWidget) -> QLabel:
        label = QLabel(parent)
        label.setObjectName("FigureValue")
        return label

    # ------------------------------------------------------------ showing

    def show_token(self, message: Message, index: int) -> None:
        """Inspect token ``index`` of ``message`` (clamped to the tokens it has)."""
        self.message = message
        self.index = max(0, min(index, len(message.tokens) - 1))
        self.refresh()
        self.show()
        self.sig_token_changed.emit(message, self.index)

    def step(self, delta: int) -> None:
        if self.message is not None:
            self.show_token(self.message, self.index + delta)

    def set_replay_blocked(self, why: str) -> None:
        """Turn "Replay from here" off (saying why) or back on (``""``)."""
        if why != self.replay_blocked:
            self.replay_blocked = why
            self.refresh()

    def refresh(self) -> None:
        """Redraw from the message (it may still be streaming)."""
        m = self.message
        if m is None or not m.tokens:
            return
        t = as_record(m.tokens[self.index])
        n = len(m.tokens)
        self.title.setText(f"Token {self.index + 1} of {n}")
        self.prev_button.setEnabled(self.index > 0)
        self.next_button.setEnabled(self.index < n - 1)
        self.chip.setText(visible_text(t.text))
        self.chip.setToolTip(f"id {t.id}  \u00b7  {t.text!r}")
        self.prob.setText(f"{t.prob:.1%}")
        self.entropy.setText(f"{t.entropy:.2f} nats")
        self.channel.setText(t.channel)
        drafting = bool(m.stats.get("decoder") or m.stats.get("drafted"))
        if t.drafted:
            self.draft.setText(
                "drafted \u00b7 accepted" if t.accepted else "drafted \u00b7 rejected"
            )
            self.draft.set_kind("live" if t.accepted else "error")
        else:
            self.draft.setText("from the target (not drafted)" if drafting else "no drafter")
            self.draft.set_kind("")
        top = sorted(t.top, key=lambda a: -a.prob)[:TOP_N]
        if t.id not in [a.id for a in top]:
            top = [*top[: TOP_N - 1], Alternative(t.id, t.text, t.prob)]  # the pick is listed
        for row, alt in zip(self.rows, top, strict=False):
            row.set_alternative(alt.id, alt.text, alt.prob, alt.id == t.id)
            row.replay.setEnabled(not self.replay_blocked)
            row.show()
        for row in self.rows[len(top) :]:
            row.hide()
        self.note.setText(
            self.replay_blocked
            or "Replay keeps the text before this token and its cached prompt; only what "
            "follows the chosen token is generated. The original stays as a version."
        )

    def _on_row_replay(self, token_id: int) -> None:
        if self.message is not None and not self.replay_blocked:
            self.sig_replay.emit(self.message, self.index, token_id)

    def _on_close_clicked(self) -> None:
        self.hide()
        self.sig_closed.emit()
