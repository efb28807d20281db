"""The one extension point for speculation.

A drafter proposes up to k next tokens cheaply; the target verifies them in one
forward pass (engine/generate.py, the only verification loop); the drafter is then
told what was verified so it can resync its own state. Engine thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import mlx.core as mx

from engine.sampling import tempered_logprobs


@dataclass
class DraftSampling:
    """How a drafter draws when the request samples: from its own distribution at the
    request's temperature. ``draw`` returns the tokens and the log-distribution ``q``
    they were drawn from, which the loop's acceptance rule needs (min(1, p/q))."""

    temperature: float
    next_key: Callable[[], mx.array]  # the request's seeded key stream

    def draw(self, logits: mx.array) -> tuple[mx.array, mx.array]:
        """logits (..., V) -> (token ids (...), log q (..., V))."""
        lq = tempered_logprobs(logits, self.temperature)
        return mx.random.categorical(lq, axis=-1, key=self.next_key()), lq


class Drafter(Protocol):
    name: str  # shown to users: "MTP (deepseek_v3)", "Prompt lookup", a draft model id
    needs_hidden: bool  # wants the target's final-normed hidden states
    # Optional: ``hidden_layers`` (tuple of layer indices): with needs_hidden, the
    # ``hidden`` passed to begin/commit is those layers' outputs concatenated on the
    # last axis instead (DFlash, EAGLE-3). ``max_draft_tokens``: the most it proposes
    # a round (a block drafter's block); adaptive k grows up to it.

    def begin(self, prompt_ids: list[int], hidden: mx.array | None, reused: int) -> None:
        """The target has processed the prompt.

        ``hidden`` (when needs_hidden) holds the target's hidden states for
        prompt positions ``reused..len(prompt_ids)-1``; positions before ``reused``
        came from a prompt cache.
        """

    def propose(self, last_token: int, k: int) -> list[int] | mx.array:
        """Up to k draft tokens to follow ``last_token`` (which the target has not seen):
        a list, or a lazy (n,) array of ids that the loop reads only after it has queued
        the verification pass, so the drafter's work overlaps building that pass."""

    def draft_logprobs(self) -> mx.array | None:
        """Per-draft log-distributions (k, V) the last proposal was drawn from, or None
        for greedy drafts. A drafter that can sample has a ``sampling`` attribute
        (DraftSampling | None), set by the loop before ``begin``; None means greedy."""

    def commit(self, verified: list[int], next_token: int, hidden: mx.array | None) -> None:
        """After verification: ``verified`` = [last_token, accepted drafts...] now sit in the
        target cache; ``next_token`` is the bonus/corrected token that follows them.
        ``hidden`` (when needs_hidden) has the target's hidden states at the verified
        positions, shape (len(verified), H)."""

    def memory_bytes(self) -> int:
        """Extra memory the drafter holds (weights and caches)."""

    def close(self) -> None:
        """Free caches."""


def draft_ids(proposal: list[int] | mx.array) -> list[int]:
    """A proposal as a list of ids (reading a lazy one waits for it)."""
    return proposal if isinstance(proposal, list) else proposal.tolist()
