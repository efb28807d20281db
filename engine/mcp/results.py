"""What a tool call gives back, as text a model can read, and the checks before a call.

Works on MCP's wire format (the JSON a server sends: ``isError``, ``mimeType``...),
so it does not depend on which major version of the SDK parsed it. Pure functions;
any thread.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

# A tool result longer than this many characters is cut there, with a note: a model
# cannot use a megabyte of text, and the app should not hold one per message.
MAX_RESULT_CHARS = 64 * 1024


def block_text(block: Any) -> str:
    """One content block as text: text as is, anything else described by kind and size."""
    if not isinstance(block, dict):
        return f"[{type(block).__name__}]"
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind in ("image", "audio"):
        mime = block.get("mimeType") or kind
        return f"[{mime}, {base64_size(block.get('data', ''))} bytes]"
    if kind == "resource_link":
        name = block.get("name") or ""
        return f"[resource link: {block.get('uri', '')}{f' ({name})' if name else ''}]"
    if kind == "resource":
        resource = block.get("resource") or {}
        if isinstance(resource.get("text"), str):
            return resource["text"]
        mime = resource.get("mimeType") or "resource"
        size = base64_size(resource.get("blob", ""))
        return f"[{mime}, {size} bytes: {resource.get('uri', '')}]"
    return f"[{kind or 'unknown'} content]"


def base64_size(data: Any) -> int:
    """Bytes that base64 text decodes to (counted, not decoded: it may be large)."""
    if not isinstance(data, str):
        return 0
    data = "".join(data.split())
    return max(0, len(data) * 3 // 4 - (len(data) - len(data.rstrip("="))))


def result_text(result: dict[str, Any]) -> str:
    """A CallToolResult's content as one text. Structured content is used only when
    there is no content (servers that send both put the same thing in each)."""
    blocks = result.get("content") or []
    if blocks:
        return "\n".join(block_text(b) for b in blocks)
    structured = result.get("structuredContent")
    if structured is not None:
        return json.dumps(structured, ensure_ascii=False)
    return ""


def truncate(text: str, limit: int = MAX_RESULT_CHARS) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters plus a note saying so, and whether it was cut."""
    if len(text) <= limit:
        return text, False
    note = f"\n\n[truncated: the first {limit:,} of {len(text):,} characters are shown]"
    return text[:limit] + note, True


def parse_arguments(arguments: Any) -> tuple[dict[str, Any] | None, str]:
    """A call's arguments as a dict (a JSON text is read; None is no arguments), or
    None and why not."""
    if arguments is None:
        return {}, ""
    if isinstance(arguments, str):
        if not arguments.strip():
            return {}, ""
        try:
            arguments = json.loads(arguments)
        except ValueError as e:
            return None, f"the arguments are not valid JSON ({e})"
    if not isinstance(arguments, dict):
        return None, f"the arguments must be a JSON object, not {type(arguments).__name__}"
    return arguments, ""


def schema_mismatch(arguments: dict[str, Any], schema: Any) -> str:
    """Why ``arguments`` do not fit the tool's input schema ("" when they do, or when
    the schema itself cannot be checked: then the server judges)."""
    try:
        import jsonschema
        from jsonschema.exceptions import SchemaError, best_match
    except ImportError:  # a dependency of the mcp SDK; without it the server checks
        return ""
    if not isinstance(schema, dict):
        return ""
    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        error = best_match(cls(schema).iter_errors(arguments))
    except (SchemaError, RecursionError, ValueError, TypeError):
        return ""
    if error is None:
        return ""
    where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{error.message}" + (f" (at arguments{where})" if where else "")


_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")


def function_names(pairs: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """The function name a model sees for each (server, tool), as name -> (server, tool).

    A tool keeps its own name when no other ready server has a tool of that name;
    names shared by several servers become ``SERVER__TOOL``. Characters outside
    ``A-Z a-z 0-9 _ -`` (what OpenAI-style function names allow) become ``_``, and a
    name still taken gets ``_2``, ``_3``... so every name is unique.
    """
    counts = Counter(tool for _, tool in pairs)
    names: dict[str, tuple[str, str]] = {}
    for server, tool in pairs:
        base = tool if counts[tool] == 1 else f"{server}__{tool}"
        base = _NOT_NAME.sub("_", base) or "tool"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names[name] = (server, tool)
    return names
