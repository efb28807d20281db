"""From API request fields to engine settings and messages.

Every value goes through the engine's own validation (SamplingSettings.validated):
anything it refuses becomes a 400 naming the parameter, never a failed generation.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from engine.events import ChatMessage
from engine.server.errors import ApiError
from engine.server.schemas import OllamaMessage, OpenAIMessage
from engine.server.tools import ToolFormat, call_text, tools_problem
from engine.settings import SamplingSettings, SettingsError

# Marker tokens the engine routes to the thinking channel but leaves out of the text.
THINK_MARKERS = frozenset(
    {
        "<think>",
        "</think>",
        "<longcat_think>",
        "</longcat_think>",
        "<|think:start|>",
        "<|think:end|>",
    }
)
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}-{int(time.time() * 1000):x}{next(_ids):04d}"


def bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param, "invalid_value" if param else None)


def from_settings_error(e: SettingsError) -> ApiError:
    text = str(e)
    param = text.split(":", 1)[0] if ":" in text else None
    return bad(text, param)


def stop_strings(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else list(stop)
    return tuple(s for s in items if s)  # "" would stop at once; clients mean "none"


def sampling(**values: Any) -> SamplingSettings:
    try:
        return SamplingSettings(**values).validated()
    except SettingsError as e:
        raise from_settings_error(e) from None
    except TypeError as e:
        raise bad(str(e)) from None


# ------------------------------------------------------------------ thinking


def thinking_from_effort(effort: str | None, template_kwargs: dict | None) -> str:
    """OpenAI ``reasoning_effort`` (or ``chat_template_kwargs.enable_thinking``) to an
    engine thinking mode. Unset means the template's default: thinking where offered."""
    kwargs = template_kwargs or {}
    if effort is None and isinstance(kwargs.get("enable_thinking"), bool):
        return "on" if kwargs["enable_thinking"] else "off"
    return {
        None: "on",
        "none": "off",
        "minimal": "off",
        "low": "on",
        "medium": "on",
        "high": "max",
        "xhigh": "max",
    }[effort]


def thinking_from_ollama(think: bool | str | None) -> str:
    if think is None or think is True:
        return "on"
    if think is False:
        return "off"
    return "max" if think == "high" else "on"


# ------------------------------------------------------------------ messages


def _text(content: str | list | None, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.type not in ("text", "input_text") or part.text is None:
            raise bad(f"{where}: only text content is supported, not {part.type!r}", where)
        parts.append(part.text)
    return "".join(parts)


def openai_messages(messages: list[OpenAIMessage], fmt: ToolFormat) -> tuple[ChatMessage, ...]:
    out = []
    for i, m in enumerate(messages):
        role = {"developer": "system", "function": "tool"}.get(m.role, m.role)
        content = _text(m.content, f"messages.{i}.content")
        if m.tool_calls:
            calls = [call_text(fmt, c.function.name, c.function.arguments) for c in m.tool_calls]
            content = "\n".join(([content] if content else []) + calls)
        reasoning = (m.reasoning_content or m.reasoning or "") if role == "assistant" else ""
        out.append(ChatMessage(role, content, reasoning))
    return tuple(out)


def ollama_messages(messages: list[OllamaMessage], fmt: ToolFormat) -> tuple[ChatMessage, ...]:
    out = []
    for i, m in enumerate(messages):
        if m.images:
            raise bad(f"messages.{i}.images: this server runs text models only", "images")
        content = m.content or ""
        if m.tool_calls:
            calls = [call_text(fmt, c.function.name, c.function.arguments) for c in m.tool_calls]
            content = "\n".join(([content] if content else []) + calls)
        reasoning = (m.thinking or "") if m.role == "assistant" else ""
        out.append(ChatMessage(m.role, content, reasoning))
    return tuple(out)


# ------------------------------------------------------------------ Ollama options


def ollama_sampling(
    options: dict[str, Any] | None, max_tokens: Callable[[int | None], int], top_alternatives: int
) -> SamplingSettings:
    """Ollama ``options`` to settings, with Ollama's defaults (temperature 0.8, top_k
    40, top_p 0.9). Options that make no sense here (num_ctx, num_gpu...) are ignored."""
    o = dict(options or {})
    num_predict = o.get("num_predict")
    if num_predict is None or (isinstance(num_predict, int) and num_predict < 0):
        num_predict = None  # -1 (unbounded) and -2 (fill context): the server's default
    if num_predict is None or (isinstance(num_predict, int) and not isinstance(num_predict, bool)):
        num_predict = max_tokens(num_predict)
    seed = o.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and seed < 0:
        seed = None  # Ollama's -1: a random seed
    stop = o.get("stop")
    if stop is not None and not isinstance(stop, (str, list)):
        raise bad("options.stop: must be a string or a list of strings", "stop")
    if isinstance(stop, list) and not all(isinstance(s, str) for s in stop):
        raise bad("options.stop: must be a string or a list of strings", "stop")
    last_n = o.get("repeat_last_n", 64)
    if isinstance(last_n, int) and not isinstance(last_n, bool) and last_n <= 0:
        last_n = 64  # 0 (off) and -1 (whole context): the penalty is 1.0 unless asked
    return sampling(
        temperature=o.get("temperature", 0.8),
        top_p=o.get("top_p", 0.9),
        top_k=o.get("top_k", 40),
        min_p=o.get("min_p", 0.0),
        repetition_penalty=o.get("repeat_penalty", 1.0),
        repetition_context=last_n,
        seed=seed,
        max_tokens=num_predict,
        stop=stop_strings(stop),
        top_alternatives=top_alternatives,
    )


# ------------------------------------------------------------------ tools


def checked_tools(tools: list | None) -> list[dict] | None:
    """Tool definitions as dicts; a bad schema is a 400 naming its path."""
    if not tools:
        return None
    out = [t.model_dump(exclude_none=True) for t in tools]
    problem = tools_problem(out)
    if problem is not None:
        raise bad(*problem)
    return out
