"""A pane's transcript as plain Python data: messages with per-token records.

No Qt here, so the storage layer can save and load it later and tests need no widgets.
Everything in this module is touched only from the GUI thread.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from engine.chat import DEFAULT_THINK_TAGS
from engine.events import ChatMessage, Finished, GenerationStats, TokenEvent, TokenRecord

if TYPE_CHECKING:
    from engine.storage import StoredMessage

FINISH_REASONS = ("stop", "length", "loop", "cancelled", "error")
# Not from the engine: "edited" (text the user typed), "interrupted" (the app stopped
# mid-reply, found on reload).
STORED_REASONS = (*FINISH_REASONS, "edited", "interrupted")


def strip_think_tags(text: str, tags: tuple[str, str] = DEFAULT_THINK_TAGS) -> str:
    """Thinking text without think tags (a replay's kept tokens or a reply saved
    mid-stream can carry the closing tag's text)."""
    for tag in tags:
        text = text.replace(tag, "")
    return text


@dataclass
class Message:
    """One turn. Assistant turns carry their tokens, finish reason, stats and settings."""

    role: str  # system | user | assistant
    content: str = ""
    reasoning: str = ""
    tokens: list[TokenRecord] = field(default_factory=list)
    model: str = ""
    finish_reason: str | None = None  # None while streaming
    error: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    id: int | None = None  # the conversation store's id, once saved
    branch: tuple[int, int] = (0, 1)  # (index, count) among this pane's versions of it
    # Text already there when the current generation started (a replay's kept tokens, a
    # continued reply); the engine's final text covers only what it generated.
    stream_prefix: tuple[str, str] = ("", "")

    @property
    def streaming(self) -> bool:
        return self.role == "assistant" and self.finish_reason is None

    @classmethod
    def from_stored(
        cls, stored: StoredMessage, tokens=(), branch: tuple[int, int] = (0, 1)
    ) -> Message:
        """A stored message as the pane shows it; no finish reason means the app stopped
        while it streamed, so it shows as "interrupted"."""
        reason = stored.finish_reason
        if stored.role == "assistant" and reason is None:
            reason = "interrupted"
        settings = dict(stored.settings)
        if settings.get("tool_calls"):  # a call cut off by a quit can be answered again
            settings["tool_calls"] = [
                {**c, "state": "pending" if c.get("state") == "running" else c.get("state")}
                for c in settings["tool_calls"]
            ]
        return cls(
            role=stored.role,
            content=stored.content,
            reasoning=strip_think_tags(stored.reasoning),
            tokens=list(tokens),
            model=stored.model,
            finish_reason=reason,
            error=stored.error,
            stats=dict(stored.stats),
            settings=settings,
            created=stored.created,
            id=stored.id,
            branch=branch,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        data = dict(data)
        for name in ("branch", "stream_prefix"):
            if name in data:
                data[name] = tuple(data[name])
        data["tokens"] = [TokenRecord.from_dict(t) for t in data.get("tokens", [])]
        return cls(**data)


@dataclass
class PaneTranscript:
    """The conversation shown in one pane."""

    messages: list[Message] = field(default_factory=list)
    version: int = 0  # bumped on every change so views can skip redundant repaints
    # The model's own thinking markers, from its ModelLoaded (the common ones until then).
    think_tags: tuple[str, str] = DEFAULT_THINK_TAGS

    def _touch(self) -> None:
        self.version += 1

    @property
    def last(self) -> Message | None:
        return self.messages[-1] if self.messages else None

    @property
    def busy(self) -> bool:
        return bool(self.messages) and self.messages[-1].streaming

    def add_user(self, text: str) -> Message:
        msg = Message("user", text)
        self.messages.append(msg)
        self._touch()
        return msg

    def start_assistant(self, model: str, settings: dict[str, Any]) -> Message:
        msg = Message("assistant", model=model, settings=settings)
        self.messages.append(msg)
        self._touch()
        return msg

    def append_tokens(self, tokens: list[TokenEvent]) -> None:
        """Add streamed tokens to the reply in progress, split into answer and thinking."""
        msg = self.last
        if msg is None or not msg.streaming:
            return
        answer: list[str] = []
        thinking: list[str] = []
        for ev in tokens:
            # A replayed or continued reply already holds tokens: the engine counts from 0.
            msg.tokens.append(TokenRecord.from_event(ev, index=len(msg.tokens)))
            if ev.text.strip() in self.think_tags:  # markup: kept as a record, not as text
                continue  # the engine keeps think tags out of the text too
            (thinking if ev.channel == "thinking" else answer).append(ev.text)
        msg.content += "".join(answer)
        msg.reasoning += "".join(thinking)
        self._touch()

    def update_stats(self, stats: GenerationStats) -> None:
        msg = self.last
        if msg is not None and msg.role == "assistant":
            msg.stats = asdict(stats)
            self._touch()

    def finish(self, ev: Finished) -> None:
        """Close the reply; the engine's final text wins over what was streamed."""
        msg = self.last
        if msg is None or not msg.streaming:
            return
        answer, thinking = msg.stream_prefix
        if ev.text or not msg.content:
            msg.content = answer + ev.text
        if ev.reasoning or not msg.reasoning:
            msg.reasoning = thinking + ev.reasoning
        msg.finish_reason = ev.reason if ev.reason in FINISH_REASONS else "stop"
        msg.stats = asdict(ev.stats)
        msg.stream_prefix = ("", "")
        self._touch()

    def fail(self, message: str) -> None:
        msg = self.last
        if msg is None or not msg.streaming:
            msg = Message("assistant")
            self.messages.append(msg)
        msg.finish_reason = "error"
        msg.error = message
        self._touch()

    def clear(self) -> None:
        self.messages.clear()
        self._touch()

    def replace_from(self, index: int, messages: list[Message]) -> None:
        """Show ``messages`` from ``index`` on (another branch, an edit, a replay)."""
        self.messages[index:] = messages
        self._touch()

    def index_of(self, message: Message) -> int:
        """The position of this very message object (not an equal one)."""
        return next(i for i, m in enumerate(self.messages) if m is message)

    def changed(self) -> None:
        """A message was changed in place (e.g. a continued reply is streaming again)."""
        self._touch()

    def chat_messages(
        self, system_prompt: str = "", until: Message | None = None
    ) -> tuple[ChatMessage, ...]:
        """The conversation to send: failed replies are left out, the system prompt leads.
        With ``until``, only the messages before that one."""
        out: list[ChatMessage] = []
        if system_prompt.strip():
            out.append(ChatMessage("system", system_prompt.strip()))
        for m in self.messages:
            if m is until:
                break
            if m.role == "assistant" and (m.finish_reason == "error" or m.streaming):
                continue
            calls = m.settings.get("tool_calls") or () if m.role == "assistant" else ()
            if m.role == "assistant" and not m.content and not m.reasoning and not calls:
                continue
            # A reply's tool calls go back as the model wrote them; results follow it.
            content = "\n".join([m.content] * bool(m.content) + [c["text"] for c in calls])
            out.append(ChatMessage(m.role, content, m.reasoning))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {"messages": [m.to_dict() for m in self.messages]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaneTranscript:
        return cls([Message.from_dict(m) for m in data.get("messages", [])])
