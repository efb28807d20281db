"""Small shared widgets: tags, icon buttons, a copy button, an auto-height text box.

GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFrame, QLabel, QSizePolicy, QTextEdit, QToolButton, QWidget

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

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt override
        # Never scroll inside: let the transcript scroll instead.
        event.ignore()


def hline(parent: QWidget | None = None) -> QFrame:
    line = QFrame(parent)
    line.setObjectName("HLine")
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFixedHeight(1)
    return line
