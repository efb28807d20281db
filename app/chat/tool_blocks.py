"""Tool calls in the transcript: the calls a reply made, asking leave to run them, and
each result as its own collapsible block.

A reply's calls live in ``message.settings["tool_calls"]`` (see app.chat.pane's tool
round): each ``{"id", "name", "server", "arguments", "text", "state"}`` with state
``pending`` (asking: Allow once / Always allow SERVER / Deny), ``running``, ``done`` or
``denied``. A result is a ``tool`` message whose ``settings["tool"]`` holds the call's
name, server, arguments, duration and whether it failed. GUI thread only.
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.chat.collapsible import CollapsibleBlock
from app.widgets import ElidedLabel, ThemedIcon

STATE_TEXT = {
    "pending": "wants to run",
    "running": "running\u2026",
    "done": "ran",
    "denied": "not allowed",
}


def arguments_text(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False)


class ToolCallRow(QFrame):
    """One call: tool, arguments, state, and the three answers while it is pending."""

    sig_decision = Signal(str, str)
    """(call id, "once" | "always" | "deny")."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ToolBlock")
        self.call: dict[str, Any] = {}
        self.icon = ThemedIcon("tool", "accent", 14, self)
        self.title = QLabel(self)
        self.title.setObjectName("ToolTitle")
        self.state = QLabel(self)
        self.state.setObjectName("MessageMeta")
        self.args = ElidedLabel("", self)
        self.args.setObjectName("ToolArgs")
        self.args.setFont(theme.mono_font())
        self.once = QPushButton("Allow once", self)
        self.once.setObjectName("PrimaryButton")
        self.always = QPushButton("", self)
        self.deny = QPushButton("Deny", self)
        for b, decision in ((self.once, "once"), (self.always, "always"), (self.deny, "deny")):
            b.setCursor(Qt.CursorShape.PointingHandCursor)
            b.clicked.connect(
                lambda _=False, d=decision: self.sig_decision.emit(self.call["id"], d)
            )
        head = QHBoxLayout()
        head.setSpacing(6)
        head.addWidget(self.icon)
        head.addWidget(self.title)
        head.addWidget(self.state)
        head.addStretch(1)
        self.buttons = QWidget(self)
        bl = QHBoxLayout(self.buttons)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.setSpacing(6)
        bl.addWidget(self.once)
        bl.addWidget(self.always)
        bl.addWidget(self.deny)
        bl.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 8)
        layout.setSpacing(4)
        layout.addLayout(head)
        layout.addWidget(self.args)
        layout.addWidget(self.buttons)

    def set_call(self, call: dict[str, Any]) -> None:
        self.call = call
        server = call.get("server") or ""
        self.title.setText(call.get("name", "?") + (f"  \u00b7  {server}" if server else ""))
        state = call.get("state", "pending")
        self.state.setText(STATE_TEXT.get(state, state))
        text = arguments_text(call.get("arguments", {}))
        self.args.set_full_text(text)
        self.args.setToolTip(text)
        self.always.setText(f"Always allow {server}" if server else "Always allow")
        self.always.setToolTip(
            "Run this server's tools from now on without asking (until Lookahead restarts)"
        )
        self.buttons.setVisible(state == "pending")


class ToolCallsBox(QWidget):
    """The calls of one reply, one row each."""

    sig_decision = Signal(str, str)
    """(call id, decision) from one of the rows."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._rows: list[ToolCallRow] = []
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(6)

    def set_calls(self, calls: list[dict[str, Any]]) -> None:
        while len(self._rows) < len(calls):
            row = ToolCallRow(self)
            row.sig_decision.connect(self.sig_decision)
            self._layout.addWidget(row)
            self._rows.append(row)
        for row, call in zip(self._rows, calls, strict=False):
            row.set_call(call)
            row.show()
        for row in self._rows[len(calls) :]:
            row.hide()
        self.setVisible(bool(calls))


class ToolResultBlock(CollapsibleBlock):
    """A tool's result: "Result of add · calc · 12 ms", the text folded away below."""

    def __init__(self, parent: QWidget | None = None):
        body = QLabel()
        body.setObjectName("ToolResult")
        body.setTextFormat(Qt.TextFormat.PlainText)
        body.setWordWrap(True)
        body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        body.setFont(theme.mono_font())
        super().__init__("ToolBlock", body, (10, 4, 10, 6), 2, parent)

    def set_result(self, text: str, tool: dict[str, Any]) -> None:
        seconds = float(tool.get("duration_s") or 0.0)
        took = f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
        what = "Error from" if tool.get("is_error") else "Result of"
        server = f" \u00b7 {tool['server']}" if tool.get("server") else ""
        cut = " \u00b7 cut to fit" if tool.get("truncated") else ""
        shown = text if len(text) <= 4000 else text[:4000] + "\n\u2026"
        title = f"{what} {tool.get('name', 'tool')}{server} \u00b7 {took}{cut}"
        self.set_content(shown, title, auto_expanded=False)
        self.setToolTip(text[:2000] if len(text) > 4000 else "")
        theme.set_property(self, "error", bool(tool.get("is_error")))


__all__ = ["ToolCallRow", "ToolCallsBox", "ToolResultBlock", "arguments_text"]
