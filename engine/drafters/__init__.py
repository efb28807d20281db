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
    from engine.drafters import registry

    if name == "auto":
        drafter, note = registry.best_drafter(loaded)
        if drafter is not None:
            return drafter, note
        if note:  # what it found and could not use, and why
            return PromptLookupDrafter(), f"{note}; using prompt lookup"
        return PromptLookupDrafter(), "no trained decoder found for this model; using prompt lookup"
    if (draft := _plain_model(name)) is not None:
        return _draft_model_drafter(loaded, draft), None
    return registry.open_drafter(loaded, name), None


def _plain_model(name: str):
    """The folder of ``name`` when it is an ordinary language model (a draft model)."""
    from engine.compat import decoder_info
    from engine.errors import ModelNotFound
    from engine.library import read_config, resolve_model

    try:
        path = resolve_model(name)
        config = read_config(path)
    except ModelNotFound:
        return None
    # Decoder repos (MTP heads, NextN exports, sidecars) go to the MTP registry.
    return None if decoder_info(path, config) is not None else path


def _draft_model_drafter(loaded, path):
    """A DraftModelDrafter, loading the draft model once per target (engine thread)."""
    from engine.decoder_catalog import verdict
    from engine.drafters.draft_model import DraftModelDrafter
    from engine.model_loader import load_model

    drafts = loaded.extras.setdefault("draft_models", {})
    key = str(path)
    if key not in drafts:
        pairing = verdict(loaded.path, path)  # the verdict the catalog shows
        if not pairing.ok:
            raise DecoderError(
                f"draft model {path.name} cannot draft for {loaded.path.name}: {pairing.reason}"
            )
        drafts[key] = load_model(key)
    return DraftModelDrafter(loaded, drafts[key])
