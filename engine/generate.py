"""Generation: prompt prefill, then decoding with or without a drafter.

There is one verification loop (``_speculative_round``) for every drafter. Without
a drafter (or while the adaptive policy has switched drafting off) decoding runs
pipelined like mlx-lm's: the next step's graph is queued before the current token is
read, so Python overhead hides behind compute. ``steps()`` pauses after every round
(one plain token or one verification pass), so the service can alternate rounds
between requests (compare mode's "interleave"); ``run()`` goes straight through.
Engine thread only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

import mlx.core as mx

from engine import sampling as smp
from engine.chat import Prompt
from engine.drafters.base import Drafter, DraftSampling, draft_ids
from engine.drafters.policy import DraftLengthPolicy
from engine.events import Event, Finished, GenerationStats, PromptProgress, StatsEvent
from engine.kv_cache import PromptCacheStore, new_cache, rollback, snapshot
from engine.model_loader import LoadedModel
from engine.runtime import runtime_info
from engine.settings import SamplingSettings
from engine.target import Want, forward, prefill_chunk
from engine.token_stream import TokenStream

PREFILL_CHUNK = 64  # prompt tokens per step: cancel is checked between steps
STATS_INTERVAL_S = 0.25


@dataclass
class _Counters:
    start: float = field(default_factory=time.perf_counter)  # on Generation.clock()
    prompt_done: float = 0.0
    first_token: float = 0.0
    prompt_tokens: int = 0
    cached: int = 0
    verify_rounds: int = 0
    draft_rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    position_drafted: list[int] = field(default_factory=list)
    position_accepted: list[int] = field(default_factory=list)
    last_stats: float = 0.0


class Generation:
    """One request's generation. Call ``run()`` once."""

    def __init__(
        self,
        request_id: str,
        loaded: LoadedModel,
        prompt: Prompt,
        settings: SamplingSettings,
        emit: Callable[[Event], None],
        cancel: threading.Event,
        cache_store: PromptCacheStore | None = None,
        drafter: Drafter | None = None,
        policy: DraftLengthPolicy | None = None,
        sampled_drafts: bool = True,
    ):
        """``sampled_drafts``: let a drafter that can sample draw its proposals when the
        request samples (DecoderSettings.sampled_drafts)."""
        self.request_id = request_id
        self.loaded = loaded
        self.model = loaded.model
        self.prompt = prompt
        self.settings = settings
        self.emit = emit
        self.cancel = cancel
        self.cache_store = cache_store
        self.drafter = drafter
        self.policy = policy or DraftLengthPolicy(k=0, adaptive=False)
        self.sampled_drafts = sampled_drafts
        self.sampler = smp.Sampler(settings)
        self.stream = TokenStream(
            request_id, loaded.tokenizer, settings, prompt.starts_in_thinking, emit
        )
        self.counters = _Counters()
        # Time spent on other requests' rounds while this one was under way (interleaved
        # runs): left out of its figures, so each is timed on its own work.
        self.waited = 0.0
        self.finished: Finished | None = None
        self.history: list[int] = list(prompt.token_ids)  # prompt + generated (for penalties)
        self.cache_tokens: list[int] = []  # exactly the tokens whose KV sits in the cache
        self.cache: list = []
        self.info = runtime_info()

    # ------------------------------------------------------------ scoring

    def _recent(self, extra: list[int]) -> list[int]:
        ctx = self.settings.repetition_context
        seq = self.history + extra
        return seq[-ctx:]

    def _score_rows(self, logits: mx.array, drafts: list[int]):
        """Display and sampling logprobs for each row of (N, V) logits.

        Row i follows history + drafts[:i], so penalties see exactly what a
        one-token-at-a-time decode would have seen.
        """
        s = self.settings
        if s.repetition_penalty != 1.0:
            rows = [
                smp.apply_repetition_penalty(
                    logits[i], self._recent(drafts[:i]), s.repetition_penalty
                )
                for i in range(logits.shape[0])
            ]
            logits = mx.stack(rows)
        display = smp.display_logprobs(logits, s)
        return display, smp.truncate(display, s)

    def _record_arrays(self, display: mx.array, chosen: mx.array):
        """Lazy arrays for the per-token records of each row."""
        return smp.token_records(display, chosen, max(1, self.settings.top_alternatives))

    def _push(
        self, token: int, lp: float, top_ids, top_lps, ent: float, drafted=False, accepted=False
    ):
        n_alt = self.settings.top_alternatives
        if self.counters.first_token == 0.0:
            self.counters.first_token = self.clock()
        reason = self.stream.push(
            token, lp, top_ids[:n_alt], top_lps[:n_alt], ent, drafted=drafted, accepted=accepted
        )
        self.history.append(token)
        if reason is None and len(self.stream.token_ids) >= self.settings.max_tokens:
            reason = "length"
        return reason

    def _want_hidden(self) -> Want:
        """What the drafter reads from the target: nothing, its final-normed hidden
        states, or the outputs of the layers it names (``hidden_layers``)."""
        d = self.drafter
        if d is None or not d.needs_hidden:
            return False
        return tuple(getattr(d, "hidden_layers", None) or ()) or True

    # ------------------------------------------------------------ prefill

    def _prefill(self) -> tuple[mx.array, mx.array | None]:
        """Fill the cache with the prompt; return the logits (1, V) at its last
        position and, for drafters that need them, the hidden states (T, H) of the
        positions computed here (not those reused from a prompt cache)."""
        ids = list(self.prompt.token_ids)
        want_hidden = self._want_hidden()
        if self.cache_store is not None:
            self.cache, reused = self.cache_store.take(self.loaded, ids)
        else:
            self.cache, reused = new_cache(self.model), 0
        c = self.counters
        c.cached = reused
        c.prompt_tokens = len(ids)
        todo = ids[reused:]
        self.emit(PromptProgress(self.request_id, 0, len(todo), reused))
        hiddens = []
        # All but the last token: only the cache (and hidden states) are needed,
        # so the output head never runs over the prompt. Small chunks keep a cancel
        # prompt; the next chunk is queued before the last one is waited for, so the
        # device never idles between them.
        queued: tuple[int, list] | None = None
        for done in range(0, len(todo) - 1, PREFILL_CHUNK):
            if self.cancel.is_set():
                if queued is not None:
                    mx.eval(queued[1])  # never abandon queued work
                raise _Cancelled
            chunk = todo[done : min(done + PREFILL_CHUNK, len(todo) - 1)]
            hidden = prefill_chunk(self.model, mx.array(chunk)[None], self.cache, want_hidden)
            if hidden is not None:
                hiddens.append(hidden[0])
            work = [[cc.state for cc in self.cache], *([hidden] if hidden is not None else [])]
            mx.async_eval(work)
            if queued is not None:
                mx.eval(queued[1])
                self.emit(PromptProgress(self.request_id, queued[0], len(todo), reused))
            queued = (done + len(chunk), work)
        if queued is not None:
            mx.eval(queued[1])
            self.emit(PromptProgress(self.request_id, queued[0], len(todo), reused))
        if self.cancel.is_set():
            raise _Cancelled
        logits, hidden = forward(self.model, mx.array(todo[-1:])[None], self.cache, want_hidden)
        if hidden is not None:
            hiddens.append(hidden[0])
        mx.eval(logits)
        self.emit(PromptProgress(self.request_id, len(todo), len(todo), reused))
        self.cache_tokens = list(ids)
        c.prompt_done = self.clock()
        all_hidden = mx.concatenate(hiddens, axis=0) if hiddens else None
        return logits[:, -1, :], all_hidden

    # ------------------------------------------------------------ main

    def clock(self) -> float:
        """This request's own clock: wall time less the time other requests took."""
        return time.perf_counter() - self.waited

    def run(self) -> Finished:
        for _ in self.steps():
            pass
        assert self.finished is not None
        return self.finished

    def steps(self) -> Iterator[None]:
        """Generate, pausing after each round; at the end ``finished`` holds the
        Finished event (the caller emits it)."""
        reason = "stop"
        try:
            reason = yield from self._run()
        except _Cancelled:
            reason = "cancelled"
        finally:
            if self.drafter is not None:
                self.drafter.close()
        self.stream.finish()
        if self.cache_store is not None and self.cache:
            self.cache_store.put(self.loaded, self.cache_tokens, self.cache)
        stats = self.stats(reason)
        self.finished = Finished(
            self.request_id,
            reason,
            self.stream.answer,
            self.stream.reasoning,
            stats,
            tuple(self.prompt.token_ids),
            tuple(self.stream.token_ids),
        )

    def _run(self) -> Generator[None, None, str]:
        logits, hidden = self._prefill()
        display, sampling_lp = self._score_rows(logits, [])
        token = self.sampler.sample(sampling_lp)
        arrays = self._record_arrays(display, token)
        mx.eval(token, *arrays)
        first = int(token.item())
        if self.drafter is not None:
            if hasattr(self.drafter, "sampling"):
                self.drafter.sampling = self._draft_sampling()
            if hasattr(self.drafter, "target_cache"):  # drafters that read the target's K/V
                self.drafter.target_cache = self.cache
            self.drafter.begin(list(self.prompt.token_ids), hidden, self.counters.cached)
        reason = self._push(first, *self._rows(arrays)[0])
        last = first
        while reason is None:
            yield
            if self.cancel.is_set():
                return "cancelled"
            if self.drafter is None:
                reason, last = yield from self._plain_steps(last)
            elif (k := self.policy.next_k()) == 0:
                # The policy paused drafting: decode a stretch at full speed.
                reason, last = yield from self._plain_steps(last, self.policy.plain_tokens())
            else:
                reason, last = self._speculative_round(last, k)
                self._maybe_stats()
        return reason

    @staticmethod
    def _rows(arrays) -> list[tuple]:
        """Per-row (logprob, top ids, top logprobs, entropy) as Python values.

        Whole arrays are converted: indexing a lazy array would queue a new op
        behind the next step already running on the stream, and wait for it.
        """
        chosen_lp, top_ids, top_lps, ent = (a.tolist() for a in arrays)
        return list(zip(chosen_lp, top_ids, top_lps, ent, strict=True))

    # ------------------------------------------------------------ plain decoding

    def _plain_graph(self, y: mx.array, want_hidden: Want):
        """Queue one decoding step for token y (lazy): (token, record arrays, hidden)."""
        logits, hidden = forward(self.model, y.reshape(1, 1), self.cache, want_hidden)
        display, sampling_lp = self._score_rows(logits[:, -1, :], [])
        token = self.sampler.sample(sampling_lp)
        arrays = self._record_arrays(display, token)
        mx.async_eval(token, *arrays, *([hidden] if hidden is not None else []))
        return token, arrays, hidden

    def _plain_steps(
        self, last: int, limit: int | None = None
    ) -> Generator[None, None, tuple[str | None, int]]:
        """Decode without drafts: until finished, or for ``limit`` tokens.

        Pipelined: step n+1 is queued (fed the still-lazy token n) before token n
        is read. Repetition penalties need each token in Python first, so they run
        one step at a time. With a drafter attached (drafting paused by the
        policy), the stretch is handed to it in one batch at the end.
        """
        pipelined = self.settings.repetition_penalty == 1.0
        want_hidden = self._want_hidden()
        fed = [last]
        hiddens = []
        t0 = self.clock()
        self.cache_tokens.append(last)
        pending = self._plain_graph(mx.array([last]), want_hidden)
        while True:
            token, arrays, hidden = pending
            if hidden is not None:
                hiddens.append(hidden[0])
            self.counters.verify_rounds += 1
            emitted = len(fed)
            ahead = (
                pipelined
                and len(self.stream.token_ids) + 1 < self.settings.max_tokens
                and (limit is None or emitted < limit)
            )
            if ahead:
                pending = self._plain_graph(token, want_hidden)
            value = int(token.item())
            if ahead:
                self.cache_tokens.append(value)
            reason = self._push(value, *self._rows(arrays)[0])
            if reason is None and self.cancel.is_set():
                reason = "cancelled"
            if reason is not None:
                if ahead:
                    # Finish the queued step: an abandoned async eval aborts the process
                    # at exit, and its KV entry is already counted in cache_tokens.
                    mx.eval(pending[0], *pending[1])
                return reason, value
            self._maybe_stats()
            if limit is not None and emitted >= limit:
                if self.drafter is not None:
                    h = mx.concatenate(hiddens, axis=0) if hiddens else None
                    self.drafter.commit(fed, value, h)
                self.policy.record_plain(emitted, self.clock() - t0)
                return None, value
            fed.append(value)
            if not ahead:
                self.cache_tokens.append(value)
                pending = self._plain_graph(mx.array([value]), want_hidden)
            yield  # the next step is queued: another request's round may run meanwhile

    # ------------------------------------------------------------ speculation

    def _speculative_round(self, last: int, k: int) -> tuple[str | None, int]:
        """Draft up to k tokens, verify them in one target pass, accept, roll back."""
        c = self.counters
        t0 = self.clock()
        proposal = self.drafter.propose(last, k)[:k]
        n_drafts = len(proposal)
        q = self.drafter.draft_logprobs() if n_drafts else None
        want_hidden = self._want_hidden()
        # A lazy proposal is still being computed while the verification pass is built
        # on top of it; it is read once that pass is queued.
        tail = mx.array(proposal, dtype=mx.int32) if isinstance(proposal, list) else proposal
        inputs = mx.concatenate([mx.array([last], dtype=mx.int32), tail.astype(mx.int32)])[None]
        snap = snapshot(self.cache) if n_drafts else None  # recurrent layers cannot trim
        logits, hidden = forward(self.model, inputs, self.cache, want_hidden)
        mx.async_eval(logits, *([hidden] if hidden is not None else []))
        drafts = draft_ids(proposal)
        display, sampling_lp = self._score_rows(logits[0], drafts)
        accepted, bonus = self._accept(drafts, sampling_lp, q)
        chosen = mx.array(drafts[:accepted] + [bonus])
        arrays = self._record_arrays(display[: accepted + 1], chosen)
        mx.async_eval(*arrays)  # read by _rows below, after the rollback and the commit
        verified = [last] + drafts[:accepted]
        rollback(  # a recurrent cache is restored, then the verified tokens replayed
            self.cache,
            n_drafts - accepted,
            snap,
            lambda: prefill_chunk(self.model, mx.array(verified)[None], self.cache, False),
        )
        self.cache_tokens.extend(verified)
        c.verify_rounds += 1
        if n_drafts:
            c.draft_rounds += 1
            c.drafted += n_drafts
            c.accepted += accepted
            while len(c.position_drafted) < n_drafts:
                c.position_drafted.append(0)
                c.position_accepted.append(0)
            for i in range(n_drafts):
                c.position_drafted[i] += 1
                if i < accepted:
                    c.position_accepted[i] += 1
        # The drafter resyncs (queued work) while the tokens are emitted; if one of them
        # ends the generation, that work is simply never used.
        h = hidden[0, : accepted + 1] if hidden is not None else None
        self.drafter.commit(verified, bonus, h)
        reason = None
        rows = self._rows(arrays)
        for i, tok in enumerate(drafts[:accepted] + [bonus]):
            is_draft = i < accepted
            reason = self._push(tok, *rows[i], drafted=is_draft, accepted=is_draft)
            if reason is not None:
                mx.synchronize()  # let the drafter's queued work finish before we stop
                break
        self.policy.record_round(n_drafts, accepted, self.clock() - t0)
        return reason, bonus

    def _draft_sampling(self) -> DraftSampling | None:
        """Sampled drafts when the request samples and the decoder settings allow it."""
        if self.settings.greedy or not self.sampled_drafts:
            return None
        return DraftSampling(self.settings.temperature, self.sampler.next_key)

    def _accept(self, drafts: list[int], sampling_lp: mx.array, q: mx.array | None):
        """How many drafts to accept, and the token that follows them.

        Greedy: accept while the draft is the target's argmax. Sampling: accept d_i
        with probability min(1, p(d_i)/q(d_i)) (q one-hot for greedy drafters); on
        rejection draw from norm(max(0, p - q)). This leaves the target's
        distribution unchanged (Leviathan et al. 2023; Chen et al. 2023).
        """
        n = len(drafts)
        if self.settings.greedy:
            targets = mx.argmax(sampling_lp, axis=-1).tolist()
            a = 0
            while a < n and drafts[a] == targets[a]:
                a += 1
            return a, int(targets[a])
        if n == 0:
            return 0, int(self.sampler.sample(sampling_lp[0:1]).item())
        p = mx.exp(sampling_lp[:n])
        idx = mx.array(drafts)[:, None]
        p_d = mx.take_along_axis(p, idx, axis=-1)[:, 0]
        if q is None:
            ratio = p_d
        else:
            q = _same_width(q[:n], p.shape[-1])
            q_d = mx.exp(mx.take_along_axis(q[:n], idx, axis=-1)[:, 0])
            ratio = mx.minimum(1.0, p_d / mx.maximum(q_d, 1e-20))
        u = self.sampler.uniform((n,))
        ok = (u < ratio).tolist()
        a = 0
        while a < n and ok[a]:
            a += 1
        if a == n:
            return a, int(self.sampler.sample(sampling_lp[n : n + 1]).item())
        row = p[a]
        if q is None:
            residual = mx.where(mx.arange(row.shape[0]) == drafts[a], 0.0, row)
        else:
            residual = mx.maximum(row - mx.exp(q[a]), 0.0)
        total = mx.sum(residual)
        # p == q exactly leaves nothing to correct with; fall back to p itself.
        residual = mx.where(total > 0, residual, row)
        return a, int(self.sampler.sample(mx.log(residual)[None]).item())

    # ------------------------------------------------------------ stats

    def _maybe_stats(self) -> None:
        now = self.clock()
        if now - self.counters.last_stats >= STATS_INTERVAL_S:
            self.counters.last_stats = now
            self.emit(StatsEvent(self.request_id, self.stats(None)))

    def stats(self, finish_reason: str | None) -> GenerationStats:
        c = self.counters
        now = self.clock()
        n = len(self.stream.token_ids)
        prompt_time = (c.prompt_done - c.start) if c.prompt_done else 0.0
        computed = c.prompt_tokens - c.cached
        gen_time = now - c.prompt_done if c.prompt_done else 0.0
        drafted, accepted = c.drafted, c.accepted
        # Per-rank memory and communication share of a model spread across machines.
        rank_stats = getattr(self.model, "rank_stats", None)
        return GenerationStats(
            prompt_tokens=c.prompt_tokens,
            cached_prompt_tokens=c.cached,
            generation_tokens=n,
            ttft_s=(c.first_token - c.start) if c.first_token else 0.0,
            prompt_tps=computed / prompt_time if prompt_time > 0 else 0.0,
            generation_tps=n / gen_time if gen_time > 0 else 0.0,
            elapsed_s=now - c.start,
            peak_memory_gb=mx.get_peak_memory() / 1e9,
            memory_gb=mx.get_active_memory() / 1e9,
            device=self.info.device,
            blas=self.info.blas,
            dtype=self.loaded.dtype,
            decoder=self.drafter.name if self.drafter is not None else None,
            draft_tokens=self.policy.k if self.drafter is not None else 0,
            draft_rounds=c.draft_rounds,
            verify_rounds=c.verify_rounds,
            drafted=drafted,
            accepted=accepted,
            acceptance_rate=accepted / drafted if drafted else 0.0,
            mean_accepted_length=(n - 1) / c.verify_rounds if c.verify_rounds else 0.0,
            per_position_acceptance=tuple(
                a / d if d else 0.0
                for a, d in zip(c.position_accepted, c.position_drafted, strict=True)
            ),
            decoder_memory_gb=(self.drafter.memory_bytes() / 1e9) if self.drafter else 0.0,
            finish_reason=finish_reason,
            **(rank_stats() if rank_stats is not None else {}),
        )


class _Cancelled(Exception):
    pass


def _same_width(q: mx.array, width: int) -> mx.array:
    """Draft log-distributions (n, Vq) as (n, width): a drafter's vocabulary can be
    narrower than the target's logits (padding rows) or, cut to the target's
    vocabulary, wider; tokens it never proposes have q = 0."""
    have = q.shape[-1]
    if have == width:
        return q
    if have > width:
        return q[:, :width]
    pad = mx.full((q.shape[0], width - have), -mx.inf, dtype=q.dtype)
    return mx.concatenate([q, pad], axis=-1)
