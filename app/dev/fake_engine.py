"""A scripted stand-in for engine.service.EngineService, for widget demos and tests.

Same machinery as the real service (engine.command_loop.CommandLoop: start / subscribe
/ submit / cancel / stream / close), same events, no MLX. One worker thread runs
requests one at a time, like the real service, and streams
plausible tokens (thinking text, markdown, a code block, drafted/accepted flags,
top-10 alternatives) at ``tokens_per_second``. Subscribers are called on that thread.

Replay and continuation behave like the real engine in miniature: prompts are token
ids of a small deterministic vocabulary (``fake_token_id``), a request whose prompt
ends inside a reply (``prompt_tokens`` from a replay, or ``continue_final``) carries
on from that point in the script (a ``</think>`` in the prefix ends the thinking), and
a prompt cache reports how many prompt tokens an earlier request already computed.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import replace

from app.dev.fake_script import (
    END_MARK,
    ROLE_MARKS,
    THINK_CLOSE,
    THINK_OPEN,
    VOCAB,
    after_last,
    fake_decode,
    fake_token_id,
    render_prompt,
    script_after,
    tool_script,
    vary,
)
from app.library.catalog import ModelCatalog, ModelEntry
from engine.command_loop import CommandLoop
from engine.decoder_catalog import LOOKUP, DecoderChoice
from engine.errors import EngineError
from engine.events import (
    Alternative,
    Command,
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

PROMPT_CACHE_SIZE = 8  # sequences the fake prompt cache remembers
CONTEXT_LENGTH = 8192  # the window every fake model reports, like the starter's

FAKE_MODELS = (
    ModelEntry(
        "SmolLM2-135M-Instruct",
        "SmolLM2-135M-Instruct",
        "fake/SmolLM2-135M-Instruct",
        "llama",
        ("off",),
        (
            DecoderChoice(
                "SmolLM2-135M-MTP",
                "SmolLM2-135M-MTP",
                "mtp",
                "shipped",
                True,
                "trained MTP head: llama family, hidden 576, vocab 49152",
                4_700_000,
            ),
            LOOKUP,
        ),
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


class _FakeRun:
    """One scripted generation that pauses after each round (engine.command_loop's
    Interleavable), like engine.generate.Generation."""

    def __init__(self, request_id: str, body):
        self.request_id = request_id
        self.waited = 0.0
        self.finished: Finished | None = None
        self._body = body

    def clock(self) -> float:
        return time.perf_counter() - self.waited

    def steps(self):
        yield from self._body(self)


def fake_catalog() -> ModelCatalog:
    """A catalog with two scripted models; ``refresh`` keeps them."""

    class _Fake(ModelCatalog):
        def refresh(self) -> list[ModelEntry]:
            return self.models()

    return _Fake(list(FAKE_MODELS))


class FakeEngineService(CommandLoop):
    """Scripted engine. ``tokens_per_second`` is the speed without a drafter."""

    def __init__(
        self,
        tokens_per_second: float = 40.0,
        load_seconds: float = 0.5,
        acceptance: float = 0.72,
        seed: int = 0,
    ):
        super().__init__()
        self.tokens_per_second = tokens_per_second
        self.load_seconds = load_seconds
        self.acceptance = acceptance
        self._rng = random.Random(seed)
        self._prompt_cache: list[tuple[int, ...]] = []  # engine thread only
        self._loaded: set[str] = set()
        self.submitted: list[Generate | LoadModel | UnloadModel] = []  # for tests
        self.cache_prompts = False  # EngineService's switch; the fake keeps nothing on disk

    thread_name = "fake-engine"

    def submit(self, command: Command) -> str:
        if isinstance(command, (Generate, LoadModel, UnloadModel)):
            self.submitted.append(command)
        return super().submit(command)

    # ------------------------------------------------------------ engine thread

    def handle(self, command: Command, cancel: threading.Event) -> None:
        if isinstance(command, UnloadModel):
            self._loaded.clear()
            self._emit(Unloaded(command.request_id, (command.model,)))
        elif isinstance(command, LoadModel):
            self._load(command.request_id, command.model)
        elif isinstance(command, Generate):
            self._generate(command, cancel)
        else:
            self._emit(Failed(command.request_id, f"unknown command {type(command).__name__}"))

    def _load(self, rid: str, model: str) -> None:
        if model not in {m.id for m in FAKE_MODELS}:
            raise EngineError(
                f"no local model called {model!r} (the fake engine has "
                + ", ".join(m.id for m in FAKE_MODELS)
                + ")"
            )
        if model not in self._loaded:
            for stage, f in (("resolving", 0.05), ("reading weights", 0.5), ("ready", 1.0)):
                time.sleep(self.load_seconds / 3)
                self._emit(LoadProgress(rid, model, stage, f))
            self._loaded.add(model)
        self._emit(
            ModelLoaded(
                rid,
                model,
                f"fake/{model}",
                "llama",
                "float32",
                135_000_000,
                0.54,
                None,
                None,
                CONTEXT_LENGTH,
                (THINK_OPEN, THINK_CLOSE),
            )
        )

    def _generate(self, cmd: Generate, cancel: threading.Event) -> None:
        run = self._start(cmd, cancel)
        if cmd.interleave:
            self.run_interleaved(run, cmd.interleave, self._start)
        else:
            for _ in run.steps():
                pass
            self._emit(run.finished)

    def _start(self, cmd: Generate, cancel: threading.Event) -> _FakeRun:
        return _FakeRun(cmd.request_id, lambda run: self._steps(run, cmd, cancel))

    def _steps(self, run: _FakeRun, cmd: Generate, cancel: threading.Event):
        """The scripted reply, one verify round per step; ``run.finished`` at the end."""
        rid = cmd.request_id
        ids = render_prompt(cmd)
        # Scripted behaviour follows the newest user message only.
        user = after_last(ids, ROLE_MARKS["user"]) or []
        end = fake_token_id(END_MARK)
        prompt_text = fake_decode(user[: user.index(end)] if end in user else user)
        if cmd.prompt is not None:
            prompt_text = cmd.prompt
        if "/fail" in prompt_text:
            raise EngineError("scripted failure: the prompt asked for one")
        self._load(rid, cmd.model)
        reply = after_last(ids, ROLE_MARKS["assistant"])
        prefix = fake_decode(reply or [])
        pieces = tool_script(prompt_text, cmd) or vary(
            script_after(prefix, loop="/loop" in prompt_text), cmd, prompt_text
        )
        cached = self._cached_prefix(ids)
        self._emit(PromptProgress(rid, len(ids), len(ids), cached))
        k = cmd.decoder.draft_tokens or 3
        drafting = cmd.decoder.enabled
        step = 1.0 / max(self.tokens_per_second, 1e-3)
        rng = random.Random(cmd.sampling.seed if cmd.sampling.seed is not None else 7)

        start = run.clock()
        ttft = 0.0
        last_stats = start
        out: list[tuple[str, str]] = []
        drafted = accepted = rounds = 0
        reason = "stop"
        i = 0
        while i < len(pieces):
            if cancel.is_set():
                reason = "cancelled"
                break
            # One verify round: k drafts of which a prefix is accepted, plus one more.
            n_acc = 0
            if drafting and out:  # the first token comes from the prompt, never a draft
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
                ttft = run.clock() - start
            if len(out) >= cmd.sampling.max_tokens and i < len(pieces):
                reason = "length"
                break
            if "/loop" in prompt_text and len(out) > 40:
                reason = "loop"
                break
            now = run.clock()
            if now - last_stats >= 0.25:
                last_stats = now
                stats = self._stats(
                    cmd, len(ids), len(out), now - start, ttft, drafted, accepted, rounds
                )
                self._emit(StatsEvent(rid, replace(stats, cached_prompt_tokens=cached)))
            yield
        elapsed = run.clock() - start
        stats = self._stats(
            cmd, len(ids), len(out), elapsed, ttft, drafted, accepted, rounds, reason
        )
        generated = [fake_token_id(t) for _c, t in out]
        self._remember(ids + generated)
        text = "".join(t for c, t in out if c == "answer")
        reasoning = "".join(t for c, t in out if c == "thinking" and t != THINK_CLOSE)
        if not reply or reply == [fake_token_id(THINK_OPEN)]:
            text, reasoning = text.strip(), reasoning.strip()  # a continuation keeps its spaces
        run.finished = Finished(
            rid,
            reason,
            text,
            reasoning,
            replace(stats, cached_prompt_tokens=cached),
            tuple(ids),
            tuple(generated),
        )

    def _cached_prefix(self, ids: list[int]) -> int:
        """Prompt tokens an earlier request computed (the last one is always computed)."""
        best = 0
        for seq in self._prompt_cache:
            n = 0
            for a, b in zip(seq, ids, strict=False):
                if a != b:
                    break
                n += 1
            best = max(best, n)
        return min(best, len(ids) - 1)

    def _remember(self, seq: list[int]) -> None:
        self._prompt_cache.append(tuple(seq))
        del self._prompt_cache[:-PROMPT_CACHE_SIZE]

    def _token(
        self, rid: str, index: int, channel: str, text: str, drafted: bool, rng: random.Random
    ) -> TokenEvent:
        tid = fake_token_id(text)
        # Mostly confident with the odd unsure pick, as small chat models are.
        p = max(0.08, 1.0 - rng.betavariate(0.5, 8.0))
        rest = 1.0 - p
        alts = [Alternative(tid, text, p)]
        others = [w for w in VOCAB if w != text]
        if channel == "thinking" and text != THINK_CLOSE:
            others[0] = THINK_CLOSE  # the way out of a reasoning loop, as real models offer it
        for word in rng.sample(others[:1], 1) + rng.sample(others[1:], 8):
            share = rest * rng.uniform(0.2, 0.6)
            rest -= share
            alts.append(Alternative(fake_token_id(word), word, share))
        alts.sort(key=lambda a: -a.prob)
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


def fake_api_catalog():
    """The API server's model catalog (engine.server) listing the fake models and the
    fake MTP decoder, so an ApiServer on the fake engine answers for them."""
    from pathlib import Path

    from engine.library import LocalModel
    from engine.server.catalog import ModelCatalog

    models = [
        LocalModel(m.id, Path(m.path), "path", m.model_type, False, 135_000_000)
        for m in FAKE_MODELS
    ]
    models.append(
        LocalModel("SmolLM2-135M-MTP", Path("fake/SmolLM2-135M-MTP"), "path", "llama_mtp", True)
    )
    return ModelCatalog(source=lambda: list(models))


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
