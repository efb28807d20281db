"""Tool calling: what a model's chat template offers, and tool calls out of its text.

The markers and parsers come from mlx-lm (``mlx_lm.tool_parsers``), picked the way
mlx-lm picks them: ``tool_parser_type`` in tokenizer_config.json, else inferred from
the chat template. Only JSON and tokenizer files are read, never weights, so this
runs on the server's threads, not the engine thread.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolFormat:
    template: str  # the chat template text ("" when there is none)
    accepts_tools: bool  # the template renders a ``tools`` list
    start: str | None = None  # tool call markers in the output, when a parser is known
    end: str | None = None
    parser: Callable[[str, Any], Any] | None = None

    @property
    def parses_calls(self) -> bool:
        return bool(self.start and self.end and self.parser)


class _TemplateView:
    """Just enough of a tokenizer for mlx-lm's parser inference."""

    def __init__(self, template: str, vocab: dict[str, int]):
        self.chat_template = template
        self._vocab = vocab

    def get_vocab(self) -> dict[str, int]:
        return self._vocab


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_chat_template(folder: Path) -> tuple[str, dict]:
    """The default chat template text of a model folder, and its tokenizer config."""
    config = _read_json(folder / "tokenizer_config.json")
    template = config.get("chat_template") or ""
    if isinstance(template, list):  # named templates: take "default" (else the first)
        named = {t.get("name"): t.get("template", "") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), "")
    jinja = folder / "chat_template.jinja"
    if not template and jinja.is_file():
        template = jinja.read_text(encoding="utf-8", errors="replace")
    return (template if isinstance(template, str) else ""), config


@lru_cache(maxsize=64)
def _tool_format(folder: str, stamp: float) -> ToolFormat:
    template, config = read_chat_template(Path(folder))
    accepts = "tools" in template
    kind = config.get("tool_parser_type")
    if kind is None and template:
        added = _read_json(Path(folder) / "tokenizer.json").get("added_tokens") or []
        vocab = {
            t["content"]: t.get("id", 0) for t in added if isinstance(t, dict) and "content" in t
        }
        try:
            from mlx_lm.tokenizer_utils import _infer_tool_parser

            kind = _infer_tool_parser(_TemplateView(template, vocab))
        except Exception as e:  # mlx-lm moved it: tools still render, calls stay text
            log.warning("cannot infer the tool call format: %s", e)
            kind = None
    if not kind:
        return ToolFormat(template, accepts)
    try:
        module = importlib.import_module(f"mlx_lm.tool_parsers.{kind}")
    except ImportError:
        return ToolFormat(template, accepts)
    return ToolFormat(
        template, accepts, module.tool_call_start, module.tool_call_end, module.parse_tool_call
    )


def tool_format(folder: Path | None) -> ToolFormat:
    if folder is None:
        return ToolFormat("", False)
    cfg = Path(folder) / "tokenizer_config.json"
    try:
        stamp = cfg.stat().st_mtime
    except OSError:
        stamp = 0.0
    return _tool_format(str(folder), stamp)


def call_text(fmt: ToolFormat, name: str, arguments: Any) -> str:
    """An earlier tool call written the way the model writes them, for the history
    (messages reach the template as text)."""
    args = arguments
    if isinstance(args, str):
        with contextlib.suppress(ValueError):
            args = json.loads(args)
    body = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
    if fmt.start and fmt.end:
        return f"{fmt.start}\n{body}\n{fmt.end}"
    return body


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict | str  # a dict when the model wrote valid JSON arguments


def parse_calls(fmt: ToolFormat, texts: list[str], tools: list[dict] | None) -> list[ToolCall]:
    """Tool calls from the text between markers; text that does not parse is dropped
    (a call cut off by max_tokens)."""
    calls: list[ToolCall] = []
    for text in texts:
        try:
            parsed = fmt.parser(text, tools)
        except Exception as e:
            log.info("unparsable tool call %r: %s", text[:200], e)
            continue
        for item in parsed if isinstance(parsed, list) else [parsed]:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            args = item.get("arguments", {})
            if isinstance(args, str):
                with contextlib.suppress(ValueError):
                    args = json.loads(args) if args.strip() else {}
            calls.append(ToolCall(f"call_{uuid.uuid4().hex[:24]}", item["name"], args))
    return calls


class ToolCallSplitter:
    """Splits streamed answer text into visible text and tool-call texts.

    Text that might be the start of a marker is held back until it is clear.
    """

    def __init__(self, start: str, end: str):
        self.start, self.end = start, end
        self._buf = ""
        self._in_call = False
        self.made_calls = False

    def feed(self, text: str) -> tuple[str, list[str]]:
        self._buf += text
        visible, calls = "", []
        while True:
            if self._in_call:
                i = self._buf.find(self.end)
                if i < 0:
                    return visible, calls
                calls.append(self._buf[:i])
                self._buf = self._buf[i + len(self.end) :]
                self._in_call = False
                self.made_calls = True
                continue
            i = self._buf.find(self.start)
            if i >= 0:
                visible += self._buf[:i]
                self._buf = self._buf[i + len(self.start) :]
                self._in_call = True
                continue
            keep = partial_suffix(self._buf, self.start)
            cut = len(self._buf) - keep
            visible += self._buf[:cut]
            self._buf = self._buf[cut:]
            return visible, calls

    def finish(self) -> tuple[str, list[str]]:
        """What is left: held-back text, or an unterminated call (parsed if it can be)."""
        rest, self._buf = self._buf, ""
        if self._in_call:
            self._in_call = False
            self.made_calls = True
            return "", [rest]
        return rest, []


def partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that begins ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


def split_all(fmt: ToolFormat, text: str) -> tuple[str, list[str]]:
    """Visible text and tool-call texts of a whole reply."""
    if not fmt.parses_calls:
        return text, []
    splitter = ToolCallSplitter(fmt.start, fmt.end)
    visible, calls = splitter.feed(text)
    tail, more = splitter.finish()
    return visible + tail, calls + more
