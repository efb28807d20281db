"""MTPDrafter: a Drafter over an MTP head (any family), resynced exactly every round.

Position i of the head's cache holds the head run on (h_i, t_{i+1}): the target's
final-normed hidden at i and the token after it. Drafting chains the head on its
own normed output; those chained entries are speculative and are trimmed at commit,
which then runs the head once over the verified positions with the target's real
hiddens. That run's last output already predicts the next round's first draft (the
"seed"), so a round costs k - 1 chained head steps plus one batched resync.
Engine thread only.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
from mlx_lm.models.cache import CacheList

from engine.drafters.base import DraftSampling
from engine.drafters.mtp.head import HeadBundle, cache_nbytes

# Prompt positions the head reads per step when it catches up on a prompt (the target's
# own prefill steps are engine.generate.PREFILL_CHUNK, smaller so cancel lands fast).
HEAD_PREFILL_CHUNK = 512


@dataclass
class _Seed:
    token: int  # the input token t_{i+1} it was computed for
    hidden: mx.array  # (1, 1, H) the target hidden h_i it was computed from
    out: mx.array  # (1, 1, H) the head's normed output
    draft: mx.array  # (1, 1) its draft (greedy, or drawn when sampling)
    lq: mx.array | None = None  # (V,) the log-distribution it was drawn from


class MTPDrafter:
    needs_hidden = True

    def __init__(self, bundle: HeadBundle):
        self.bundle = bundle
        self.name = f"MTP ({bundle.label})"
        self.cache = bundle.head.make_cache()
        self._pending: mx.array | None = None  # (1, 1, H) hidden awaiting its next token
        self._seed: _Seed | None = None
        self._spec = 0  # chained (speculative) entries at the end of the cache
        self.sampling: DraftSampling | None = None  # set by the loop per request
        self._lqs: list[mx.array] = []  # the last proposal's q rows, when sampling
        self._q_width: int | None = None  # full-vocabulary width of q (reduced heads)

    # -- helpers

    def _run(self, hidden: mx.array, tokens: mx.array) -> mx.array:
        return self.bundle.head(self.bundle.embed(tokens), hidden, self.cache)

    def _trim(self, n: int) -> None:
        if n > 0:
            for c in self.cache:
                c.trim(n)

    def _state(self) -> list[mx.array]:
        out = []
        for c in self.cache:
            for sub in c.caches if isinstance(c, CacheList) else (c,):
                if getattr(sub, "keys", None) is not None:
                    out += [sub.keys, sub.values]
        return out

    def _pick(self, out: mx.array) -> tuple[mx.array, mx.array | None]:
        """The draft for head outputs (1, 1, H): greedy, or drawn from the head's own
        distribution when the request samples (with that distribution, widened to the
        full vocabulary when the head drafts from a reduced one)."""
        if self.sampling is None:
            return self.bundle.best(out), None
        b = self.bundle
        if b.draft_rows is None:
            token, lq = self.sampling.draw(b.logits(out))
            return token, lq[0, 0]
        local, lq = self.sampling.draw(out @ b.draft_rows.T)
        if self._q_width is None:  # read once: a sync per draft would stall the round
            self._q_width = int(b.draft_ids.max().item()) + 1
        full = mx.full((self._q_width,), -mx.inf, dtype=lq.dtype)
        full[b.draft_ids] = lq[0, 0]
        return mx.take(b.draft_ids, local), full

    def _unseed(self) -> None:
        """Forget a seed computed for a token that did not come: its cache entry too."""
        if self._seed is not None:
            self._trim(1)
            self._pending = self._seed.hidden
            self._seed = None

    # -- Drafter protocol

    def begin(self, prompt_ids: list[int], hidden: mx.array | None, reused: int) -> None:
        """Cover prompt positions reused..n-2; keep h_{n-1} for the first generated token.

        Positions before ``reused`` came from a prompt cache without hidden states, so
        the head's cache starts at ``reused`` (fewer keys to attend to: lower acceptance
        at worst, never a different output).
        """
        self.close()
        if hidden is None:
            raise ValueError("MTPDrafter needs the target's hidden states")
        hidden = hidden[None] if hidden.ndim == 2 else hidden
        n, t = len(prompt_ids), hidden.shape[1]
        start = n - t
        for lo in range(0, t - 1, HEAD_PREFILL_CHUNK):
            hi = min(lo + HEAD_PREFILL_CHUNK, t - 1)
            tokens = mx.array(prompt_ids[start + lo + 1 : start + hi + 1])[None]
            self._run(hidden[:, lo:hi], tokens)
            mx.eval(self._state())
        self._pending = hidden[:, t - 1 : t]

    def propose(self, last_token: int, k: int) -> list[int] | mx.array:
        """A lazy array of k drafts (see Drafter.propose)."""
        if k <= 0:
            return []
        if self._seed is not None and self._seed.token != last_token:
            self._unseed()
        if self._seed is None:
            out = self._run(self._pending, mx.array([[last_token]]))
            self._seed = _Seed(last_token, self._pending, out, *self._pick(out))
            self._pending = None
        out, token = self._seed.out, self._seed.draft
        drafts, lqs = [token], [self._seed.lq]
        for _ in range(k - 1):
            out = self._run(out, token)  # chain on the head's own normed output
            token, lq = self._pick(out)
            drafts.append(token)
            lqs.append(lq)
            self._spec += 1
        self._lqs = lqs if self.sampling is not None else []
        return mx.concatenate(drafts, axis=1)[0]

    def draft_logprobs(self) -> mx.array | None:
        """None for greedy drafts (the loop's one-hot rejection rule applies)."""
        return mx.stack(self._lqs) if self._lqs else None

    def commit(self, verified: list[int], next_token: int, hidden: mx.array | None) -> None:
        """Trim the chained entries, then run the head once over the verified positions
        with the target's hiddens; the last output seeds the next round."""
        self._trim(self._spec)
        self._spec = 0
        hidden = hidden[None] if hidden.ndim == 2 else hidden
        a = len(verified) - 1
        tokens = verified[1:] + [next_token]
        hiddens = hidden[:, : a + 1]
        if self._seed is not None and self._seed.token != verified[0]:
            self._unseed()
        if self._seed is None:  # no proposal this round (k = 0): (h, last) still missing
            tokens = [verified[0]] + tokens
            hiddens = mx.concatenate([self._pending, hiddens], axis=1)
        out = self._run(hiddens, mx.array([tokens]))[:, -1:]
        self._seed = _Seed(next_token, hidden[:, a : a + 1], out, *self._pick(out))
        self._pending = None
        mx.async_eval(self._seed.draft, *self._state())

    def memory_bytes(self) -> int:
        return self.bundle.weights_nbytes + cache_nbytes(self.cache)

    def close(self) -> None:
        self.cache = self.bundle.head.make_cache()
        self._pending = None
        self._seed = None
        self._spec = 0
        self._lqs = []
