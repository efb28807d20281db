"""The Chats list: saved conversations, newest first, with search, new, rename, clone
and delete.

It reads the store itself (quick, read-only queries) and says what the user chose
through ``sig_*``; opening, renaming, cloning and deleting are the conversation
controller's job, since the panes may be showing that conversation. Deleting asks
first, inline (no dialog). GUI thread only.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QModelIndex, QPoint, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QKeyEvent, QPainter, QPainterPath
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.widgets import IconButton
from engine.storage import ConversationStore, ConversationSummary, StorageError

ID_ROLE = Qt.ItemDataRole.UserRole
SUBTITLE_ROLE = Qt.ItemDataRole.UserRole + 1
SEARCH_PAUSE_MS = 200


def when(ts: float, now: float | None = None) -> str:
    """A short, relative time for a list row."""
    now = time.time() if now is None else now
    age = max(0.0, now - ts)
    if age < 60:
        return "just now"
    if age < 3600:
        return f"{int(age // 60)} min ago"
    if age < 86400:
        return f"{int(age // 3600)} h ago"
    if age < 2 * 86400:
        return "yesterday"
    if age < 7 * 86400:
        return time.strftime("%A", time.localtime(ts))
    return time.strftime("%d %b %Y" if age > 300 * 86400 else "%d %b", time.localtime(ts))


class ConversationDelegate(QStyledItemDelegate):
    """Draws a row as a rounded card: the title, and a muted line under it."""

    ROW = 50

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        return QSize(option.rect.width(), self.ROW)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        pal = theme.current()
        rect = option.rect.adjusted(4, 2, -4, -2)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hover = bool(option.state & QStyle.StateFlag.State_MouseOver)
        if selected or hover:
            path = QPainterPath()
            path.addRoundedRect(rect, 8, 8)
            painter.fillPath(path, QColor(pal.accent_soft if selected else pal.surface2))
        title_font = QFont(option.font)
        title_font.setWeight(QFont.Weight.DemiBold if selected else QFont.Weight.Medium)
        painter.setFont(title_font)
        painter.setPen(QColor(pal.text))
        inner = rect.adjusted(10, 6, -10, -6)
        title = painter.fontMetrics().elidedText(
            index.data(Qt.ItemDataRole.DisplayRole) or "",
            Qt.TextElideMode.ElideRight,
            inner.width(),
        )
        painter.drawText(
            QRect(inner.left(), inner.top(), inner.width(), inner.height() // 2 + 2),
            int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
            title,
        )
        small = QFont(option.font)
        small.setPointSizeF(max(7.0, option.font.pointSizeF() - 1.5))
        painter.setFont(small)
        painter.setPen(QColor(pal.muted if selected else pal.faint))
        subtitle = painter.fontMetrics().elidedText(
            index.data(SUBTITLE_ROLE) or "", Qt.TextElideMode.ElideRight, inner.width()
        )
        painter.drawText(
            QRect(inner.left(), inner.center().y() + 1, inner.width(), inner.height() // 2),
            int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
            subtitle,
        )
        painter.restore()

    def updateEditorGeometry(self, editor: QWidget, option, index: QModelIndex) -> None:
        # The title line only, so the row keeps its shape while renaming.
        r = option.rect.adjusted(8, 4, -8, 0)
        editor.setGeometry(QRect(r.left(), r.top(), r.width(), 30))


class ConversationListWidget(QListWidget):
    """The list itself; Delete asks to delete, F2 renames (Qt's edit trigger)."""

    sig_delete_key = Signal()
    """Delete or Backspace was pressed on a row."""

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self.state() != (
            QAbstractItemView.State.EditingState
        ):
            self.sig_delete_key.emit()
            return
        super().keyPressEvent(event)


class ConversationList(QWidget):
    """Saved conversations with search and actions."""

    sig_open = Signal(int)
    """Show this conversation in the panes."""
    sig_new = Signal()
    """Start a new conversation."""
    sig_rename = Signal(int, str)
    """Rename a conversation (id, new title)."""
    sig_clone = Signal(int)
    """Copy a conversation and open the copy."""
    sig_delete = Signal(int)
    """Delete a conversation (the user confirmed)."""

    def __init__(self, store: ConversationStore, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        self.current: int | None = None
        self._pending_delete: int | None = None
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_PAUSE_MS)
        self._search_timer.timeout.connect(self.refresh)
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(0)
        self._refresh_timer.timeout.connect(self.refresh)
        self._build()
        self.refresh()

    def _build(self) -> None:
        head = QHBoxLayout()
        head.setContentsMargins(12, 0, 6, 0)
        title = QLabel("RECENT", self)
        title.setObjectName("SectionTitle")
        self.new_button = IconButton("new-chat", "New chat (Ctrl+N)", self, 18)
        self.new_button.clicked.connect(self.sig_new)
        head.addWidget(title)
        head.addStretch(1)
        head.addWidget(self.new_button)
        self.search = QLineEdit(self)
        self.search.setObjectName("ChatSearch")
        self.search.setPlaceholderText("Search chats")
        self.search.setClearButtonEnabled(True)
        self.search.addAction(
            theme.icon("find", theme.current().muted, 16), QLineEdit.ActionPosition.LeadingPosition
        )
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.list = ConversationListWidget(self)
        self.list.setObjectName("ConversationList")
        self.list.setItemDelegate(ConversationDelegate(self.list))
        self.list.setMouseTracking(True)
        self.list.setFrameShape(QFrame.Shape.NoFrame)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.DoubleClicked
        )
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._on_list_menu)
        self.list.itemClicked.connect(self._on_list_item_clicked)
        self.list.itemActivated.connect(self._on_list_item_clicked)
        self.list.itemChanged.connect(self._on_list_item_changed)
        self.list.sig_delete_key.connect(self.ask_delete)
        self.list.currentItemChanged.connect(lambda *_: self._refresh_actions())
        self.empty = QLabel(self)
        self.empty.setObjectName("Note")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.confirm = QFrame(self)
        self.confirm.setObjectName("ConfirmBar")
        self.confirm_text = QLabel(self.confirm)
        self.confirm_text.setWordWrap(True)
        self.confirm_cancel = QPushButton("Cancel", self.confirm)
        self.confirm_cancel.clicked.connect(self._cancel_delete)
        self.confirm_delete = QPushButton("Delete", self.confirm)
        self.confirm_delete.setObjectName("DangerButton")
        self.confirm_delete.clicked.connect(self._confirm_delete)
        cl = QVBoxLayout(self.confirm)
        cl.setContentsMargins(10, 8, 10, 8)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.confirm_cancel)
        row.addWidget(self.confirm_delete)
        cl.addWidget(self.confirm_text)
        cl.addLayout(row)
        self.confirm.hide()
        actions = QHBoxLayout()
        actions.setContentsMargins(12, 0, 6, 0)
        self.count = QLabel(self)
        self.count.setObjectName("Note")
        self.rename_button = IconButton("edit", "Rename the selected chat (F2)", self, 16)
        self.rename_button.clicked.connect(self.start_rename)
        self.clone_button = IconButton("copy", "Clone the selected chat", self, 16)
        self.clone_button.clicked.connect(self._on_clone_clicked)
        self.delete_button = IconButton("trash", "Delete the selected chat", self, 16)
        self.delete_button.clicked.connect(self.ask_delete)
        actions.addWidget(self.count, 1)
        for b in (self.rename_button, self.clone_button, self.delete_button):
            actions.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        layout.addLayout(head)
        search_row = QHBoxLayout()
        search_row.setContentsMargins(10, 0, 10, 0)
        search_row.addWidget(self.search)
        layout.addLayout(search_row)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.empty, 1)
        confirm_row = QHBoxLayout()
        confirm_row.setContentsMargins(8, 0, 8, 0)
        confirm_row.addWidget(self.confirm)
        layout.addLayout(confirm_row)
        layout.addLayout(actions)

    # ------------------------------------------------------------ contents

    def refresh_soon(self) -> None:
        """Refresh once the event loop is next free: a prompt sent to several panes
        changes the store once per pane, and the list is rebuilt only once."""
        self._refresh_timer.start()

    def refresh(self) -> None:
        """Re-read the list from the store (keeps the selection)."""
        self._refresh_timer.stop()
        query = self.search.text().strip()
        try:
            rows = self.store.list_conversations(query)
        except StorageError as exc:
            rows = []
            self.empty.setText(f"The chats cannot be read: {exc}")
        self.list.blockSignals(True)
        self.list.clear()
        now = time.time()
        for conv in rows:
            self.list.addItem(self._item(conv, now, bool(query)))
        self.list.blockSignals(False)
        self.set_current(self.current)
        if not rows:
            self.empty.setText(
                f"No chats match \u201c{query}\u201d."
                if query
                else "No chats yet. Send a prompt to start one; it is saved as it streams."
            )
        self.list.setVisible(bool(rows))
        self.empty.setVisible(not rows)
        self.count.setText(f"{len(rows)} chat{'s' if len(rows) != 1 else ''}" if rows else "")
        self._refresh_actions()

    @staticmethod
    def _item(conv: ConversationSummary, now: float, searching: bool) -> QListWidgetItem:
        item = QListWidgetItem(conv.title)
        item.setData(ID_ROLE, conv.id)
        n = conv.message_count
        detail = conv.snippet if searching and conv.snippet else f"{n} message{'s' * (n != 1)}"
        item.setData(SUBTITLE_ROLE, f"{when(conv.updated, now)}  \u00b7  {detail}")
        item.setToolTip(conv.title)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
        return item

    def ids(self) -> list[int]:
        return [self.list.item(i).data(ID_ROLE) for i in range(self.list.count())]

    def item_for(self, conversation_id: int | None) -> QListWidgetItem | None:
        for i in range(self.list.count()):
            if self.list.item(i).data(ID_ROLE) == conversation_id:
                return self.list.item(i)
        return None

    def set_current(self, conversation_id: int | None) -> None:
        """Mark the conversation the panes show (None: a new, unsaved one)."""
        self.current = conversation_id
        item = self.item_for(conversation_id)
        self.list.blockSignals(True)
        if item is None:
            self.list.clearSelection()
            self.list.setCurrentItem(None)
        else:
            self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        self._refresh_actions()

    def selected_id(self) -> int | None:
        item = self.list.currentItem()
        return item.data(ID_ROLE) if item is not None else None

    def _refresh_actions(self) -> None:
        on = self.selected_id() is not None
        for b in (self.rename_button, self.clone_button, self.delete_button):
            b.setEnabled(on)

    # ------------------------------------------------------------ actions

    def _on_list_item_clicked(self, item: QListWidgetItem) -> None:
        cid = item.data(ID_ROLE)
        if cid != self.current:
            self.sig_open.emit(cid)

    def start_rename(self) -> None:
        if (item := self.list.currentItem()) is not None:
            self.list.editItem(item)

    def _on_list_item_changed(self, item: QListWidgetItem) -> None:
        title = item.text().strip()
        if title:
            self.sig_rename.emit(item.data(ID_ROLE), title)
        else:
            self.refresh()  # an empty title is not a title: put the old one back

    def _on_clone_clicked(self) -> None:
        if (cid := self.selected_id()) is not None:
            self.sig_clone.emit(cid)

    def ask_delete(self) -> None:
        item = self.list.currentItem()
        if item is None:
            return
        self._pending_delete = item.data(ID_ROLE)
        self.confirm_text.setText(
            f"Delete \u201c{item.text()}\u201d and all its versions? This cannot be undone."
        )
        self.confirm.show()
        self.confirm_cancel.setFocus()

    def _cancel_delete(self) -> None:
        self._pending_delete = None
        self.confirm.hide()

    def _confirm_delete(self) -> None:
        cid, self._pending_delete = self._pending_delete, None
        self.confirm.hide()
        if cid is not None:
            self.sig_delete.emit(cid)

    def _on_list_menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        self.list.setCurrentItem(item)
        menu = QMenu(self)
        menu.addAction("Open", lambda: self.sig_open.emit(item.data(ID_ROLE)))
        menu.addAction("Rename", self.start_rename)
        menu.addAction("Clone", self._on_clone_clicked)
        menu.addSeparator()
        menu.addAction("Delete\u2026", self.ask_delete)
        menu.popup(self.list.viewport().mapToGlobal(pos))
