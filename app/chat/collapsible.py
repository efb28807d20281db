"""A titled block whose body folds away: thinking text, a tool's result.

The caller says whether it should be open (``set_content``'s ``auto_expanded``) until
the user clicks the title; from then on the user's choice sticks. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QToolButton, QVBoxLayout, QWidget

from app import theme


class CollapsibleBlock(QFrame):
    def __init__(
        self,
        name: str,
        body: QLabel,
        margins: tuple[int, int, int, int],
        spacing: int,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.setObjectName(name)
        self.user_choice: bool | None = None
        self.toggle = QToolButton(self)
        self.toggle.setObjectName("ThinkingToggle")
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setCursor(Qt.CursorShape.PointingHandCursor)
        self.toggle.clicked.connect(self._on_toggle_clicked)
        body.setParent(self)
        self.body = body
        layout = QVBoxLayout(self)
        layout.setContentsMargins(*margins)
        layout.setSpacing(spacing)
        layout.addWidget(self.toggle)
        layout.addWidget(self.body)
        self._expanded = True
        theme.manager().sig_changed.connect(self._on_theme_changed)

    def _on_theme_changed(self, _pal: theme.Palette) -> None:
        # A bound method, so Qt drops the connection when this widget is deleted.
        self._restyle()

    @property
    def expanded(self) -> bool:
        return self._expanded

    def set_content(self, text: str, title: str, auto_expanded: bool) -> None:
        if self.body.text() != text:
            self.body.setText(text)
        self.toggle.setText(title)
        want = auto_expanded if self.user_choice is None else self.user_choice
        if want != self._expanded or self.toggle.icon().isNull():
            self._expanded = want
            self._restyle()

    def _restyle(self) -> None:
        self.body.setVisible(self._expanded)
        name = "chevron-down" if self._expanded else "chevron-right"
        self.toggle.setIcon(theme.icon(name, theme.current().muted, 14))

    def _on_toggle_clicked(self) -> None:
        self.user_choice = not self._expanded
        self._expanded = self.user_choice
        self._restyle()


__all__ = ["CollapsibleBlock"]
