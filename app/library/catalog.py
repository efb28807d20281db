"""What a pane can pick: local chat models, and the decoders each one pairs with.

The engine decides which decoders pair (engine.decoder_catalog) and which thinking
modes a template has (engine.chat); this module only arranges the answers for the
pickers. Reads small JSON files only, so it may run on the GUI thread;
``ModelCatalog.refresh`` is the one call that scans the disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from engine.decoder_catalog import LOOKUP, DecoderChoice, auto_choice, decoders_for
from engine.library import LocalModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry:
    id: str  # what goes into Generate.model
    label: str
    path: str
    model_type: str = ""
    thinking_modes: tuple[str, ...] = ("off",)
    decoders: tuple[DecoderChoice, ...] = (LOOKUP,)  # those that pair, best first
    unavailable: tuple[str, ...] = ()  # why local decoders did not pair, one line each

    @property
    def default_decoder(self) -> DecoderChoice:
        """What a decoder-on pane runs unless the user picks: the same as ``auto``."""
        return auto_choice(list(self.decoders))


@dataclass
class ModelCatalog:
    """The local library as the app sees it. ``refresh`` rescans; GUI thread."""

    entries: list[ModelEntry] = field(default_factory=list)

    def models(self) -> list[ModelEntry]:
        return list(self.entries)

    def find(self, model_id: str) -> ModelEntry | None:
        return next((m for m in self.entries if m.id == model_id), None)

    def refresh(self) -> list[ModelEntry]:
        from engine import decoder_catalog, library

        try:
            local = library.local_models()
            matches = decoder_catalog.decoder_matches(local)
        except Exception:  # an unreadable models dir must not stop the app opening
            log.exception("could not list local models")
            local, matches = [], []
        self.entries = [_entry(m, local, matches) for m in local if not m.is_decoder]
        return self.models()


def _entry(model: LocalModel, local: list[LocalModel], matches: list) -> ModelEntry:
    """A chat model with every decoder that pairs with it, and why others do not."""
    from engine.chat import folder_thinking_modes

    choices = decoders_for(model, local, matches)
    return ModelEntry(
        id=model.id,
        label=model.id.rsplit("/", 1)[-1],
        path=str(model.path),
        model_type=model.model_type,
        thinking_modes=folder_thinking_modes(Path(model.path)),
        decoders=tuple(c for c in choices if c.ok),
        unavailable=tuple(f"{c.label}: {c.reason}" for c in choices if not c.ok),
    )
