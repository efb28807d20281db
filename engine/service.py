"""The engine service: one long-lived worker thread that owns MLX.

Commands go in through ``submit`` (any thread); events come out to subscribers,
called on the engine thread. Requests run one at a time in arrival order, so
concurrent callers queue fairly; generations of one ``interleave`` group (compare
mode) run together instead, a round each in turn. An exception in a command becomes
a ``Failed`` event and the thread carries on.

The CLI, the HTTP server and the desktop app all drive this same class.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

from engine.command_loop import CommandLoop, new_request_id
from engine.context_window import fit_prompt, model_context_length
from engine.errors import EngineError
from engine.events import (
    Command,
    Failed,
    Generate,
    LoadModel,
    LoadProgress,
    ModelLoaded,
    Unloaded,
    UnloadModel,
)

log = logging.getLogger(__name__)

__all__ = ["EngineService", "new_request_id"]


class EngineService(CommandLoop):
    def __init__(
        self,
        max_loaded_models: int = 2,
        cache_prompts: bool = False,
        prompt_cache_dir: Path | None = None,
        prompt_cache_max_bytes: int | None = None,
    ):
        """``cache_prompts``: keep prompt KV caches on disk too (they survive a restart);
        ``prompt_cache_dir`` defaults to paths.cache_dir() / "prompt-cache"."""
        from engine.prompt_cache_disk import DEFAULT_MAX_BYTES, DiskPromptCache

        self.max_loaded_models = max_loaded_models
        self.prompt_cache_disk = DiskPromptCache(
            prompt_cache_dir, prompt_cache_max_bytes or DEFAULT_MAX_BYTES, enabled=cache_prompts
        )
        super().__init__()
        # Engine-thread state.
        self._models: OrderedDict[str, object] = OrderedDict()
        self._cache_store = None

    # ------------------------------------------------------------ any thread

    @property
    def cache_prompts(self) -> bool:
        return self.prompt_cache_disk.enabled

    @cache_prompts.setter
    def cache_prompts(self, enabled: bool) -> None:
        """Turn the disk tier of the prompt cache on or off (any thread; the next
        request sees it)."""
        self.prompt_cache_disk.enabled = bool(enabled)

    # ------------------------------------------------------------ engine thread

    def on_start(self) -> str | None:
        from engine.kv_cache import PromptCacheStore

        self._cache_store = PromptCacheStore(disk=self.prompt_cache_disk)
        return None

    def handle(self, command: Command, cancel: threading.Event) -> None:
        if isinstance(command, Generate):
            self._generate(command, cancel)
        elif isinstance(command, LoadModel):
            self._load_command(command)
        elif isinstance(command, UnloadModel):
            self._unload(command)
        else:
            self._emit(Failed(command.request_id, f"unknown command {type(command).__name__}"))

    def on_stop(self) -> None:
        self._park()

    def _park(self) -> None:
        """Release everything, then never return.

        A thread that ran MLX work and then exits makes the process abort at
        shutdown now and then ("terminate called without an active exception":
        its per-thread stream worker is destroyed while joinable). A parked
        daemon thread costs nothing and avoids that.
        """
        import mlx.core as mx

        self._models.clear()
        self._cache_store = None
        mx.synchronize()
        mx.clear_cache()
        self._stopped.set()
        threading.Event().wait()

    def _load(self, rid: str, name: str, settings):
        """The loaded model for name (loading it, and evicting the oldest, if needed)."""
        key = f"{name}|{settings.dtype}"
        loaded = self._models.get(key)
        if loaded is None:
            while len(self._models) >= self.max_loaded_models:
                _, old = self._models.popitem(last=False)
                self._cache_store.drop(old)
            loaded = self._load_model(
                name,
                settings,
                progress=lambda stage, f: self._emit(LoadProgress(rid, name, stage, f)),
            )
            self._models[key] = loaded
        self._models.move_to_end(key)
        return loaded

    def _load_model(self, name: str, settings, progress):
        """Where the weights go: this process. engine.distributed's service overrides it
        to spread a model over several machines."""
        from engine.model_loader import load_model

        return load_model(name, settings, progress=progress)

    def _drafter(self, loaded, decoder):
        """(drafter or None, note): ``auto`` falls back quietly, with a note saying why."""
        from engine.drafters import create_drafter
        from engine.errors import DecoderError

        if not decoder.enabled:
            return None, None
        try:
            return create_drafter(loaded, decoder)
        except DecoderError as e:
            if decoder.decoder != "auto":
                raise
            return None, str(e)

    def _announce(self, rid: str, name: str, loaded, drafter, note) -> None:
        self._emit(
            ModelLoaded(
                rid,
                name,
                str(loaded.path),
                loaded.model_type,
                loaded.dtype,
                loaded.parameters,
                loaded.memory_gb,
                drafter.name if drafter is not None else None,
                note,
                model_context_length(loaded.path),
                loaded.chat.think_tags,
            )
        )

    def _load_command(self, command: LoadModel) -> None:
        loaded = self._load(command.request_id, command.model, command.load.validated())
        drafter, note = self._drafter(loaded, command.decoder.validated())
        self._announce(command.request_id, command.model, loaded, drafter, note)
        if drafter is not None:
            drafter.close()

    def _unload(self, command: UnloadModel) -> None:
        removed = []
        for key in list(self._models):
            if command.model == "*" or key.split("|")[0] == command.model:
                self._cache_store.drop(self._models.pop(key))
                removed.append(key.split("|")[0])
        import mlx.core as mx

        mx.clear_cache()
        self._emit(Unloaded(command.request_id, tuple(removed)))

    def _generate(self, command: Generate, cancel: threading.Event) -> None:
        generation = self._generation(command, cancel)
        if command.interleave:
            self.run_interleaved(generation, command.interleave, self._generation)
        else:
            self._emit(generation.run())

    def _generation(self, command: Generate, cancel: threading.Event):
        """Load what the request needs and set up its Generation (nothing run yet)."""
        from engine.drafters.policy import DraftLengthPolicy, draft_ceiling
        from engine.generate import Generation

        sampling = command.sampling.validated()
        decoder = command.decoder.validated()
        loaded = self._load(command.request_id, command.model, command.load.validated())
        prompt = self._prompt(loaded, command)
        # Before any work: a prompt that does not fit is refused, a reply stops at the window.
        room = fit_prompt(
            len(prompt.token_ids),
            model_context_length(loaded.path),
            command.model,
            command.context_limit,
        )
        if room is not None and sampling.max_tokens > room:
            sampling = replace(sampling, max_tokens=room)
        drafter, note = self._drafter(loaded, decoder)
        self._announce(command.request_id, command.model, loaded, drafter, note)
        policy = DraftLengthPolicy(
            k=decoder.draft_tokens, adaptive=decoder.adaptive, k_max=draft_ceiling(drafter)
        )
        return Generation(
            command.request_id,
            loaded,
            prompt,
            sampling,
            self._emit,
            cancel,
            cache_store=self._cache_store,
            drafter=drafter,
            policy=policy,
            sampled_drafts=decoder.sampled_drafts,
        )

    def _prompt(self, loaded, command: Generate):
        from engine.chat import Prompt

        given = sum(
            [bool(command.messages), command.prompt is not None, command.prompt_tokens is not None]
        )
        if given != 1:
            raise EngineError("a request needs exactly one of messages, prompt or prompt_tokens")
        if command.prompt_tokens is not None:
            ids = tuple(int(t) for t in command.prompt_tokens)
            vocab = loaded.config.get("vocab_size") or len(loaded.tokenizer)
            if not ids or any(t < 0 or t >= vocab for t in ids):
                raise EngineError("prompt_tokens must be a non-empty list of valid token ids")
            text = loaded.tokenizer.decode(list(ids))
            return Prompt(ids, text, loaded.chat.starts_in_thinking(text))
        if command.prompt is not None:
            return loaded.chat.raw(command.prompt)
        return loaded.chat.render(
            command.messages, command.thinking, command.continue_final, command.tools
        )
