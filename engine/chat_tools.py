"""Tools in a chat's conversation: what the model is sent, and the calls it made.

The same formats as the API server (engine.server.tools): a model whose chat template
renders tools gets them through it; any other model gets the generic format (the tools
in the system prompt, calls as ``<tool_call>{json}</tool_call>``, results as user
turns). ``prepare`` shapes one request, ``reply_calls`` reads the calls out of a
finished reply, ``history_text`` writes an answered call back into the history the
way the model wrote it. Plain Python, any thread (it reads only JSON files).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.events import ChatMessage
from engine.server.tools import (
    ToolCall,
    ToolFormat,
    call_text,
    parse_calls,
    plan_tools,
    split_all,
    tool_format,
    with_tools,
)

MAX_TOOL_ROUNDS = 8  # replies in a row that may call tools before the pane stops asking


@dataclass(frozen=True)
class ToolTurn:
    """One request with tools: the conversation as the model sees it, the tools its
    template renders itself (``Generate.tools``), and how its calls are read back."""

    messages: tuple[ChatMessage, ...]
    template_tools: tuple[dict, ...]
    continue_final: bool
    fmt: ToolFormat
    tools: list[dict] = field(default_factory=list)


def prepare(
    folder: Path | None, model: str, messages: Sequence[ChatMessage], tools: list[dict]
) -> ToolTurn:
    """The request for ``messages`` offering ``tools`` (OpenAI-style functions) to the
    model in ``folder`` (its chat template decides the format)."""
    plan = plan_tools(tool_format(folder), tools, "auto", model)
    shaped, continue_final = with_tools(tuple(messages), plan)
    return ToolTurn(shaped, plan.template_tools, continue_final, plan.fmt, list(tools))


def reply_calls(turn: ToolTurn, text: str) -> tuple[str, list[ToolCall]]:
    """A finished reply's visible text and the tool calls in it."""
    visible, texts = split_all(turn.fmt, text)
    return visible.strip(), parse_calls(turn.fmt, texts, turn.tools)


def history_text(turn: ToolTurn, name: str, arguments: Any) -> str:
    """A call as the model writes it, for the reply's place in the history."""
    return call_text(turn.fmt, name, arguments)


__all__ = ["MAX_TOOL_ROUNDS", "ToolCall", "ToolTurn", "history_text", "prepare", "reply_calls"]
