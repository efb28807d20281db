"""Running one generation on the engine thread's Generation directly, and checking
the target cache it leaves behind against plain decoding and a fresh run."""

from __future__ import annotations

import threading

import mlx.core as mx

from engine.chat import Prompt
from engine.drafters.policy import DraftLengthPolicy
from engine.generate import Generation
from engine.settings import SamplingSettings
from engine.target import forward


def generate(
    loaded, prompt: str, drafter=None, k: int = 3, adaptive: bool = False, max_tokens: int = 24
) -> Generation:
    """A finished Generation (``.finished`` set) of ``prompt`` as raw text, greedy."""
    ids = tuple(loaded.tokenizer.encode(prompt))
    policy = DraftLengthPolicy(k=k, adaptive=adaptive) if drafter else None
    settings = SamplingSettings(max_tokens=max_tokens, max_loop_count=0)
    gen = Generation(
        "test", loaded, Prompt(ids, prompt, False), settings, lambda e: None, threading.Event(),
        drafter=drafter, policy=policy,
    )  # fmt: skip
    gen.finished = gen.run()
    return gen


def next_token_logits(loaded, plain: Generation, spec: Generation):
    """Next-token logits after prompt + plain's reply + one more token, from plain's
    cache, from spec's cache (each fed what it has not seen yet) and from a fresh run.
    Both caches must hold a prefix of that sequence."""
    full = list(plain.prompt.token_ids) + list(plain.finished.token_ids) + [7]
    rows = []
    for gen in (plain, spec):
        assert gen.cache_tokens == full[: len(gen.cache_tokens)]
        rest = mx.array(full[len(gen.cache_tokens) :])[None]
        logits, _ = forward(loaded.model, rest, gen.cache, False)
        rows.append(logits[0, -1])
    fresh, _ = forward(loaded.model, mx.array(full)[None], None, False)
    return rows[0], rows[1], fresh[0, -1]
