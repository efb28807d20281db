"""A small, language-agnostic syntax highlighter for code blocks in the transcript.

Regex rules cover what most languages share (keywords, strings, comments, numbers,
calls); good enough to make code readable without a lexer dependency. GUI thread.
"""

from __future__ import annotations

import re

from PySide6.QtGui import QColor, QFont, QSyntaxHighlighter, QTextCharFormat, QTextDocument

from app import theme

KEYWORDS = [
    "and",
    "as",
    "assert",
    "async",
    "await",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "def",
    "default",
    "del",
    "do",
    "elif",
    "else",
    "enum",
    "except",
    "export",
    "extends",
    "false",
    "False",
    "final",
    "finally",
    "fn",
    "for",
    "from",
    "func",
    "function",
    "go",
    "if",
    "impl",
    "import",
    "in",
    "interface",
    "is",
    "lambda",
    "let",
    "match",
    "mod",
    "module",
    "mut",
    "new",
    "nil",
    "None",
    "not",
    "null",
    "or",
    "package",
    "pass",
    "private",
    "protected",
    "pub",
    "public",
    "raise",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "True",
    "try",
    "type",
    "typeof",
    "use",
    "var",
    "void",
    "while",
    "with",
    "yield",
]

_RULES = (
    ("keyword", re.compile(r"\b(?:" + "|".join(KEYWORDS) + r")\b")),
    ("call", re.compile(r"\b[A-Za-z_]\w*(?=\()")),
    ("number", re.compile(r"\b(?:0x[0-9A-Fa-f]+|\d+(?:\.\d+)?(?:e[+-]?\d+)?)\b")),
    ("string", re.compile(r"(?:[rbfRBF]{0,2})(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`)")),
    ("comment", re.compile(r"(?:#|//|--(?=\s)).*$")),
)


class CodeHighlighter(QSyntaxHighlighter):
    def __init__(self, document: QTextDocument):
        super().__init__(document)
        self._formats: dict[str, QTextCharFormat] = {}
        self.set_palette(theme.current())

    def set_palette(self, pal: theme.Palette) -> None:
        colours = {
            "keyword": pal.accent,
            "call": pal.info,
            "number": pal.warning,
            "string": pal.success,
            "comment": pal.faint,
        }
        self._formats = {}
        for name, colour in colours.items():
            fmt = QTextCharFormat()
            fmt.setForeground(QColor(colour))
            if name == "keyword":
                fmt.setFontWeight(QFont.Weight.DemiBold)
            if name == "comment":
                fmt.setFontItalic(True)
            self._formats[name] = fmt
        self.rehighlight()

    def highlightBlock(self, text: str) -> None:
        # Later rules win: strings and comments repaint keywords inside them.
        for name, pattern in _RULES:
            fmt = self._formats[name]
            for m in pattern.finditer(text):
                if name == "comment" and _inside_string(text, m.start()):
                    continue
                self.setFormat(m.start(), m.end() - m.start(), fmt)


def _inside_string(text: str, pos: int) -> bool:
    # A '#' inside quotes is not a comment; count unescaped quotes before it.
    before = text[:pos]
    return before.count('"') % 2 == 1 or before.count("'") % 2 == 1
