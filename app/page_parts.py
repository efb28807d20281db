"""Building blocks of the Serve and Settings pages: titled cards like the Models page's,
a status line, a warning banner, a monospace read-only value with a copy button, and
the stylesheet for them. GUI thread only.
"""

from __future__ import annotations

from string import Template

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.library.model_rows import models_qss
from app.widgets import CopyButton, ElidedLabel

PAGE_QSS = Template("""
#StatusDot { border-radius: 5px; background: $faint; }
#StatusDot[state="running"] { background: $success; }
#StatusDot[state="busy"] { background: $accent; }
#StatusDot[state="error"] { background: $danger; }
#StatusText { font-weight: 600; }
#StatusText[state="error"] { color: $danger; }
#Banner { background: $surface2; border: 1px solid $warning; border-radius: 10px; }
#Banner[kind="danger"] { border-color: $danger; }
#Banner[kind="info"] { border-color: $border; }
#BannerText { font-size: 12px; }
#Value { font-family: "$mono"; font-size: 12px; background: $surface2; border: 1px solid $border;
         border-radius: 6px; padding: 3px 8px; }
#FieldLabel { color: $muted; }
#CodeSnippet { background: $code_bg; border: 1px solid $border; border-radius: 10px;
               font-family: "$mono"; font-size: 12px; }
#IdRow { border-bottom: 1px solid $border; }
#IdText { font-family: "$mono"; font-size: 12px; }
#LogTable { background: transparent; border: none; gridline-color: transparent;
            selection-background-color: $surface3; selection-color: $text; }
#LogTable QHeaderView::section { background: transparent; color: $muted; border: none;
            border-bottom: 1px solid $border; padding: 4px 6px; font-size: 11px;
            font-weight: 600; }
#LogTable::item { padding: 2px 6px; border-bottom: 1px solid $border; }
#Badge[kind="success"] { color: $success; }
#Badge[kind="danger"] { color: $danger; }
#Badge[kind="info"] { color: $info; }
#HostTable { background: $surface2; border: 1px solid $border; border-radius: 8px;
             gridline-color: $border; }
#HostTable QHeaderView::section { background: transparent; color: $muted; border: none;
            border-bottom: 1px solid $border; padding: 4px 6px; font-size: 11px;
            font-weight: 600; }
""")


def page_qss(pal: theme.Palette) -> str:
    """The Models page's card rules plus this module's."""
    values = {k: v for k, v in vars(pal).items() if isinstance(v, str)}
    from app.theme import mono_font_family

    return models_qss(pal) + PAGE_QSS.substitute(values, mono=mono_font_family())


def page_title(title: str, text: str, parent: QWidget) -> tuple[QLabel, QLabel]:
    head = QLabel(title, parent)
    head.setObjectName("EmptyTitle")
    sub = QLabel(text, parent)
    sub.setObjectName("EmptyText")
    sub.setWordWrap(True)
    return head, sub


class Card(QFrame):
    """A titled card (same look as the Models page's). ``body`` takes the content;
    ``header`` has room for buttons on the right."""

    def __init__(self, title: str, note: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ModelsCard")
        head = QWidget(self)
        head.setObjectName("ModelsCardHeader")
        head.setFixedHeight(46)
        self.header = QHBoxLayout(head)
        self.header.setContentsMargins(16, 0, 10, 0)
        self.header.setSpacing(8)
        self.title = QLabel(title, head)
        self.title.setObjectName("ModelsCardTitle")
        self.header.addWidget(self.title)
        self.note = QLabel(note, head)
        self.note.setObjectName("Note")
        self.note.setVisible(bool(note))
        self.header.addWidget(self.note)
        self.header.addStretch(1)
        self.body = QVBoxLayout()
        self.body.setContentsMargins(16, 12, 16, 14)
        self.body.setSpacing(10)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        outer.addWidget(head)
        outer.addLayout(self.body, 1)

    def set_note(self, text: str) -> None:
        self.note.setText(text)
        self.note.setVisible(bool(text))


class StatusLine(QWidget):
    """A coloured dot and one line of text: stopped, busy, running or error."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.dot = QLabel(self)
        self.dot.setObjectName("StatusDot")
        self.dot.setFixedSize(10, 10)
        self.text = QLabel(self)
        self.text.setObjectName("StatusText")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)
        layout.addWidget(self.dot, 0, Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(self.text, 1)

    def set_state(self, state: str, text: str) -> None:
        """``state``: "stopped" | "busy" | "running" | "error"."""
        theme.set_property(self.dot, "state", state)
        theme.set_property(self.text, "state", state)
        self.text.setText(text)


class Banner(QFrame):
    """A framed message with an icon: a warning (``kind`` "warning" or "danger") or a
    plain note ("info")."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("Banner")
        self._kind = "warning"
        self.icon = QLabel(self)
        self.icon.setFixedSize(16, 16)
        self.text = QLabel(self)
        self.text.setObjectName("BannerText")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(8)
        layout.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.text, 1)
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self._on_theme_changed(theme.current())
        self.hide()

    def show_message(self, text: str, kind: str = "warning") -> None:
        """Show ``text`` (hidden when empty)."""
        self._kind = kind
        self.text.setText(text)
        theme.set_property(self, "kind", kind)
        self._on_theme_changed(theme.current())
        self.setVisible(bool(text))

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        colour = {"danger": pal.danger, "warning": pal.warning}.get(self._kind, pal.muted)
        self.icon.setPixmap(theme.icon("alert", colour, 16).pixmap(16, 16))


class ValueRow(QWidget):
    """A label, a monospace value (selectable, elided) and a copy button."""

    def __init__(self, label: str, parent: QWidget | None = None, label_width: int = 120):
        super().__init__(parent)
        self.label = QLabel(label, self)
        self.label.setObjectName("FieldLabel")
        self.label.setFixedWidth(label_width)
        self.value = ElidedLabel("", self)
        self.value.setObjectName("Value")
        self.value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.value.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._copy_text = ""
        self.copy = CopyButton(lambda: self._copy_text, f"Copy {label.lower()}", self)
        self.layout_ = QHBoxLayout(self)
        self.layout_.setContentsMargins(0, 0, 0, 0)
        self.layout_.setSpacing(8)
        self.layout_.addWidget(self.label)
        self.layout_.addWidget(self.value, 1)
        self.layout_.addWidget(self.copy)

    def set_value(self, shown: str, copied: str | None = None) -> None:
        self.value.set_full_text(shown)
        self.value.setToolTip(shown)
        self._copy_text = shown if copied is None else copied
        self.copy.setEnabled(bool(self._copy_text))

    def add_button(self, button: QToolButton) -> None:
        self.layout_.addWidget(button)


__all__ = ["Banner", "Card", "StatusLine", "ValueRow", "page_qss", "page_title"]
