"""Running one generation on the engine thread's Generation directly, checking the
target cache it leaves behind against plain decoding and a fresh run, and comparing
sampled output distributions with and without a drafter."""

from __future__ import annotations

import threading
from collections import Counter

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


def first_tokens(
    loaded,
    prompt: str,
    make_drafter,
    runs: int,
    temperature: float,
    seed0: int = 1000,
    sampled: bool = True,
    n: int = 2,
) -> Counter:
    """How often each sequence of the first ``n`` tokens comes out over ``runs`` seeds;
    ``make_drafter()`` gives a fresh drafter per run (None: plain decoding)."""
    ids = tuple(loaded.tokenizer.encode(prompt))
    counts: Counter = Counter()
    for i in range(runs):
        s = SamplingSettings(
            temperature=temperature, seed=seed0 + i, max_tokens=n, max_loop_count=0
        )
        drafter = make_drafter()
        policy = DraftLengthPolicy(k=3, adaptive=False) if drafter else None
        gen = Generation(
            f"d{i}", loaded, Prompt(ids, prompt, False), s, lambda e: None, threading.Event(),
            drafter=drafter, policy=policy, sampled_drafts=sampled,
        )  # fmt: skip
        counts[gen.run().token_ids[:n]] += 1
    return counts


def total_variation(a: Counter, b: Counter, n: int, min_count: int = 8) -> float:
    """Total-variation distance over outcomes seen often enough; the rare tail is
    pooled into one bucket so sparse sampling noise does not dominate."""
    pooled = a + b
    common = {k for k, c in pooled.items() if c >= min_count}

    def bucket(c: Counter) -> dict:
        d = {k: c[k] for k in common}
        d["rest"] = sum(v for k, v in c.items() if k not in common)
        return d

    ba, bb = bucket(a), bucket(b)
    return 0.5 * sum(abs(ba[k] - bb[k]) / n for k in ba)
