"""A scripted stand-in for engine.service.EngineService, for widget demos and tests.

Same API (start / subscribe / submit / cancel / close), same events, no MLX. One
worker thread runs requests one at a time, like the real service, and streams
plausible tokens (thinking text, markdown, a code block, drafted/accepted flags,
top alternatives) at ``tokens_per_second``. Subscribers are called on that thread.
"""

from __future__ import annotations

import itertools
import math
import queue
import random
import re
import threading
import time
from collections.abc import Callable

from app.catalog import LOOKUP, DecoderOption, ModelCatalog, ModelEntry
from engine.events import (
    Alternative,
    Cancel,
    Event,
    Failed,
    Finished,
    Generate,
    GenerationStats,
    LoadModel,
    LoadProgress,
    ModelLoaded,
    PromptProgress,
    StatsEvent,
    TokenEvent,
    Unloaded,
    UnloadModel,
)

Subscriber = Callable[[Event], None]
_STOP = object()
_ids = itertools.count(1)

THINKING = (
    "The user wants a short, practical answer. I should show a small example, "
    "keep it idiomatic, and mention the edge case people usually trip over. "
    "A code block will make it concrete."
)

ANSWER = """Here is a **compact** way to do it in Python:

```python
def fizzbuzz(n: int) -> list[str]:
    out = []
    for i in range(1, n + 1):
        word = ("Fizz" if i % 3 == 0 else "") + ("Buzz" if i % 5 == 0 else "")
        out.append(word or str(i))
    return out
```

A few notes:

- Building the word by concatenation avoids a separate `% 15` check.
- `word or str(i)` falls back to the number when neither rule matched.
- For large `n`, yield the items instead of building a list.

That keeps it *readable* and easy to test."""

FAKE_MODELS = (
    ModelEntry(
        "SmolLM2-135M-Instruct",
        "SmolLM2-135M-Instruct",
        "fake/SmolLM2-135M-Instruct",
        "llama",
        ("off",),
        (LOOKUP, DecoderOption("SmolLM2-135M-MTP", "SmolLM2-135M-MTP", "mtp")),
    ),
    ModelEntry(
        "Qwen3-0.6B",
        "Qwen3-0.6B",
        "fake/Qwen3-0.6B",
        "qwen3",
        ("off", "on", "max"),
        (LOOKUP,),
        ("Qwen3-0.6B-draft: vocabularies differ (151936 vs 49152 tokens)",),
    ),
)

_VOCAB = ("the", " a", " it", " and", " to", " of", " in", ",", ".", " is", " for", "\n", " you")


def fake_catalog() -> ModelCatalog:
    """A catalog with two scripted models; ``refresh`` keeps them."""

    class _Fake(ModelCatalog):
        def refresh(self) -> list[ModelEntry]:
            return self.models()

    return _Fake(list(FAKE_MODELS))


def _split_tokens(text: str) -> list[str]:
    # Word pieces with their leading space, like a BPE tokenizer's output.
    return re.findall(r"\s*[A-Za-z]+|\s*\d|\s*[^\sA-Za-z\d]|\s+", text)


class FakeEngineService:
    """Scripted engine. ``tokens_per_second`` is the speed without a drafter."""

    def __init__(
        self,
        tokens_per_second: float = 40.0,
        load_seconds: float = 0.5,
        acceptance: float = 0.72,
        seed: int = 0,
    ):
        self.tokens_per_second = tokens_per_second
        self.load_seconds = load_seconds
        self.acceptance = acceptance
        self._rng = random.Random(seed)
        self._commands: queue.Queue = queue.Queue()
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._cancelled: set[str] = set()
        self._loaded: set[str] = set()
        self._thread: threading.Thread | None = None
        self.submitted: list[Generate | LoadModel | UnloadModel] = []  # for tests

    # ------------------------------------------------------------ public API (any thread)

    def start(self) -> FakeEngineService:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fake-engine", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            with self._lock:
                self._cancelled.update(_pending_ids(self._commands))
            self._commands.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def submit(self, command) -> str:
        if isinstance(command, Cancel):
            self.cancel(command.request_id)
            return command.request_id
        self.submitted.append(command)
        self._commands.put(command)
        return command.request_id

    def cancel(self, request_id: str) -> None:
        with self._lock:
            self._cancelled.add(request_id)

    # ------------------------------------------------------------ engine thread

    def _emit(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback(event)

    def _is_cancelled(self, rid: str) -> bool:
        with self._lock:
            return rid in self._cancelled

    def _run(self) -> None:
        while (command := self._commands.get()) is not _STOP:
            rid = command.request_id
            try:
                if isinstance(command, UnloadModel):
                    self._loaded.clear()
                    self._emit(Unloaded(rid, (command.model,)))
                elif self._is_cancelled(rid):
                    self._emit(Finished(rid, "cancelled", "", "", GenerationStats()))
                elif isinstance(command, LoadModel):
                    self._load(rid, command.model)
                else:
                    self._generate(command)
            except Exception as e:  # mirrors the real service: the thread stays alive
                self._emit(Failed(rid, f"internal error: {e}"))

    def _load(self, rid: str, model: str) -> None:
        if model not in self._loaded:
            for stage, f in (("resolving", 0.05), ("reading weights", 0.5), ("ready", 1.0)):
                time.sleep(self.load_seconds / 3)
                self._emit(LoadProgress(rid, model, stage, f))
            self._loaded.add(model)
        self._emit(
            ModelLoaded(
                rid, model, f"fake/{model}", "llama", "float32", 135_000_000, 0.54, None, None
            )
        )

    def _generate(self, cmd: Generate) -> None:
        rid = cmd.request_id
        # Scripted behaviour follows the newest message only.
        prompt_text = (cmd.messages[-1].content if cmd.messages else "") + (cmd.prompt or "")
        if "/fail" in prompt_text:
            self._emit(Failed(rid, "scripted failure: the prompt asked for one"))
            return
        self._load(rid, cmd.model)
        n_prompt = max(8, len(_split_tokens(prompt_text)) + 12)
        self._emit(PromptProgress(rid, n_prompt, n_prompt, 0))
        pieces = [("thinking", t) for t in _split_tokens(THINKING)] if cmd.thinking != "off" else []
        pieces += [("answer", t) for t in _split_tokens(ANSWER)]
        if "/loop" in prompt_text:
            pieces = pieces[:12] + [("answer", t) for t in _split_tokens(" and again") * 40]
        k = cmd.decoder.draft_tokens or 3
        drafting = cmd.decoder.enabled
        step = 1.0 / max(self.tokens_per_second, 1e-3)
        rng = random.Random(cmd.sampling.seed if cmd.sampling.seed is not None else 7)

        start = time.perf_counter()
        ttft = 0.0
        last_stats = start
        out: list[tuple[str, str]] = []
        drafted = accepted = rounds = 0
        reason = "stop"
        i = 0
        while i < len(pieces):
            if self._is_cancelled(rid):
                reason = "cancelled"
                break
            # One verify round: k drafts of which a prefix is accepted, plus one more.
            n_acc = 0
            if drafting:
                while n_acc < k and rng.random() < self.acceptance:
                    n_acc += 1
                drafted += k
                accepted += n_acc
            rounds += 1
            time.sleep(step * (1.15 if drafting else 1.0))
            for j in range(n_acc + 1):
                if i >= len(pieces) or len(out) >= cmd.sampling.max_tokens:
                    break
                channel, text = pieces[i]
                is_draft = j < n_acc
                self._emit(self._token(rid, len(out), channel, text, is_draft, rng))
                out.append((channel, text))
                i += 1
            if not ttft:
                ttft = time.perf_counter() - start
            if len(out) >= cmd.sampling.max_tokens and i < len(pieces):
                reason = "length"
                break
            if "/loop" in prompt_text and len(out) > 40:
                reason = "loop"
                break
            now = time.perf_counter()
            if now - last_stats >= 0.25:
                last_stats = now
                stats = self._stats(
                    cmd, n_prompt, len(out), now - start, ttft, drafted, accepted, rounds
                )
                self._emit(StatsEvent(rid, stats))
        elapsed = time.perf_counter() - start
        stats = self._stats(
            cmd, n_prompt, len(out), elapsed, ttft, drafted, accepted, rounds, reason
        )
        text = "".join(t for c, t in out if c == "answer")
        reasoning = "".join(t for c, t in out if c == "thinking")
        self._emit(Finished(rid, reason, text.strip(), reasoning.strip(), stats))

    def _token(
        self, rid: str, index: int, channel: str, text: str, drafted: bool, rng: random.Random
    ) -> TokenEvent:
        tid = abs(hash(text)) % 49152
        p = rng.uniform(0.35, 0.99)
        rest = 1.0 - p
        alts = [Alternative(tid, text, p)]
        for word in rng.sample(_VOCAB, 4):
            share = rest * rng.uniform(0.2, 0.6)
            rest -= share
            alts.append(Alternative(abs(hash(word)) % 49152, word, share))
        entropy = -sum(a.prob * math.log(a.prob) for a in alts if a.prob > 0)
        return TokenEvent(
            rid, index, tid, text, math.log(p), tuple(alts), entropy, channel, drafted, drafted
        )

    def _stats(
        self,
        cmd: Generate,
        n_prompt: int,
        n: int,
        elapsed: float,
        ttft: float,
        drafted: int,
        accepted: int,
        rounds: int,
        reason: str | None = None,
    ) -> GenerationStats:
        gen_time = max(elapsed - ttft, 1e-6)
        return GenerationStats(
            prompt_tokens=n_prompt,
            generation_tokens=n,
            ttft_s=ttft,
            prompt_tps=n_prompt / max(ttft, 1e-6),
            generation_tps=max(n - 1, 0) / gen_time if n > 1 else 0.0,
            elapsed_s=elapsed,
            peak_memory_gb=0.61 + (0.05 if cmd.decoder.enabled else 0.0),
            memory_gb=0.58 + (0.05 if cmd.decoder.enabled else 0.0),
            device="cpu (fake)",
            dtype="float32",
            decoder=cmd.decoder.decoder if cmd.decoder.enabled else None,
            draft_tokens=(cmd.decoder.draft_tokens or 3) if cmd.decoder.enabled else 0,
            draft_rounds=rounds if cmd.decoder.enabled else 0,
            verify_rounds=rounds,
            drafted=drafted,
            accepted=accepted,
            acceptance_rate=accepted / drafted if drafted else 0.0,
            mean_accepted_length=(n - 1) / rounds if rounds else 0.0,
            decoder_memory_gb=0.05
            if cmd.decoder.enabled and cmd.decoder.decoder != "lookup"
            else 0.0,
            finish_reason=reason,
        )


def _pending_ids(q: queue.Queue) -> list[str]:
    with q.mutex:
        return [c.request_id for c in q.queue if c is not _STOP]


def new_request_id(prefix: str = "pane") -> str:
    return f"{prefix}-{next(_ids)}"


def fake_starter(catalog: ModelCatalog, seconds: float = 2.0, fail: bool = False):
    """A starter importer for the first-run page: reports progress, then fills ``catalog``.

    Called on the importer's worker thread, like engine.starter.ensure_starter_model.
    """
    from pathlib import Path

    def run(progress) -> Path:
        steps = 10
        for i in range(steps + 1):
            progress("Importing SmolLM2-135M-Instruct", i / steps)
            time.sleep(seconds / steps)
        if fail:
            raise OSError("scripted failure: disk full")
        catalog.entries = list(FAKE_MODELS)
        return Path("fake") / FAKE_MODELS[0].id

    return run
