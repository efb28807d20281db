"""Forward passes of the target model, with its final hidden states when asked.

mlx-lm models return logits only. MTP heads need the hidden state the output head
scores (after the final norm), so for those we run the model body and the head
separately. Both paths do the same operations as ``model(x)``, so logits agree.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


class HiddenStatesUnsupported(Exception):
    pass


def split_model(model: nn.Module):
    """(body, head): body(inputs, cache) -> normed hidden; head(hidden) -> logits."""
    body = getattr(model, "model", None)
    if body is None:
        raise HiddenStatesUnsupported(f"{type(model).__module__} has no .model body")
    head = getattr(model, "lm_head", None)
    if head is None:  # multimodal wrappers (Qwen3.5) keep it on their language model
        head = getattr(getattr(model, "language_model", None), "lm_head", None)
    if head is None:
        embed = getattr(body, "embed_tokens", None)
        if embed is None:
            raise HiddenStatesUnsupported(f"{type(model).__module__}: no lm_head or embed_tokens")
        head = embed.as_linear
    return body, head


def forward(
    model: nn.Module, inputs: mx.array, cache: list, want_hidden: bool
) -> tuple[mx.array, mx.array | None]:
    """Logits (1, T, V) for inputs (1, T); hidden (1, T, H) too when wanted."""
    if not want_hidden:
        return model(inputs, cache=cache), None
    body, head = split_model(model)
    hidden = body(inputs, cache=cache)
    return head(hidden), hidden


def prefill_chunk(
    model: nn.Module, inputs: mx.array, cache: list, want_hidden: bool
) -> mx.array | None:
    """Advance the cache over inputs without computing logits; hidden if wanted."""
    body = getattr(model, "model", None)
    if body is not None:
        hidden = body(inputs, cache=cache)
        return hidden if want_hidden else None
    # Unknown layout: the full forward is lazy, so unused logits are never computed
    # unless something evaluates them; we only evaluate the cache.
    model(inputs, cache=cache)
    return None
