"""The left sidebar: section buttons (Chats, and Models when that page is present), a
one-time notice area, and the Chats list.

The sections switch what the centre of the window shows (``sig_section``); the list of
conversations stays in view either way, so any chat is one click away. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QFrame,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.chat.styles import sidebar_qss
from app.conversations.conversation_list import ConversationList
from app.widgets import IconButton
from engine.storage import ConversationStore

WIDTH = 264


class Sidebar(QFrame):
    """Navigation and the conversation list."""

    sig_section = Signal(str)
    """A section was chosen (its key, e.g. "chats" or "models")."""

    def __init__(self, store: ConversationStore, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("Sidebar")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setFixedWidth(WIDTH)
        self._buttons: dict[str, QToolButton] = {}
        self._icons: dict[str, str] = {}
        self._group = QButtonGroup(self)
        self._group.setExclusive(True)
        self.nav = QVBoxLayout()
        self.nav.setContentsMargins(8, 0, 8, 0)
        self.nav.setSpacing(2)
        self.notice = QFrame(self)
        self.notice.setObjectName("SidebarNotice")
        self.notice_icon = IconButton("alert", "", self.notice, 16, "warning")
        self.notice_text = QLabel(self.notice)
        self.notice_text.setObjectName("SidebarNoticeText")
        self.notice_text.setWordWrap(True)
        self.notice_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notice_close = IconButton("close", "Dismiss", self.notice, 14)
        self.notice_close.clicked.connect(self.notice.hide)
        nl = QHBoxLayout(self.notice)
        nl.setContentsMargins(8, 8, 6, 8)
        nl.addWidget(self.notice_icon, 0, Qt.AlignmentFlag.AlignTop)
        nl.addWidget(self.notice_text, 1)
        nl.addWidget(self.notice_close, 0, Qt.AlignmentFlag.AlignTop)
        self.notice.hide()
        self.conversations = ConversationList(store, self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 12, 0, 10)
        layout.setSpacing(10)
        layout.addLayout(self.nav)
        notice_row = QHBoxLayout()
        notice_row.setContentsMargins(8, 0, 8, 0)
        notice_row.addWidget(self.notice)
        layout.addLayout(notice_row)
        layout.addWidget(self.conversations, 1)
        self.add_section("chats", "Chats", "chat")
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self._on_theme_changed(theme.current())

    def add_section(self, key: str, label: str, icon: str) -> QToolButton:
        """A section button; the buttons show once there is more than one section."""
        button = QToolButton(self)
        button.setObjectName("NavButton")
        button.setText(label)
        button.setCheckable(True)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        button.setIconSize(QSize(18, 18))
        button.setSizePolicy(button.sizePolicy().Policy.Expanding, button.sizePolicy().Policy.Fixed)
        button.clicked.connect(lambda: self.sig_section.emit(key))
        self._group.addButton(button)
        self._buttons[key] = button
        self._icons[key] = icon
        self.nav.addWidget(button)
        if len(self._buttons) == 1:
            button.setChecked(True)
        for b in self._buttons.values():
            b.setVisible(len(self._buttons) > 1)
        self._on_theme_changed(theme.current())
        return button

    def set_section(self, key: str) -> None:
        """Mark ``key`` as the section shown (without emitting ``sig_section``)."""
        if key in self._buttons:
            self._buttons[key].setChecked(True)

    def section_button(self, key: str) -> QToolButton | None:
        return self._buttons.get(key)

    def show_notice(self, text: str, kind: str = "warning") -> None:
        """Show a message until the user dismisses it: a warning (the database was
        repaired) or good news (``kind`` "success": a drafter finished training)."""
        self.notice_text.setText(text)
        theme.set_property(self.notice, "kind", kind)
        pal = theme.current()
        icon, colour = ("check", pal.success) if kind == "success" else ("alert", pal.warning)
        self.notice_icon.setIcon(theme.icon(icon, colour, 16))
        self.notice.show()

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        self.setStyleSheet(sidebar_qss(pal))
        for key, button in self._buttons.items():
            button.setIcon(theme.icon(self._icons[key], pal.muted, 18))
