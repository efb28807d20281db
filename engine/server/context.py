"""What every route needs: the engine (through the bridge), the model catalog, the
app's model override and the server's limits. One per ApiServer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from engine.events import Failed, Finished
from engine.server.bridge import EngineBridge, EngineRun, collect
from engine.server.catalog import DECODER_TAG, ModelCatalog, Target
from engine.server.errors import ApiError
from engine.server.tools import ToolFormat, tool_format
from engine.service import EngineService

log = logging.getLogger(__name__)

ModelOverride = Callable[[], "str | None"]


@dataclass(frozen=True)
class ServerLimits:
    max_body_bytes: int = 32 * 1024 * 1024  # a 200k-token prompt is under 1 MB of text
    max_pending: int = 64  # requests queued or running at once
    default_max_tokens: int = 4096  # when a client sets no limit
    max_tokens_cap: int | None = None  # clamp every request (a shared server's budget)
    context_limit: int | None = None  # cap every model's context window (tokens)

    def context(self, requested: int | None = None) -> int | None:
        """The context cap for a request that asks for ``requested`` (Ollama's num_ctx)."""
        caps = [c for c in (requested, self.context_limit) if c]
        return min(caps) if caps else None

    def max_tokens(self, requested: int | None) -> int:
        n = requested if requested is not None else self.default_max_tokens
        return min(n, self.max_tokens_cap) if self.max_tokens_cap else n


class ApiContext:
    def __init__(
        self,
        service: EngineService,
        catalog: ModelCatalog | None = None,
        model_override: ModelOverride | None = None,
        limits: ServerLimits | None = None,
    ):
        self.service = service
        self.limits = limits or ServerLimits()
        self.catalog = catalog or ModelCatalog()
        self.bridge = EngineBridge(service, self.limits.max_pending)
        self.model_override = model_override

    def _override(self) -> str | None:
        if self.model_override is None:
            return None
        try:
            value = self.model_override()
        except Exception:  # the app's callback must not break the API
            log.exception("model_override failed; using the client's model")
            return None
        return value if isinstance(value, str) and value.strip() else None

    async def target(self, requested: str, decoder: str | None = None) -> Target:
        """The model (and decoder) to run; 404 for an unknown id. ``decoder`` applies
        when the id carries no decoder tag. Off the loop: both the override and the
        library read may block."""

        def resolve() -> Target:
            target = self.catalog.resolve(requested, self._override())
            if decoder and decoder.strip() and target.decoder == "none":
                name = self.catalog.decoder(decoder.strip())
                if name != "none":
                    served = f"{target.served_as}{DECODER_TAG}{name}"
                    target = replace(target, decoder=name, served_as=served)
            return target

        return await run_in_threadpool(resolve)

    async def tool_format(self, target: Target) -> ToolFormat:
        def find() -> ToolFormat:
            path: Path | None = target.local.path if target.local is not None else None
            if path is None:
                from engine.library import resolve_model

                try:
                    path = resolve_model(target.model)
                except Exception:
                    return ToolFormat("", False)
            return tool_format(path)

        return await run_in_threadpool(find)


async def collect_finished(run: EngineRun, receive) -> tuple[list, Finished]:
    """All of a non-streaming run's events and its Finished event, or the HTTP error."""
    events = await collect(run, receive)
    final = events[-1] if events else None
    if isinstance(final, Failed):
        raise failure(final.message)
    if not isinstance(final, Finished):
        raise ApiError(499, "the client went away")
    return events, final


def failure(message: str) -> ApiError:
    """A Failed event as an HTTP error: engine refusals are the client's to fix."""
    if message.startswith("internal error"):
        return ApiError(500, message, code="engine_error")
    if message.startswith("out of memory"):
        return ApiError(503, message, code="out_of_memory")
    if message.startswith("prompt is ") and " tokens; " in message:  # ContextTooLong
        return ApiError(400, message, "messages", code="context_length_exceeded")
    return ApiError(400, message, code="engine_refused")
