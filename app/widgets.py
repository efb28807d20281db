"""Small shared widgets: tags and badges, icon buttons, a copy button, an auto-height
text box, an eliding label, a themed icon and an empty-list state.

GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QGuiApplication, QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import theme


class Tag(QLabel):
    """A small pill with a kind the stylesheet colours (stop, length, loop, error…)."""

    def __init__(self, text: str = "", kind: str = "", parent: QWidget | None = None):
        super().__init__(text, parent)
        self.setObjectName("Tag")
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        self.set_kind(kind)

    def set_kind(self, kind: str) -> None:
        theme.set_property(self, "kind", kind)


class IconButton(QToolButton):
    """A flat tool button showing a themed icon; re-tints itself when the theme changes."""

    def __init__(
        self,
        icon_name: str,
        tooltip: str,
        parent: QWidget | None = None,
        size: int = 18,
        colour_role: str = "muted",
    ):
        super().__init__(parent)
        self._icon_name = icon_name
        self._colour_role = colour_role
        self._size = size
        self.setToolTip(tooltip)
        self.setAccessibleName(tooltip)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setIconSize(QSize(size, size))
        self._on_theme_changed(theme.current())
        theme.manager().sig_changed.connect(self._on_theme_changed)

    def set_icon_name(self, name: str) -> None:
        self._icon_name = name
        self._on_theme_changed(theme.current())

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        colour = getattr(pal, self._colour_role, pal.muted)
        self.setIcon(theme.icon(self._icon_name, colour, self._size))


class CopyButton(IconButton):
    """Copies text from a callable; shows a tick for a moment so the click is seen."""

    def __init__(self, get_text, tooltip: str = "Copy", parent: QWidget | None = None):
        super().__init__("copy", tooltip, parent, size=16)
        self._get_text = get_text
        self.clicked.connect(self._on_self_clicked)

    def _on_self_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self._get_text())
        self.set_icon_name("check")
        QTimer.singleShot(1200, self._on_timer_restore)

    def _on_timer_restore(self) -> None:
        self.set_icon_name("copy")


class AutoHeightTextEdit(QTextEdit):
    """A read-only text box as tall as its text, for code blocks inside a scroll area."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWordWrapMode(self.wordWrapMode().WrapAtWordBoundaryOrAnywhere)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().setDocumentMargin(10)
        self.document().documentLayout().documentSizeChanged.connect(self._on_document_resized)

    def _on_document_resized(self, size) -> None:
        height = int(size.height()) + 2 * self.frameWidth() + 2
        if height != self.height():
            self.setFixedHeight(height)

    def wheelEvent(self, event) -> None:
        # Never scroll inside: let the transcript scroll instead.
        event.ignore()


class Badge(QLabel):
    """A small coloured label: MTP, decoder, gated... (kinds are styled by MODELS_QSS)."""

    def __init__(self, text: str, kind: str, tooltip: str = "", parent: QWidget | None = None):
        super().__init__(text, parent)
        self.setObjectName("Badge")
        self.setToolTip(tooltip)
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        theme.set_property(self, "kind", kind)


class ElidedLabel(QLabel):
    """A one-line label that shortens its text with "…" instead of growing the row."""

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self._full = text
        # Preferred, with a tiny minimum: as wide as the text when there is room.
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.set_full_text(text)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self._elide()

    def full_text(self) -> str:
        return self._full

    def sizeHint(self) -> QSize:
        return QSize(
            self.fontMetrics().horizontalAdvance(self._full) + 4, super().sizeHint().height()
        )

    def minimumSizeHint(self) -> QSize:
        return QSize(40, super().minimumSizeHint().height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, self.width())
        super().setText(shown)


class ThemedIcon(QLabel):
    """An icon as a label, in a palette colour (``role``), re-tinted when the theme changes."""

    def __init__(self, name: str, role: str, size: int = 16, parent: QWidget | None = None):
        super().__init__(parent)
        self._name, self._role, self._size = name, role, size
        self.setFixedSize(size, size)
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self._on_theme_changed(theme.current())

    def set_icon(self, name: str) -> None:
        self._name = name
        self._on_theme_changed(theme.current())

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        colour = getattr(pal, self._role)
        self.setPixmap(theme.icon(self._name, colour, self._size).pixmap(self._size, self._size))


class EmptyState(QWidget):
    """A centred icon, a line of text and an optional button (empty lists, errors)."""

    def __init__(self, icon_name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.icon = ThemedIcon(icon_name, "faint", 36, self)
        self.text = QLabel(self)
        self.text.setObjectName("ModelsEmpty")
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.button = QPushButton(self)
        self.button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.button.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 24, 24, 24)
        layout.setSpacing(10)
        layout.addStretch(2)
        layout.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.text)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(3)

    def show_text(self, text: str, icon_name: str | None = None, button: str = "") -> None:
        if icon_name:
            self.icon.set_icon(icon_name)
        self.text.setText(text)
        self.button.setText(button)
        self.button.setVisible(bool(button))
