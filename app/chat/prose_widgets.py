"""The two ways a paragraph of a reply is drawn: settled, and still being written.

While a reply streams, only its last paragraph changes. ``StreamingProse`` draws that
one from its own text document and asks the transcript for a new layout only when the
paragraph grows by a line; a QLabel would re-lay out the whole transcript (and scroll
and repaint all of it) on every new token. Finished paragraphs are ``ProseLabel``s:
selectable, with links, and with a height fixed once their text stops changing.
GUI thread only.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, QRectF, Qt
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QPainter,
    QPaintEvent,
    QPalette,
    QResizeEvent,
    QTextDocument,
)
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

QWIDGETSIZE_MAX = (1 << 24) - 1


class ProseLabel(QLabel):
    """A wrapped text label that can hold its height once its text stops changing.

    Every layout pass asks each wrapped label for its height at its width, and a
    label answers by laying its whole text out again. While a reply streams, that
    made each update re-lay out every paragraph above the one that changes. A
    settled label has a fixed height instead, recomputed only when its width, font
    or style changes; a new text unsettles it.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.settled = False
        self.source: tuple | None = None  # what the text was made from (MessageWidget)

    def setText(self, text: str) -> None:
        if self.settled:
            self.settled = False
            self.setMinimumHeight(0)
            self.setMaximumHeight(QWIDGETSIZE_MAX)
        super().setText(text)  # also turns height-for-width back on

    def settle(self) -> None:
        if not self.settled:
            self.settled = True
            self._fit()

    def _fit(self) -> None:
        policy = self.sizePolicy()
        if policy.hasHeightForWidth():
            policy.setHeightForWidth(False)
            self.setSizePolicy(policy)
        # QLabel never answers less than its minimum height: lift it to measure.
        self.setMinimumHeight(0)
        self.setMaximumHeight(QWIDGETSIZE_MAX)
        self.setFixedHeight(self.heightForWidth(self.width()))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.settled and event.size().width() != event.oldSize().width():
            self._fit()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if self.settled and event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._fit()

    def show_text(self, text: str, fmt: Qt.TextFormat) -> None:
        if self.textFormat() != fmt:
            self.setTextFormat(fmt)
        if self.text() != text:
            self.setText(text)


class StreamingProse(QWidget):
    """The paragraph a reply is still writing: markdown (or highlighted HTML) drawn from
    a text document, at a fixed height that changes only when a line is added."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("Prose")
        self.source: tuple | None = None  # what the text was made from (MessageWidget)
        self.doc = QTextDocument(self)
        self.doc.setDocumentMargin(0)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._text = ""
        self._format = Qt.TextFormat.MarkdownText

    def text(self) -> str:
        return self._text

    def textFormat(self) -> Qt.TextFormat:
        return self._format

    def show_text(self, text: str, fmt: Qt.TextFormat) -> None:
        if text == self._text and fmt == self._format:
            return
        self._text, self._format = text, fmt
        self.doc.setDefaultFont(self.font())
        if fmt == Qt.TextFormat.RichText:
            self.doc.setHtml(text)
        else:
            self.doc.setMarkdown(text)
        self._fit()
        self.update()

    def _fit(self) -> None:
        self.doc.setTextWidth(max(self.width(), 1))
        height = math.ceil(self.doc.size().height())
        if self.minimumHeight() != height or self.maximumHeight() != height:
            self.setFixedHeight(height)  # the only change the transcript's layout sees

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self._fit()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self.doc.setDefaultFont(self.font())
            self._fit()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        context = QAbstractTextDocumentLayout.PaintContext()
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Text, palette.color(QPalette.ColorRole.WindowText))
        context.palette = palette
        context.clip = QRectF(event.rect())
        self.doc.documentLayout().draw(painter, context)
