"""Which model ids the API offers, and what a requested id means.

An id is a local model (``SmolLM2-135M-Instruct``), optionally with a decoder tag:
``MODEL<decoder>DECODER`` where DECODER is ``lookup``, ``auto``, ``none`` or the id of
a local decoder repo or draft model. ``/v1/models`` lists every chat model and a
tagged id for each decoder engine.decoder_catalog pairs with it (built-in MTP as
``auto``, decoders shipped with the app and the library's, draft models, ``lookup``).
Listing reads the library from disk; results are kept a few seconds. Any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine import decoder_catalog, library
from engine.library import LocalModel
from engine.server.errors import ApiError

DECODER_TAG = "<decoder>"
BUILTIN_DECODERS = ("none", "lookup", "auto")


@dataclass(frozen=True)
class Listed:
    id: str
    model: LocalModel
    decoder: str  # "none" | "lookup" | "auto" | a decoder id
    note: str = ""  # how the decoder pairs, for people reading the listing


@dataclass(frozen=True)
class Target:
    model: str  # what the engine is asked to load
    decoder: str
    served_as: str  # the id reported back to the client
    local: LocalModel | None  # None when the app's override names something unlisted


def split_tag(model_id: str) -> tuple[str, str]:
    base, sep, decoder = model_id.partition(DECODER_TAG)
    return base.strip(), (decoder.strip() if sep else "none")


class ModelCatalog:
    def __init__(
        self,
        ttl_s: float = 5.0,
        source: Callable[[], list[LocalModel]] = library.local_models,
    ):
        self.ttl_s = ttl_s
        self._source = source
        self._lock = threading.Lock()
        self._stamp = 0.0
        self._models: list[LocalModel] = []
        self._listing: list[Listed] | None = None

    def models(self) -> list[LocalModel]:
        with self._lock:
            if time.monotonic() - self._stamp > self.ttl_s:
                self._models = self._source()
                self._listing = None
                self._stamp = time.monotonic()
            return list(self._models)

    def chat_models(self) -> list[LocalModel]:
        return [m for m in self.models() if not m.is_decoder]

    def listing(self) -> list[Listed]:
        models = self.models()
        with self._lock:
            if self._listing is not None:
                return list(self._listing)
        out: list[Listed] = []
        matches = decoder_catalog.decoder_matches(models)
        for m in (m for m in models if not m.is_decoder):
            out.append(Listed(m.id, m, "none"))
            for c in decoder_catalog.decoders_for(m, models, matches):
                if c.ok:
                    note = "prompt lookup" if c.kind == "lookup" else c.reason
                    if c.origin == "built-in":
                        what = "DSpark" if c.kind == "dspark" else "MTP"
                        note = f"built-in {what}: {c.reason}"
                    elif c.origin == "shipped":
                        note = f"shipped with Lookahead: {c.reason}"
                    out.append(Listed(f"{m.id}{DECODER_TAG}{c.value}", m, c.value, note))
        with self._lock:
            self._listing = out
        return list(out)

    def find(self, name: str) -> LocalModel | None:
        """A chat model by id: exact, then ignoring case, then without ``:latest``
        (Ollama clients add it)."""
        models = self.chat_models()
        candidates = [name]
        if name.endswith(":latest"):
            candidates.append(name[: -len(":latest")])
        for c in candidates:
            for m in models:
                if m.id == c:
                    return m
            for m in models:
                if m.id.lower() == c.lower():
                    return m
        return None

    def resolve(self, requested: str, override: str | None = None) -> Target:
        """What to run for a client's model id (or the app's override, which wins)."""
        from_app = bool(override and override.strip())
        chosen = override.strip() if from_app else requested
        base, decoder = split_tag(chosen)
        if not base:
            raise ApiError(400, "model: no model given", "model", "model_not_found")
        found = self.find(base)
        if found is None:
            if from_app:  # the app's own choice: trust it, the engine checks
                return Target(base, self.decoder(decoder), chosen, None)
            raise ApiError(
                404,
                f"model {base!r} not found; GET /v1/models lists the local models",
                "model",
                "model_not_found",
            )
        decoder = self.decoder(decoder)
        served = found.id if decoder == "none" else f"{found.id}{DECODER_TAG}{decoder}"
        return Target(found.id, decoder, served, found)

    def decoder(self, name: str) -> str:
        """A decoder name as the engine takes it; 404 for one not in the library."""
        if name in BUILTIN_DECODERS:
            return name
        for m in self.models():
            if m.id == name or m.id.lower() == name.lower():
                return m.id
        raise ApiError(
            404,
            f"decoder {name!r} not found; use lookup, auto, or a local decoder id",
            "model",
            "model_not_found",
        )
