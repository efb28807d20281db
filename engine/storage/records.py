"""What crosses the storage boundary: frozen dataclasses of plain values, and errors."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.events import GenerationStats
from engine.settings import DecoderSettings, SamplingSettings

ROLES = ("system", "user", "assistant", "tool")


class StorageError(EngineError):
    """The conversations database cannot do what was asked; the message says why."""


class NotFound(StorageError, LookupError):
    """A conversation or message id that does not exist (any more)."""


class DatabaseDamaged(StorageError):
    """SQLite found damage while the app was running. On the next start the file is
    moved aside and a fresh database is created (see ``RecoveryNotice``)."""


@dataclass(frozen=True)
class RecoveryNotice:
    """The database file could not be read at start-up and was moved aside."""

    moved_to: Path  # the damaged file, kept for the user (or support) to inspect
    reason: str  # SQLite's own words

    @property
    def message(self) -> str:
        """One line to show the user."""
        return (
            f"The conversations database was damaged ({self.reason}). It was moved to "
            f"{self.moved_to} and a new, empty one was started."
        )


@dataclass(frozen=True)
class StoredMessage:
    """One node of a conversation's message tree. Tokens are loaded separately
    (``ConversationStore.tokens``) because they are large and only the inspector needs them."""

    id: int
    conversation_id: int
    parent_id: int | None  # None: a root (the first message, or an edit of it)
    role: str  # system | user | assistant | tool
    content: str = ""
    reasoning: str = ""  # thinking text, kept apart from the answer
    model: str = ""
    decoder: dict[str, Any] = field(default_factory=dict)  # DecoderSettings as a dict
    settings: dict[str, Any] = field(default_factory=dict)  # SamplingSettings.to_dict() + extras
    # stop | length | loop | cancelled (engine), error (failed), edited (text typed by
    # the user); None on an assistant message: still streaming, or interrupted by a crash.
    finish_reason: str | None = None
    error: str = ""
    stats: dict[str, Any] = field(default_factory=dict)  # asdict(GenerationStats)
    prompt_token_ids: tuple[int, ...] = ()  # the exact prompt, for replay
    created: float = 0.0  # seconds since the epoch
    token_count: int = 0

    @property
    def interrupted(self) -> bool:
        """An assistant reply with no finish reason. After a restart this means the app
        was killed mid-generation; during a session it may also be the reply streaming now."""
        return self.role == "assistant" and self.finish_reason is None

    def sampling_settings(self) -> SamplingSettings | None:
        """The sampling settings used, or None when none (or unreadable ones) were stored."""
        known = {f.name for f in fields(SamplingSettings)}
        data = {k: v for k, v in self.settings.items() if k in known}
        if not data:
            return None
        try:
            return SamplingSettings.from_dict(data)
        except (ValueError, TypeError):
            return None  # settings from an older version that no longer validate

    def decoder_settings(self) -> DecoderSettings | None:
        known = {f.name for f in fields(DecoderSettings)}
        data = {k: v for k, v in self.decoder.items() if k in known}
        if not data:
            return None
        try:
            return DecoderSettings(**data).validated()
        except (ValueError, TypeError):
            return None

    def generation_stats(self) -> GenerationStats | None:
        if not self.stats:
            return None
        known = {f.name for f in fields(GenerationStats)}
        data = {k: v for k, v in self.stats.items() if k in known}
        # JSON has no tuples: sequences come back as lists.
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return GenerationStats(**data)


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created: float
    updated: float
    active_leaf_id: int | None  # the leaf shown in the default pane ("")
    leaves: dict[str, int] = field(default_factory=dict)  # pane -> its active leaf
    settings: dict[str, Any] = field(default_factory=dict)  # the app's key/value blobs


@dataclass(frozen=True)
class ConversationSummary:
    """A row of the conversation list."""

    id: int
    title: str
    created: float
    updated: float
    message_count: int
    snippet: str = ""  # when searching: message text around the first match
