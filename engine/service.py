"""The engine service: one long-lived worker thread that owns MLX.

Commands go in through ``submit`` (any thread); events come out to subscribers,
called on the engine thread. Requests run one at a time in arrival order, so
concurrent callers queue fairly. An exception in a command becomes a ``Failed``
event and the thread carries on.

The CLI, the HTTP server and the desktop app all drive this same class.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from engine.context_window import fit_prompt, model_context_length
from engine.errors import EngineError
from engine.events import (
    TERMINAL_EVENTS,
    Cancel,
    Command,
    Event,
    Failed,
    Finished,
    Generate,
    GenerationStats,
    LoadModel,
    LoadProgress,
    ModelLoaded,
    Unloaded,
    UnloadModel,
)
from engine.settings import SettingsError

log = logging.getLogger(__name__)

Subscriber = Callable[[Event], None]
_STOP = object()
_ids = itertools.count(1)


def new_request_id(prefix: str = "req") -> str:
    return f"{prefix}-{next(_ids)}"


class EngineService:
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
        self._commands: queue.Queue = queue.Queue()
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._cancel_events: dict[str, threading.Event] = {}
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        # Engine-thread state.
        self._models: OrderedDict[str, object] = OrderedDict()
        self._cache_store = None

    # ------------------------------------------------------------ any thread

    def start(self) -> EngineService:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lookahead-engine", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Cancel everything and stop the thread."""
        with self._lock:
            for ev in self._cancel_events.values():
                ev.set()
        if self._thread is not None:
            self._commands.put(_STOP)
            self._stopped.wait(timeout)
            self._thread = None

    @property
    def cache_prompts(self) -> bool:
        return self.prompt_cache_disk.enabled

    @cache_prompts.setter
    def cache_prompts(self, enabled: bool) -> None:
        """Turn the disk tier of the prompt cache on or off (any thread; the next
        request sees it)."""
        self.prompt_cache_disk.enabled = bool(enabled)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopped.is_set()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` on the engine thread for every event; returns an
        unsubscribe function. Callbacks must be quick and must not raise."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def submit(self, command: Command) -> str:
        """Queue a command; returns its request id."""
        if isinstance(command, Cancel):
            self.cancel(command.request_id)
            return command.request_id
        with self._lock:
            self._cancel_events[command.request_id] = threading.Event()
        self._commands.put(command)
        return command.request_id

    def cancel(self, request_id: str) -> None:
        """Stop a request: a running one ends at its next step with reason
        'cancelled', a queued one never starts."""
        with self._lock:
            ev = self._cancel_events.get(request_id)
        if ev is not None:
            ev.set()

    def stream(self, command: Generate | LoadModel | UnloadModel) -> Iterator[Event]:
        """Submit and yield this request's events until its last one (any thread).

        Closing the iterator early (a client that went away) cancels the request.
        """
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        rid = command.request_id

        def on_event(event: Event) -> None:
            if event.request_id == rid:
                inbox.put(event)

        terminal: tuple[type, ...] = TERMINAL_EVENTS
        if isinstance(command, LoadModel):
            terminal = (ModelLoaded, Failed)
        elif isinstance(command, UnloadModel):
            terminal = (Unloaded, Failed)
        unsubscribe = self.subscribe(on_event)
        finished = False
        try:
            self.submit(command)
            while True:
                event = inbox.get()
                yield event
                if isinstance(event, terminal):
                    finished = True
                    return
        finally:
            unsubscribe()
            if not finished:
                self.cancel(rid)

    def run(self, command: Generate | LoadModel | UnloadModel) -> Event:
        """Submit and wait for the final event; raises EngineError on failure."""
        last = None
        for event in self.stream(command):
            last = event
        if isinstance(last, Failed):
            raise EngineError(last.message)
        return last

    # ------------------------------------------------------------ engine thread

    def _emit(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # a broken subscriber must not take the engine down
                log.exception("event subscriber failed")

    def _run(self) -> None:
        broken = None  # set when the engine cannot start: every command then fails with it
        try:
            from engine.kv_cache import PromptCacheStore

            self._cache_store = PromptCacheStore(disk=self.prompt_cache_disk)
        except Exception as e:
            log.error("engine failed to start:\n%s", traceback.format_exc())
            broken = f"the engine could not start: {type(e).__name__}: {e}"
        while True:
            command = self._commands.get()
            if command is _STOP:
                self._park()
                return
            rid = command.request_id
            with self._lock:
                cancel = self._cancel_events.get(rid) or threading.Event()
            try:
                if broken is not None:
                    self._emit(Failed(rid, broken))
                elif cancel.is_set():
                    self._emit(_cancelled_before_start(rid))
                elif isinstance(command, Generate):
                    self._generate(command, cancel)
                elif isinstance(command, LoadModel):
                    self._load_command(command)
                elif isinstance(command, UnloadModel):
                    self._unload(command)
                else:
                    self._emit(Failed(rid, f"unknown command {type(command).__name__}"))
            except (EngineError, SettingsError) as e:
                self._emit(Failed(rid, str(e)))
            except MemoryError:
                self._emit(Failed(rid, "out of memory; try a smaller model or fewer tokens"))
            except Exception as e:
                log.error("command %s failed:\n%s", rid, traceback.format_exc())
                self._emit(Failed(rid, f"internal error: {type(e).__name__}: {e}"))
            finally:
                with self._lock:
                    self._cancel_events.pop(rid, None)

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
        from engine.drafters.policy import DraftLengthPolicy
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
        policy = DraftLengthPolicy(k=decoder.draft_tokens, adaptive=decoder.adaptive)
        generation = Generation(
            command.request_id,
            loaded,
            prompt,
            sampling,
            self._emit,
            cancel,
            cache_store=self._cache_store,
            drafter=drafter,
            policy=policy,
        )
        self._emit(generation.run())

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


def _cancelled_before_start(rid: str) -> Finished:
    return Finished(rid, "cancelled", "", "", GenerationStats(finish_reason="cancelled"))
