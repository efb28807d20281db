"""How many tokens a model holds: its context window, decided here once.

Read from the model's config (``max_position_embeddings`` and its synonyms, in a
nested ``text_config`` for multimodal checkpoints), stretched by RoPE scaling, else
the tokenizer's ``model_max_length``. Only JSON is read, so any thread may ask. The
engine refuses a prompt that does not fit and stops generating at the window; the
server and the app show it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from engine.errors import EngineError

# Config keys that give the number of positions, most common first.
POSITION_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_sequence_length",
    "max_seq_len",
    "seq_length",
    "n_ctx",
    "model_max_length",
)
_NESTED = ("text_config", "llm_config", "language_config")
_UNSET = 10_000_000  # tokenizers write a huge number (1e30) when they do not know


class ContextTooLong(EngineError):
    """The prompt leaves no room in the context window; the message names both."""


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if 0 < value < _UNSET else None


def _rope_scaled(config: dict, base: int) -> int:
    scaling = config.get("rope_scaling") or config.get("rope_parameters")
    if not isinstance(scaling, dict):
        return base
    kind = str(scaling.get("rope_type") or scaling.get("type") or "").lower()
    factor = scaling.get("factor")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 1:
        return base
    original = _positive_int(scaling.get("original_max_position_embeddings"))
    if original is not None:  # yarn, llama3, longrope: the stretch of the trained window
        return max(base, int(original * factor))
    if kind in ("linear", "dynamic", "yarn"):  # max_position_embeddings is the original
        return int(base * factor)
    return base


def context_length(config: dict, tokenizer_config: dict | None = None) -> int | None:
    """The model's context window in tokens, or None when nothing says."""
    for section in (config, *(config.get(k) for k in _NESTED)):
        if not isinstance(section, dict):
            continue
        for key in POSITION_KEYS:
            base = _positive_int(section.get(key))
            if base is not None:
                return _rope_scaled(section, base)
    if tokenizer_config:
        return _positive_int(tokenizer_config.get("model_max_length"))
    return None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@lru_cache(maxsize=128)
def _folder_context(folder: str, stamp: float) -> int | None:
    path = Path(folder)
    return context_length(
        _read_json(path / "config.json"), _read_json(path / "tokenizer_config.json")
    )


def model_context_length(folder: Path | None) -> int | None:
    """``context_length`` of a model folder (config.json, tokenizer_config.json)."""
    if folder is None:
        return None
    try:
        stamp = (Path(folder) / "config.json").stat().st_mtime
    except OSError:
        stamp = 0.0
    return _folder_context(str(folder), stamp)


def model_label(name: str) -> str:
    """A model id as a person reads it: the last part of a repo id or path."""
    return name.rstrip("/").replace("\\", "/").split("/")[-1] or name


def fit_prompt(
    n_prompt: int, window: int | None, name: str, limit: int | None = None
) -> int | None:
    """Tokens left to generate after an ``n_prompt``-token prompt (None: no bound
    known). Raises ContextTooLong when the prompt leaves no room: ``window`` is the
    model's, ``limit`` a smaller one a user set."""
    label = model_label(name)
    size = window
    if limit is not None and (size is None or limit < size):
        size = limit
    if size is None:
        return None
    if n_prompt >= size:
        if size == window:
            raise ContextTooLong(f"prompt is {n_prompt:,} tokens; {label} holds {window:,}")
        held = f" ({label} holds {window:,})" if window else ""
        raise ContextTooLong(
            f"prompt is {n_prompt:,} tokens; the context is limited to {size:,}{held}"
        )
    return size - n_prompt
