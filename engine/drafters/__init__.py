"""Drafters for speculative decoding, and choosing one for a request."""

from __future__ import annotations

from engine.drafters.base import Drafter
from engine.drafters.lookup import PromptLookupDrafter
from engine.errors import DecoderError
from engine.settings import DecoderSettings


def create_drafter(loaded, settings: DecoderSettings) -> tuple[Drafter | None, str | None]:
    """The drafter a request asked for, and a note when it got none.

    ``none`` -> no drafter; ``lookup`` -> prompt lookup; ``auto`` -> the best
    compatible decoder found locally (prompt lookup when there is none); anything
    else names a decoder id or path, and an incompatible one is refused with the
    reason (DecoderError).
    """
    name = settings.decoder.strip()
    if name == "none":
        return None, None
    if name == "lookup":
        return PromptLookupDrafter(), None
    try:
        from engine.drafters import registry
    except ImportError:  # no weight-based drafters in this build
        registry = None
    if name == "auto":
        if registry is not None:
            drafter, note = registry.best_drafter(loaded)
            if drafter is not None:
                return drafter, note
        return PromptLookupDrafter(), "no trained decoder found for this model; using prompt lookup"
    if registry is None:
        raise DecoderError(f"decoder {name!r}: only none, auto and lookup are available")
    return registry.open_drafter(loaded, name), None
