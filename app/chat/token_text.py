"""A reply drawn as its tokens: each one clickable, shaded by how unsure the model was.

Low-probability tokens get a warm background (the darker, the less likely), accepted
draft tokens are underlined in the accent colour, thinking tokens are muted and
italic. Hovering a token shows its figures in a tooltip; clicking one asks for the
inspector (``sig_token_clicked``). GUI thread only.
"""

from __future__ import annotations

import html
import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCursor
from PySide6.QtWidgets import QLabel, QSizePolicy, QToolTip, QWidget

from app import theme
from engine.events import TokenRecord

SURE = 0.9  # at or above this probability a token gets no warning shade


def rgba(colour: str, alpha: float) -> str:
    """``#RRGGBB`` as a CSS rgba() with ``alpha`` (0..1)."""
    c = colour.lstrip("#")
    r, g, b = (int(c[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{max(0.0, min(1.0, alpha)):.2f})"


def visible_text(text: str) -> str:
    """A token's text with whitespace made visible (for chips and lists)."""
    if text == "":
        return "\u2205"  # an empty piece (part of a multi-byte character)
    return text.replace(" ", "\u00b7").replace("\n", "\u21b5").replace("\t", "\u2192")


def describe(t: TokenRecord) -> str:
    """One tooltip's worth about a token."""
    lines = [
        f"<b>{html.escape(visible_text(t.text))}</b>  {t.prob:.1%}",
        f"entropy {t.entropy:.2f} nats",
    ]
    if t.drafted:
        lines.append("drafted, accepted" if t.accepted else "drafted, rejected")
    others = [a for a in t.top if a.id != t.id][:3]
    if others:
        lines.append(
            "also: "
            + ", ".join(f"{html.escape(visible_text(a.text))} {a.prob:.0%}" for a in others)
        )
    return "<br>".join(lines)


def tokens_html(tokens: list[TokenRecord], selected: int | None = None) -> str:
    """Rich text with one link per token (``t:<index>``)."""
    pal = theme.current()
    parts = [f"<div style=\"white-space: pre-wrap; font-family: '{theme.mono_font_family()}';\">"]
    for i, t in enumerate(tokens):
        if i and t.channel != tokens[i - 1].channel:
            parts.append("\n\n")  # thinking and answer read as two paragraphs
        shown = html.escape(visible_text(t.text) if not t.text.strip() else t.text)
        if "\n" in t.text:
            shown = html.escape(visible_text(t.text)) + "\n" * t.text.count("\n")
        colour = pal.muted if t.channel == "thinking" else pal.text
        doubt = 0.0 if t.prob >= SURE else (1.0 - t.prob) / (1.0 - 0.05)
        if i == selected:
            background, colour = pal.accent, pal.on_accent
        elif doubt > 0:
            background = rgba(pal.warning, 0.10 + 0.45 * min(doubt, 1.0))
        else:
            # Alternate a faint tint so neighbouring tokens are told apart.
            background = rgba(pal.muted, 0.10 if i % 2 else 0.02)
        style = f"color:{colour}; background-color:{background};"
        if t.channel == "thinking":
            style += " font-style:italic;"
        if t.drafted and t.accepted:
            style += f" text-decoration: underline; text-decoration-color:{pal.accent};"
        parts.append(
            f'<a href="t:{i}" style="text-decoration:none;"><span style="{style}">{shown}</span></a>'
        )
    parts.append("</div>")
    return "".join(parts)


class TokenText(QLabel):
    """A message's tokens as clickable text."""

    sig_token_clicked = Signal(int)
    """A token was clicked; the argument is its index in the message."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("TokenText")
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.linkActivated.connect(self._on_self_link_activated)
        self.linkHovered.connect(self._on_self_link_hovered)
        self._tokens: list[TokenRecord] = []
        self._key: tuple = ()

    def set_tokens(self, tokens: list[TokenRecord], selected: int | None = None) -> None:
        """Show ``tokens``; redraws only when something visible changed."""
        self._tokens = tokens
        key = (len(tokens), selected, theme.current().name)
        if key != self._key:
            self._key = key
            self.setText(tokens_html(tokens, selected))

    def _on_self_link_activated(self, href: str) -> None:
        if href.startswith("t:"):
            self.sig_token_clicked.emit(int(href[2:]))

    def _on_self_link_hovered(self, href: str) -> None:
        # Hover answers "how sure was it?" without opening anything.
        if href.startswith("t:") and (i := int(href[2:])) < len(self._tokens):
            QToolTip.showText(QCursor.pos(), describe(self._tokens[i]), self)
        else:
            QToolTip.hideText()


def mean_surprise(tokens: list[TokenRecord]) -> float:
    """Perplexity-like figure for a reply's tokens (1.0: every token was certain)."""
    if not tokens:
        return 1.0
    return math.exp(-sum(t.logprob for t in tokens) / len(tokens))


__all__ = ["TokenText", "describe", "mean_surprise", "rgba", "tokens_html", "visible_text"]
