"""What a pane can pick: local chat models, and the decoders each one pairs with.

Plain Python (no Qt). Reads small JSON files only, so it may run on the GUI thread;
``ModelCatalog.refresh`` is the one call that scans the disk.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from engine.settings import THINKING_MODES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecoderOption:
    """A drafter a pane may switch on. ``value`` goes into DecoderSettings.decoder."""

    value: str
    label: str
    kind: str  # "lookup" | "mtp" | "draft"
    note: str = ""


LOOKUP = DecoderOption(
    "lookup", "Prompt lookup", "lookup", "Copies n-grams from the conversation; any model."
)


@dataclass(frozen=True)
class ModelEntry:
    id: str  # what goes into Generate.model
    label: str
    path: str
    model_type: str = ""
    thinking_modes: tuple[str, ...] = ("off",)
    decoders: tuple[DecoderOption, ...] = (LOOKUP,)
    unavailable: tuple[str, ...] = ()  # why local decoders did not pair, one line each


@dataclass
class ModelCatalog:
    """The local library as the app sees it. ``refresh`` rescans; GUI thread."""

    entries: list[ModelEntry] = field(default_factory=list)

    def models(self) -> list[ModelEntry]:
        return list(self.entries)

    def find(self, model_id: str) -> ModelEntry | None:
        return next((m for m in self.entries if m.id == model_id), None)

    def refresh(self) -> list[ModelEntry]:
        from engine import library

        try:
            local = library.local_models()
        except Exception:  # an unreadable models dir must not stop the app opening
            log.exception("could not list local models")
            local = []
        chat_models = [m for m in local if not m.is_decoder]
        decoders = [m for m in local if m.is_decoder]
        self.entries = [_entry(m, decoders, chat_models) for m in chat_models]
        return self.models()


def _entry(model, decoders: list, chat_models: list) -> ModelEntry:
    """A chat model with every decoder that pairs with it, and why others do not."""
    path = Path(model.path)
    options = [LOOKUP]
    unavailable: list[str] = []
    if getattr(model, "mtp", "") == "weights" and _pairs(path, path)[0]:
        # MTP heads inside the model's own weights: "auto" picks them.
        options.append(DecoderOption("auto", "Built-in MTP heads", "mtp"))
    for dec in decoders:
        ok, reason = _pairs(path, Path(dec.path))
        if ok:
            kind = getattr(dec, "decoder_kind", "") or _kind(dec.model_type)
            options.append(
                DecoderOption(dec.id, _short(dec.id), kind if kind in ("mtp", "draft") else "mtp")
            )
        elif reason:
            unavailable.append(f"{_short(dec.id)}: {reason}")
    for other in chat_models:
        # Another chat model of the same family can draft for this one (a draft model).
        if other.path == model.path or other.model_type != model.model_type:
            continue
        small, big = getattr(other, "size_bytes", 0), getattr(model, "size_bytes", 0)
        if small and big and small >= big:
            continue  # a draft model only helps when it is smaller
        if _pairs(path, Path(other.path))[0]:
            options.append(DecoderOption(other.id, _short(other.id), "draft"))
    return ModelEntry(
        id=model.id,
        label=_short(model.id),
        path=str(path),
        model_type=model.model_type,
        thinking_modes=thinking_modes_for(path),
        decoders=tuple(options),
        unavailable=tuple(unavailable),
    )


def _pairs(target: Path, decoder: Path) -> tuple[bool, str]:
    # engine.compat is written alongside this app; until it exists no decoder pairs.
    try:
        from engine.compat import check_pairing
    except ImportError:
        return False, ""
    try:
        result = check_pairing(target, decoder)
    except Exception as e:  # a broken decoder folder is a reason, not a crash
        return False, str(e)
    return bool(getattr(result, "ok", False)), str(getattr(result, "reason", "") or "")


def _kind(model_type: str) -> str:
    return "mtp" if model_type.endswith("_mtp") else "draft"


def _short(model_id: str) -> str:
    return model_id.rsplit("/", 1)[-1]


def thinking_modes_for(path: Path) -> tuple[str, ...]:
    """Thinking modes the model's chat template understands (mirrors engine.chat)."""
    template = ""
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        f = path / name
        if not f.is_file():
            continue
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        if name.endswith(".json"):
            try:
                value = json.loads(text).get("chat_template", "")
            except (json.JSONDecodeError, AttributeError):
                value = ""
            text = value if isinstance(value, str) else json.dumps(value)
        template += text
    if "reasoning_effort" in template:
        return THINKING_MODES
    if "enable_thinking" in template or "<think>" in template:
        return ("off", "on")
    return ("off",)
