"""Generation settings: one validated model shared by CLI, app, server and storage."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

THINKING_MODES = ("off", "on", "max")
DEFAULT_MAX_LOOP_COUNT = 6
MAX_DRAFT_TOKENS = 16


class SettingsError(ValueError):
    """A setting has a value that makes no sense; the message says which and why."""


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    repetition_context: int = 64
    seed: int | None = None
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    max_loop_count: int = DEFAULT_MAX_LOOP_COUNT  # 0 = off
    top_alternatives: int = 10

    def validated(self) -> SamplingSettings:
        """Return self, or raise SettingsError naming the bad setting."""
        _check_number("temperature", self.temperature, 0.0, 10.0)
        _check_number("top_p", self.top_p, 0.0, 1.0, low_open=True)
        _check_int("top_k", self.top_k, 0, 1_000_000)
        _check_number("min_p", self.min_p, 0.0, 1.0)
        _check_number("repetition_penalty", self.repetition_penalty, 0.0, 10.0, low_open=True)
        _check_int("repetition_context", self.repetition_context, 1, 1_000_000)
        if self.seed is not None:
            _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("max_tokens", self.max_tokens, 1, 1_000_000)
        _check_int("max_loop_count", self.max_loop_count, 0, 1000)
        _check_int("top_alternatives", self.top_alternatives, 0, 100)
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) and s for s in self.stop):
            raise SettingsError("stop: must be a list of non-empty strings")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingSettings:
        """Build from a plain dict (JSON, database); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        data = dict(data)
        if "stop" in data:
            stop = data["stop"]
            if isinstance(stop, str):
                stop = [stop]
            if stop is None:
                stop = []
            if not isinstance(stop, (list, tuple)):
                raise SettingsError("stop: must be a string or a list of strings")
            data["stop"] = tuple(stop)
        return cls(**data).validated()

    def but(self, **changes: Any) -> SamplingSettings:
        return replace(self, **changes).validated()


@dataclass(frozen=True)
class DecoderSettings:
    """Which drafter to use. ``decoder``: none | auto | lookup | a decoder id or path.

    ``draft_tokens`` is k; with ``adaptive`` it is the most k may grow to (None: the
    default maximum) and k follows recent acceptance; without, k is fixed.
    ``sampled_drafts``: when the request samples (temperature > 0), drafters that can
    (MTP heads, draft models) draw their proposals from their own distribution and
    the target accepts each with min(1, p/q); off, they propose their greedy choice.
    Either way the output's distribution is the target's; temperature 0 ignores it.
    """

    decoder: str = "none"
    draft_tokens: int | None = None
    adaptive: bool = True
    sampled_drafts: bool = True

    def validated(self) -> DecoderSettings:
        if not isinstance(self.decoder, str) or not self.decoder.strip():
            raise SettingsError("decoder: must be none, auto, lookup, or a decoder id or path")
        if self.draft_tokens is not None:
            _check_int("draft_tokens", self.draft_tokens, 1, MAX_DRAFT_TOKENS)
        if not isinstance(self.sampled_drafts, bool):
            raise SettingsError("sampled_drafts: must be true or false")
        return self

    @property
    def enabled(self) -> bool:
        return self.decoder != "none"


@dataclass(frozen=True)
class ModelSettings:
    """How to load a model. ``dtype``: auto (fp32 on CPU, native elsewhere) or a name."""

    dtype: str = "auto"

    def validated(self) -> ModelSettings:
        if self.dtype not in ("auto", "native", "float32", "float16", "bfloat16"):
            raise SettingsError(
                f"dtype: {self.dtype!r} is not one of auto, native, float32, float16, bfloat16"
            )
        return self


def _check_number(name, value, low, high, low_open=False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise SettingsError(f"{name}: must be a number, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise SettingsError(f"{name}: {value} is outside {bracket}{low}, {high}]")


def _check_int(name, value, low, high) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"{name}: must be a whole number, got {value!r}")
    if value < low or value > high:
        raise SettingsError(f"{name}: {value} is outside [{low}, {high}]")


__all__ = [
    "DecoderSettings",
    "ModelSettings",
    "SamplingSettings",
    "SettingsError",
    "THINKING_MODES",
]
