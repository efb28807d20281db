"""Commands into the engine thread and events out of it.

All are frozen dataclasses of plain Python values (never mx.array), so any thread
(the Qt GUI thread, an HTTP handler, the CLI) can hold them. Every event carries the
``request_id`` of the command that caused it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.settings import DecoderSettings, ModelSettings, SamplingSettings

# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class ChatMessage:
    role: str  # system | user | assistant | tool
    content: str
    reasoning: str = ""  # an assistant's thinking text, kept apart from its answer


@dataclass(frozen=True)
class Generate:
    """Generate a reply. Exactly one of ``messages``, ``prompt`` or ``prompt_tokens``.

    - ``messages``: chat, rendered with the model's chat template. With
      ``continue_final`` the last (assistant) message is a prefix to continue from
      (edit-and-continue, replay).
    - ``prompt``: raw text, no template.
    - ``prompt_tokens``: exact token ids (replay from a chosen alternative).

    ``interleave``: requests with the same non-empty group run together, alternating
    rounds (one plain token or one verification pass each), so they stream at once;
    each one's figures count only its own rounds. Without it requests run one after
    the other, each with the whole machine.
    """

    request_id: str
    model: str
    messages: tuple[ChatMessage, ...] = ()
    prompt: str | None = None
    prompt_tokens: tuple[int, ...] | None = None
    continue_final: bool = False
    thinking: str = "off"  # off | on | max
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    decoder: DecoderSettings = field(default_factory=DecoderSettings)
    load: ModelSettings = field(default_factory=ModelSettings)
    tools: tuple[dict, ...] = ()  # JSON-schema tool definitions for the chat template
    context_limit: int | None = None  # a user's cap on the context window (tokens)
    interleave: str = ""  # a group of requests that alternate rounds (compare mode)


@dataclass(frozen=True)
class LoadModel:
    request_id: str
    model: str
    decoder: DecoderSettings = field(default_factory=DecoderSettings)
    load: ModelSettings = field(default_factory=ModelSettings)


@dataclass(frozen=True)
class UnloadModel:
    request_id: str
    model: str  # "*" unloads everything


@dataclass(frozen=True)
class Cancel:
    request_id: str


Command = Generate | LoadModel | UnloadModel | Cancel

# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    request_id: str

    @property
    def type(self) -> str:
        return _EVENT_TYPES[type(self)]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["type"] = self.type
        return d


@dataclass(frozen=True)
class LoadProgress(Event):
    model: str
    stage: str  # "resolving" | "reading weights" | "converting" | "decoder" | "ready"
    fraction: float  # 0..1


@dataclass(frozen=True)
class ModelLoaded(Event):
    model: str
    path: str
    model_type: str
    dtype: str
    parameters: int
    memory_gb: float
    decoder: str | None  # the drafter attached, if any
    decoder_note: str | None  # why no decoder was attached, when one was asked for
    context_length: int | None = None  # the model's context window (tokens), when known
    think_tags: tuple[str, str] | None = None  # its markers around thinking, if it thinks


@dataclass(frozen=True)
class PromptProgress(Event):
    processed: int
    total: int
    cached: int  # prompt tokens reused from a cache, not computed


@dataclass(frozen=True)
class Alternative:
    id: int
    text: str
    prob: float


@dataclass(frozen=True)
class TokenEvent(Event):
    """One generated token, with what the model weighed at that step."""

    index: int  # position in the generation, from 0
    id: int
    text: str  # the text this token adds (may be "" for a partial UTF-8 sequence)
    logprob: float
    top: tuple[Alternative, ...]
    entropy: float  # nats, of the processed distribution the token was drawn from
    channel: str = "answer"  # "answer" | "thinking"
    drafted: bool = False  # proposed by a drafter
    accepted: bool = False  # a drafted token the target accepted

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["top"] = [[a.id, a.text, a.prob] for a in self.top]
        return d


@dataclass(frozen=True)
class TokenRecord:
    """One generated token as it is kept: a ``TokenEvent`` without its request, with
    its position in the message. The one token shape of storage, the pane's transcript
    and the token inspector."""

    index: int  # position in the message, from 0
    id: int
    text: str
    logprob: float
    entropy: float
    channel: str = "answer"  # "answer" | "thinking"
    drafted: bool = False
    accepted: bool = False
    top: tuple[Alternative, ...] = ()

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    @classmethod
    def from_event(cls, ev: TokenEvent, index: int | None = None) -> TokenRecord:
        """``index``: the token's place in its message, when that differs from its place
        in the generation (a replay or a continuation counts on from earlier tokens)."""
        return cls(
            ev.index if index is None else index,
            ev.id,
            ev.text,
            ev.logprob,
            ev.entropy,
            ev.channel,
            ev.drafted,
            ev.accepted,
            ev.top,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenRecord:
        """From ``dataclasses.asdict`` output or JSON (alternatives as dicts or lists)."""
        top = tuple(
            Alternative(**a) if isinstance(a, dict) else Alternative(*a)
            for a in data.get("top", ())
        )
        return cls(**{**data, "top": top})


@dataclass(frozen=True)
class GenerationStats:
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    generation_tokens: int = 0
    ttft_s: float = 0.0
    prompt_tps: float = 0.0
    generation_tps: float = 0.0
    elapsed_s: float = 0.0
    peak_memory_gb: float = 0.0
    memory_gb: float = 0.0
    device: str = ""
    blas: str = ""
    dtype: str = ""
    decoder: str | None = None
    draft_tokens: int = 0  # current k (adaptive may change it)
    draft_rounds: int = 0  # verify rounds that carried drafts
    verify_rounds: int = 0  # all target forwards after the prompt
    drafted: int = 0
    accepted: int = 0
    acceptance_rate: float = 0.0  # accepted / drafted
    mean_accepted_length: float = 0.0  # (generation_tokens - 1) / verify_rounds
    per_position_acceptance: tuple[float, ...] = ()
    decoder_memory_gb: float = 0.0
    finish_reason: str | None = None
    # A model spread across machines (engine.distributed); rank 0 (this machine) first.
    ranks: int = 1
    parallel: str = ""  # "tensor" | "pipeline" when ranks > 1
    rank_memory_gb: tuple[float, ...] = ()  # MLX active memory per rank
    rank_comm_share: tuple[float, ...] = ()  # share of a step spent in collectives, per rank
    comm_share: float = 0.0  # mean of rank_comm_share


@dataclass(frozen=True)
class StatsEvent(Event):
    stats: GenerationStats


@dataclass(frozen=True)
class Finished(Event):
    """The end of a generation. ``reason``: stop | length | loop | cancelled."""

    reason: str
    text: str
    reasoning: str
    stats: GenerationStats
    prompt_token_ids: tuple[int, ...] = ()
    token_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Failed(Event):
    message: str


@dataclass(frozen=True)
class Unloaded(Event):
    models: tuple[str, ...]


_EVENT_TYPES = {
    LoadProgress: "load_progress",
    ModelLoaded: "model_loaded",
    PromptProgress: "prompt_progress",
    TokenEvent: "token",
    StatsEvent: "stats",
    Finished: "finished",
    Failed: "failed",
    Unloaded: "unloaded",
}

TERMINAL_EVENTS = (Finished, Failed)
