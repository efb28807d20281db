"""Render markdown prose with some source characters marked (accepted draft tokens).

Qt turns the markdown into a document; the document's plain text is the source less
its markup, so walking both in step maps each rendered character back to its source
character and its flag. A mismatch only shifts a highlight, never the text. GUI thread.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor, QTextDocument

LOOKAHEAD = 12  # how far ahead in the source a rendered character may be found


def marked_markdown_html(text: str, marks: list[bool], colour: str) -> str:
    """HTML for markdown ``text`` with characters whose mark is set on ``colour``.

    ``marks[i]`` belongs to ``text[i]``.
    """
    doc = QTextDocument()
    doc.setMarkdown(text, QTextDocument.MarkdownFeature.MarkdownDialectGitHub)
    rendered = doc.toPlainText()
    shown = _align(text, rendered, marks)
    fmt = QTextCharFormat()
    fmt.setBackground(QColor(_qcolor(colour)))
    cursor = QTextCursor(doc)
    i = 0
    while i < len(shown):
        if not shown[i]:
            i += 1
            continue
        j = i
        while j < len(shown) and shown[j]:
            j += 1
        cursor.setPosition(i)
        cursor.setPosition(j, QTextCursor.MoveMode.KeepAnchor)
        cursor.mergeCharFormat(fmt)
        i = j
    return doc.toHtml()


def _align(source: str, rendered: str, marks: list[bool]) -> list[bool]:
    shown: list[bool] = []
    j = 0
    for ch in rendered:
        k = j
        limit = min(len(source), j + LOOKAHEAD)
        while k < limit and source[k] != ch and not (ch == "\n" and source[k] in "\r\n"):
            k += 1
        if k < limit:
            shown.append(ch != "\n" and k < len(marks) and marks[k])
            j = k + 1
        else:
            shown.append(False)  # a character markdown added (e.g. a list number)
    return shown


def _qcolor(css: str) -> QColor:
    # Accepts "#rrggbb" and "rgba(r,g,b,a)" with a in 0..1, as the palette uses.
    if css.startswith("rgba("):
        r, g, b, a = (p.strip() for p in css[5:-1].split(","))
        c = QColor(int(r), int(g), int(b))
        c.setAlphaF(float(a))
        return c
    return QColor(css)
