"""Turn a conversation into prompt tokens with the model's chat template.

Thinking modes: "off", "on", and "max" where the template has effort levels. They
map to the template arguments models use in the wild (`enable_thinking`,
`reasoning_effort`); a template that knows neither ignores them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.settings import THINKING_MODES
from engine.text_check import invalid_text_message, is_valid_text

# The markers most thinking models use (mlx-lm's default): what the app assumes for a
# model whose own markers it has not heard yet (ModelLoaded.think_tags).
DEFAULT_THINK_TAGS = ("<think>", "</think>")


@dataclass(frozen=True)
class Prompt:
    token_ids: tuple[int, ...]
    text: str
    starts_in_thinking: bool  # the template opened a think block the model must close


def template_thinking_modes(template: str) -> tuple[str, ...]:
    """Thinking modes a chat template understands (its tokenizer must also have
    think tokens; ChatFormat checks that once the model is loaded)."""
    if "reasoning_effort" in template:
        return THINKING_MODES
    if "enable_thinking" in template or "<think>" in template:
        return ("off", "on")
    return ("off",)


def folder_thinking_modes(path: Path) -> tuple[str, ...]:
    """``template_thinking_modes`` of a model folder's template, without loading it
    (chat_template.jinja and tokenizer_config.json; any thread)."""
    template = ""
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        f = Path(path) / name
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        if name.endswith(".json"):
            try:
                value = json.loads(text).get("chat_template", "")
            except (ValueError, AttributeError):
                value = ""
            text = value if isinstance(value, str) else json.dumps(value)
        template += text
    return template_thinking_modes(template)


class ChatFormat:
    """A model's chat template and thinking capabilities. Engine thread only."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        template = getattr(tokenizer, "chat_template", None) or ""
        if not isinstance(template, str):
            template = str(template)
        self.has_template = bool(getattr(tokenizer, "has_chat_template", bool(template)))
        # The engine checks the context window itself (engine.context_window); the
        # tokenizer's warning about model_max_length would be a second, stray line.
        warned = getattr(tokenizer, "deprecation_warnings", None)
        if isinstance(warned, dict):
            warned["sequence-length-is-longer-than-the-specified-maximum"] = True
        self.think_start: str | None = getattr(tokenizer, "think_start", None)
        self.think_end: str | None = getattr(tokenizer, "think_end", None)
        self.thinking_levels = "reasoning_effort" in template
        self.supports_thinking = (
            bool(self.think_start) and len(template_thinking_modes(template)) > 1
        )

    @property
    def think_tags(self) -> tuple[str, str] | None:
        """The tokenizer's own markers around thinking text, when it has both."""
        if self.think_start and self.think_end:
            return (self.think_start, self.think_end)
        return None

    def thinking_modes(self) -> tuple[str, ...]:
        if not self.supports_thinking:
            return ("off",)
        return THINKING_MODES if self.thinking_levels else ("off", "on")

    def _template_args(self, thinking: str) -> dict[str, Any]:
        if thinking not in THINKING_MODES:
            raise EngineError(
                f"thinking must be one of {', '.join(THINKING_MODES)}, not {thinking!r}"
            )
        if not self.supports_thinking:
            return {}
        args: dict[str, Any] = {"enable_thinking": thinking != "off"}
        if self.thinking_levels:
            args["reasoning_effort"] = {"off": "low", "on": "medium", "max": "high"}[thinking]
        return args

    def render(
        self,
        messages: Sequence[Any],
        thinking: str = "off",
        continue_final: bool = False,
        tools: Sequence[dict] = (),
    ) -> Prompt:
        """Render chat messages (objects with role, content, reasoning) to tokens."""
        if not messages:
            raise EngineError("the conversation is empty")
        if not self.has_template:
            raise EngineError("this model has no chat template; use a raw prompt instead")
        if continue_final and messages[-1].role != "assistant":
            raise EngineError("continue needs the last message to be the assistant's")
        rendered = []
        for m in messages:
            if m.role not in ("system", "user", "assistant", "tool"):
                raise EngineError(f"unknown message role {m.role!r}")
            entry: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.role == "assistant" and m.reasoning:
                entry["reasoning_content"] = m.reasoning
            rendered.append(entry)
        kwargs = self._template_args(thinking)
        if tools:
            kwargs["tools"] = list(tools)
        try:
            if continue_final:
                last = messages[-1]
                prefix_text = self._continue_prefix(last)
                rendered[-1] = {"role": "assistant", "content": prefix_text}
                text = self.tokenizer.apply_chat_template(
                    rendered, tokenize=False, continue_final_message=True, **kwargs
                )
            else:
                text = self.tokenizer.apply_chat_template(
                    rendered, tokenize=False, add_generation_prompt=True, **kwargs
                )
        except EngineError:
            raise
        except Exception as e:
            raise EngineError(f"the chat template failed to render: {e}") from None
        return self._prompt(text)

    def _continue_prefix(self, message: Any) -> str:
        """An assistant message to continue: reasoning (open or closed) then answer."""
        if message.reasoning and self.think_start and self.think_end:
            if message.content:
                return (
                    f"{self.think_start}\n{message.reasoning}{self.think_end}\n\n{message.content}"
                )
            return f"{self.think_start}\n{message.reasoning}"
        return message.content

    def raw(self, text: str) -> Prompt:
        if not text:
            raise EngineError("the prompt is empty")
        return self._prompt(text, add_special=True)

    def _prompt(self, text: str, add_special: bool = False) -> Prompt:
        if not is_valid_text(text):
            raise EngineError(invalid_text_message("the prompt"))
        ids = self.tokenizer.encode(text, add_special_tokens=add_special)
        if not ids:
            raise EngineError("the prompt is empty after tokenization")
        return Prompt(tuple(int(i) for i in ids), text, self.starts_in_thinking(text))

    def starts_in_thinking(self, text: str) -> bool:
        if not self.think_start or not self.think_end:
            return False
        return text.rfind(self.think_start) > text.rfind(self.think_end)
