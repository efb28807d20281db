"""Logits processing and sampling, shared by plain decoding and draft verification.

The same functions score every position, so a token's probability is the same with
a drafter on or off. Two distributions per position:
- the *display* distribution: after the repetition penalty and temperature
  (temperature 0 shows the model's own softmax); logprobs, top-k alternatives and
  entropy come from it;
- the *sampling* distribution: the display one truncated by top-k / top-p / min-p.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import mlx.core as mx

from engine.settings import SamplingSettings


def apply_repetition_penalty(logits: mx.array, recent: Sequence[int], penalty: float) -> mx.array:
    """Penalise tokens seen recently (logits: (V,)). Same rule as mlx-lm."""
    if penalty == 1.0 or not recent:
        return logits
    idx = mx.array(sorted(set(recent)), dtype=mx.uint32)
    selected = logits[idx]
    selected = mx.where(selected < 0, selected * penalty, selected / penalty)
    logits[idx] = selected
    return logits


def display_logprobs(logits: mx.array, settings: SamplingSettings) -> mx.array:
    """Log-softmax after temperature (rows of logits, any leading shape)."""
    return tempered_logprobs(logits, settings.temperature)


def tempered_logprobs(logits: mx.array, temperature: float) -> mx.array:
    """Log-softmax of logits / temperature in float32 (0 leaves them as they are): the
    target's display distribution, and a sampling drafter's own q."""
    logits = logits.astype(mx.float32)
    if temperature > 0 and temperature != 1.0:
        logits = logits * (1.0 / temperature)
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


def truncate(logprobs: mx.array, settings: SamplingSettings) -> mx.array:
    """Mask tokens outside top-k / top-p / min-p with -inf and renormalise (rows: (N, V))."""
    neg_inf = mx.array(-float("inf"), dtype=logprobs.dtype)
    out = logprobs
    vocab = logprobs.shape[-1]
    if 0 < settings.top_k < vocab:
        kth = mx.sort(out, axis=-1)[..., vocab - settings.top_k][..., None]
        out = mx.where(out < kth, neg_inf, out)
    if settings.min_p > 0.0:
        top = mx.max(out, axis=-1, keepdims=True)
        out = mx.where(out < top + mx.log(mx.array(settings.min_p)), neg_inf, out)
    if settings.top_p < 1.0:
        order = mx.argsort(-out, axis=-1)
        sorted_lp = mx.take_along_axis(out, order, axis=-1)
        cum = mx.cumsum(mx.exp(sorted_lp), axis=-1)
        # keep a token while the mass before it is < top_p (always keeps the first)
        keep_sorted = (cum - mx.exp(sorted_lp)) < settings.top_p
        inverse = mx.argsort(order, axis=-1)
        keep = mx.take_along_axis(keep_sorted, inverse, axis=-1)
        out = mx.where(keep, out, neg_inf)
    if out is logprobs:
        return out
    return out - mx.logsumexp(out, axis=-1, keepdims=True)


def entropy(logprobs: mx.array) -> mx.array:
    p = mx.exp(logprobs)
    return -mx.sum(mx.where(p > 0, p * logprobs, 0.0), axis=-1)


def top_alternatives(logprobs: mx.array, k: int) -> tuple[mx.array, mx.array]:
    """Indices and logprobs of the k most likely tokens, best first (rows: (N, V))."""
    vocab = logprobs.shape[-1]
    k = min(k, vocab)
    idx = mx.argpartition(-logprobs, kth=k - 1, axis=-1)[..., :k]
    vals = mx.take_along_axis(logprobs, idx, axis=-1)
    order = mx.argsort(-vals, axis=-1)
    return mx.take_along_axis(idx, order, axis=-1), mx.take_along_axis(vals, order, axis=-1)


@lru_cache(maxsize=32)
def _compiled_records(k: int):
    def records(display: mx.array, chosen: mx.array):
        top_ids, top_lps = top_alternatives(display, k)
        chosen_lp = mx.take_along_axis(display, chosen.reshape(-1, 1), axis=-1)[:, 0]
        return chosen_lp, top_ids, top_lps, entropy(display)

    return mx.compile(records)


def token_records(display: mx.array, chosen: mx.array, k: int):
    """Lazy (chosen logprob, top-k ids, top-k logprobs, entropy) for each row of (N, V)
    display logprobs. Compiled: a step's dozen small ops become one call and fused
    kernels, which is most of what a record costs on a small model."""
    return _compiled_records(k)(display, chosen)


class Sampler:
    """Draws tokens from the sampling distribution with a seeded key stream."""

    def __init__(self, settings: SamplingSettings):
        self.settings = settings
        seed = (
            settings.seed if settings.seed is not None else int.from_bytes(os.urandom(4), "little")
        )
        self._key = mx.random.key(seed)

    def next_key(self) -> mx.array:
        self._key, sub = mx.random.split(self._key)
        return sub

    def sample(self, sampling_logprobs: mx.array) -> mx.array:
        """One token per row (greedy when temperature is 0)."""
        if self.settings.greedy:
            return mx.argmax(sampling_logprobs, axis=-1)
        return mx.random.categorical(sampling_logprobs, axis=-1, key=self.next_key())

    def uniform(self, shape: tuple[int, ...]) -> mx.array:
        return mx.random.uniform(shape=shape, key=self.next_key())
