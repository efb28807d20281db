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

from engine.events import ChatMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolFormat:
    template: str  # the chat template text ("" when there is none)
    accepts_tools: bool  # the template renders a ``tools`` list
    start: str | None = None  # tool call markers in the output, when a parser is known
    end: str | None = None
    parser: Callable[[str, Any], Any] | None = None
    generic: bool = False  # the generic format (the template has no tools of its own)

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


# ------------------------------------------------------------------ any model
#
# The generic tool format, for a model whose chat template has no tools. The tools
# go into the system prompt (GENERIC_PROMPT below, with one JSON line per function),
# calls come back as one JSON object per call between <tool_call> and </tool_call>:
#
#     <tool_call>
#     {"name": "get_weather", "arguments": {"city": "Paris"}}
#     </tool_call>
#
# earlier calls are written into the history the same way, and tool results reach
# the model as user turns holding <tool_response>...</tool_response>. So any model
# can sit behind a coding harness; templates with their own tool format keep it.

GENERIC_START = "<tool_call>"
GENERIC_END = "</tool_call>"
GENERIC_PROMPT = (
    "# Tools\n\n"
    "You may call one or more functions to help with the user's request. The functions, "
    "one per line, with their parameters as JSON Schema:\n{functions}\n\n"
    "To call a function, answer with one JSON object per call, each inside "
    "<tool_call></tool_call> tags:\n"
    '<tool_call>\n{{"name": "function_name", "arguments": {{"parameter": "value"}}}}\n'
    "</tool_call>\n"
    "Each result comes back to you inside <tool_response></tool_response> tags.{must}"
)


def _parse_generic(text: str, tools: Any = None) -> list[dict]:
    """Calls in the generic format: a JSON object (or a list of them) with ``name``
    and ``arguments`` (``parameters`` and ``function`` are read too)."""
    text = text.strip()
    while text.startswith(GENERIC_START):  # the tag written again after a forced one
        text = text[len(GENERIC_START) :].strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = json.loads(text + "}")  # a forced call whose outer brace never came
    items = data if isinstance(data, list) else [data]
    calls = []
    for item in items:
        if not isinstance(item, dict):
            continue
        name = item.get("name", item.get("function"))
        if isinstance(name, dict):  # {"function": {"name": ..., "arguments": ...}}
            item, name = name, name.get("name")
        args = item.get("arguments", item.get("parameters", {}))
        calls.append({"name": name, "arguments": args})
    return calls


def generic_format(template: str = "") -> ToolFormat:
    """The generic format, for a model whose template (``template``) has no tools."""
    return ToolFormat(template, False, GENERIC_START, GENERIC_END, _parse_generic, generic=True)


def _function(tool: dict) -> dict:
    return tool.get("function", tool)


def generic_system_prompt(tools: list[dict], required: str | None = None) -> str:
    """The system prompt text that describes ``tools``; ``required``: "" to require a
    call of any of them, a name to require that one, None for the model's choice."""
    lines = []
    for tool in tools:
        f = _function(tool)
        entry = {"name": f.get("name"), "description": f.get("description", "")}
        entry["parameters"] = f.get("parameters") or {"type": "object", "properties": {}}
        lines.append(json.dumps(entry, ensure_ascii=False))
    must = ""
    if required == "":
        must = "\nIn this answer you must call at least one function."
    elif required:
        must = f"\nIn this answer you must call the function {required}."
    return GENERIC_PROMPT.format(functions="\n".join(lines), must=must)


@dataclass(frozen=True)
class ToolPlan:
    """How a request's tools reach the model and come back."""

    fmt: ToolFormat  # the format replies are parsed with (the template's, or generic)
    tools: list[dict] | None  # the tools offered (None: no tool calls this time)
    template_tools: tuple[dict, ...] = ()  # what the chat template renders itself
    system: str = ""  # the generic format's system prompt text
    prefix: str = ""  # the start of the reply, forced by tool_choice


def plan_tools(fmt: ToolFormat, tools: list[dict] | None, choice: Any, model: str) -> ToolPlan:
    """The plan for ``tools`` under ``tool_choice`` (none, auto, required, or
    {"type": "function", "function": {"name": ...}}). Raises ApiError (400) for a
    choice that names no tool, or one the model's format cannot honour."""
    from engine.server.errors import ApiError

    def refuse(message: str, param: str = "tool_choice") -> ApiError:
        return ApiError(400, message, param, "invalid_value")

    base = fmt if fmt.accepts_tools else generic_format(fmt.template)
    if choice is None:
        choice = "auto"
    if isinstance(choice, str) and choice not in ("none", "auto", "required"):
        raise refuse(f"tool_choice: must be none, auto, required or a function, not {choice!r}")
    named: str | None = None
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if choice.get("type", "function") != "function" or not isinstance(name, str):
            raise refuse('tool_choice: expected {"type": "function", "function": {"name": ...}}')
        named = name
    if not tools:
        if choice in ("required",) or named is not None:
            raise refuse("tool_choice: requires tools, and the request has none")
        return ToolPlan(base, None)
    if choice == "none":
        return ToolPlan(base, None)
    if named is not None:
        chosen = [t for t in tools if _function(t).get("name") == named]
        if not chosen:
            raise refuse(f"tool_choice.function.name: no tool named {named!r}")
        tools = chosen
    if choice == "required" and len(tools) == 1:  # the one call it can make: begin it
        named = _function(tools[0]).get("name")
    forced = choice == "required" or named is not None
    if fmt.accepts_tools:
        if forced and not fmt.parses_calls:
            raise refuse(
                f"tool_choice: {model}'s tool call format is unknown, so a call cannot be forced"
            )
        return ToolPlan(fmt, tools, tuple(tools), prefix=fmt.start if forced else "")
    generic = base
    prefix = ""
    if forced:
        prefix = f"{GENERIC_START}\n"
        if named is not None:
            prefix += '{"name": ' + json.dumps(named, ensure_ascii=False) + ', "arguments": '
    required = None if not forced else (named or "")
    return ToolPlan(generic, tools, (), generic_system_prompt(tools, required), prefix)


def with_tools(
    messages: tuple[ChatMessage, ...], plan: ToolPlan
) -> tuple[tuple[ChatMessage, ...], bool]:
    """The conversation as the model sees it under ``plan``: with the generic format's
    system prompt and tool results as user turns (a template without tools may not
    know the role), and a forced reply start. Also whether to continue the last
    (assistant) message."""
    out = list(messages)
    if not plan.fmt.accepts_tools:
        out = [
            ChatMessage("user", f"<tool_response>\n{m.content}\n</tool_response>")
            if m.role == "tool"
            else m
            for m in out
        ]
    if plan.system:
        if out and out[0].role == "system":
            first = out[0].content
            out[0] = ChatMessage("system", f"{first}\n\n{plan.system}" if first else plan.system)
        else:
            out.insert(0, ChatMessage("system", plan.system))
    if plan.prefix:
        out.append(ChatMessage("assistant", plan.prefix))
    return tuple(out), bool(plan.prefix)


# ------------------------------------------------------------------ tool schemas

_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_ONE = ("not", "contains", "propertyNames", "if", "then", "else")
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_NUMBERS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_TEXTS = ("description", "title", "pattern", "format", "$ref", "$schema", "$id")


def schema_problem(schema: Any, path: str) -> str | None:
    """What is wrong with a JSON Schema, as "PATH: problem", or None. Checks the
    structure a tool's parameters need (types, nesting, required lists), not every
    keyword of every draft."""
    if isinstance(schema, bool):
        return None
    if not isinstance(schema, dict):
        return f"{path}: a schema must be a JSON object"
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not kinds or not all(isinstance(k, str) and k in _TYPES for k in kinds):
            return f"{path}.type: {kind!r} is not a JSON Schema type ({', '.join(sorted(_TYPES))})"
    for key in _SCHEMA_MAPS:
        if key in schema:
            value = schema[key]
            if not isinstance(value, dict):
                return f"{path}.{key}: must be an object of schemas"
            for name, sub in value.items():
                problem = schema_problem(sub, f"{path}.{key}.{name}")
                if problem:
                    return problem
    for key in _SCHEMA_LISTS:
        if key in schema:
            value = schema[key]
            if not isinstance(value, list) or not value:
                return f"{path}.{key}: must be a non-empty list of schemas"
            for i, sub in enumerate(value):
                problem = schema_problem(sub, f"{path}.{key}.{i}")
                if problem:
                    return problem
    for key in (*_SCHEMA_ONE, "additionalProperties", "additionalItems", "items"):
        if key in schema:
            value = schema[key]
            if key == "items" and isinstance(value, list):  # draft 4-7 tuple form
                subs = [(f"{path}.items.{i}", v) for i, v in enumerate(value)]
            else:
                subs = [(f"{path}.{key}", value)]
            for where, sub in subs:
                problem = schema_problem(sub, where)
                if problem:
                    return problem
    if "required" in schema:
        req = schema["required"]
        if not isinstance(req, list) or not all(isinstance(r, str) for r in req):
            return f"{path}.required: must be a list of property names"
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        return f"{path}.enum: must be a non-empty list"
    for key in _COUNTS:
        value = schema.get(key)
        if key in schema and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            return f"{path}.{key}: must be a whole number of at least 0"
    for key in _NUMBERS:
        value = schema.get(key)
        if key in schema and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"{path}.{key}: must be a number"
    for key in _TEXTS:
        if key in schema and not isinstance(schema[key], str):
            return f"{path}.{key}: must be a string"
    return None


def tools_problem(tools: list[dict]) -> tuple[str, str] | None:
    """(message, param) for the first bad tool definition, or None."""
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        f = _function(tool)
        where = f"tools.{i}.function"
        name = f.get("name")
        if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
            return f"{where}.name: {name!r} is not a function name", f"{where}.name"
        if name in seen:
            return f"{where}.name: {name!r} is defined twice", f"{where}.name"
        seen.add(name)
        params = f.get("parameters")
        if params is None:
            continue
        kind = params.get("type") if isinstance(params, dict) else None
        if kind is not None and kind != "object":
            return f"{where}.parameters.type: must be 'object', not {kind!r}", f"{where}.parameters"
        problem = schema_problem(params, f"{where}.parameters")
        if problem:
            return problem, problem.split(":", 1)[0]
    return None
