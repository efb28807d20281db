"""Forward passes of the target model, with its hidden states when asked.

mlx-lm models return logits only. MTP heads need the hidden state the output head
scores (after the final norm), so for those we run the model body and the head
separately. Both paths do the same operations as ``model(x)``, so logits agree.

Block and feature drafters (DFlash, EAGLE-3) read the outputs of chosen decoder
layers instead: ``want_hidden`` is then a tuple of layer indices, and the hidden
returned is those layers' outputs concatenated on the last axis (in that order).
They are captured by wrapping the body's layers for the one call, so any model
whose body runs ``self.layers`` in order works, and the logits are ``model(x)``'s.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


class HiddenStatesUnsupported(Exception):
    pass


def split_model(model: nn.Module):
    """(body, head): body(inputs, cache) -> normed hidden; head(hidden) -> logits."""
    inner = getattr(model, "language_model", None)
    if getattr(model, "model", None) is None and getattr(inner, "model", None) is not None:
        model = inner  # multimodal wrappers (Gemma 4): the language model does the work
    body, head = _body_and_head(model)
    cap = getattr(model, "final_logit_softcapping", None)
    if cap:  # the model's own softcap op, so logits are bit-identical to model(x)
        import sys

        softcap = getattr(sys.modules[type(model).__module__], "logit_softcap", None)
        if softcap is None:

            def softcap(c, x):
                return mx.tanh(x / c) * c

        linear = head

        def head(hidden):
            return softcap(cap, linear(hidden))

    return body, head


def _body_and_head(model: nn.Module):
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


Want = bool | tuple[int, ...]  # False, True (final-normed), or layer indices


def forward(
    model: nn.Module, inputs: mx.array, cache: list, want_hidden: Want
) -> tuple[mx.array, mx.array | None]:
    """Logits (1, T, V) for inputs (1, T); hidden (1, T, H) too when wanted
    ((1, T, len(layers) * H) for a tuple of layers)."""
    if not want_hidden:
        return model(inputs, cache=cache), None
    if isinstance(want_hidden, tuple):
        with capture_layers(model, want_hidden) as taps:
            logits = model(inputs, cache=cache)
        return logits, taps.hidden()
    body, head = split_model(model)
    hidden = body(inputs, cache=cache)
    return head(hidden), hidden


def prefill_chunk(
    model: nn.Module, inputs: mx.array, cache: list, want_hidden: Want
) -> mx.array | None:
    """Advance the cache over inputs without computing logits; hidden if wanted."""
    if isinstance(want_hidden, tuple) and want_hidden:
        body = layer_owner(model)
        with capture_layers(model, want_hidden) as taps:
            body(inputs, cache=cache)  # the head never runs: its output is unused
        return taps.hidden()
    try:
        body, _ = split_model(model)
    except HiddenStatesUnsupported:
        body = None
    if body is not None:
        hidden = body(inputs, cache=cache)
        return hidden if want_hidden else None
    # Unknown layout: the full forward is lazy, so unused logits are never computed
    # unless something evaluates them; we only evaluate the cache.
    model(inputs, cache=cache)
    return None


# -- capturing the outputs of chosen layers


def layer_owner(model: nn.Module) -> nn.Module:
    """The module whose ``layers`` list runs the decoder blocks (mlx-lm's body)."""
    for path in (("model",), ("language_model", "model"), ("backbone",), ()):
        m = model
        for name in path:
            m = getattr(m, name, None)
        if m is not None and isinstance(getattr(m, "layers", None), list):
            return m
    raise HiddenStatesUnsupported(f"{type(model).__module__} has no list of decoder layers")


def num_layers(model: nn.Module) -> int:
    return len(layer_owner(model).layers)


class _Taps:
    def __init__(self, layers: tuple[int, ...]):
        self.layers = layers
        self.out: dict[int, mx.array] = {}

    def hidden(self) -> mx.array:
        missing = [i for i in self.layers if i not in self.out]
        if missing:
            raise HiddenStatesUnsupported(f"layers {missing} did not run")
        return mx.concatenate([self.out[i] for i in self.layers], axis=-1)


class _Tap:
    """A decoder layer that records its output hidden state; otherwise the layer."""

    def __init__(self, layer, index: int, taps: _Taps):
        self._layer, self._index, self._taps = layer, index, taps

    def __call__(self, *args, **kwargs):
        out = self._layer(*args, **kwargs)
        self._taps.out[self._index] = out[0] if isinstance(out, tuple) else out
        return out

    def __getattr__(self, name):
        return getattr(self._layer, name)


class capture_layers:
    """``with capture_layers(model, (3, 7)) as taps: model(x)`` -> ``taps.hidden()``."""

    def __init__(self, model: nn.Module, layers: tuple[int, ...]):
        self.owner = layer_owner(model)
        n = len(self.owner.layers)
        if any(i < 0 or i >= n for i in layers):
            raise HiddenStatesUnsupported(f"layers {list(layers)} outside the model's {n}")
        self.taps = _Taps(tuple(layers))

    def __enter__(self) -> _Taps:
        self.saved = self.owner.layers
        wanted = set(self.taps.layers)
        self.owner.layers = [
            _Tap(layer, i, self.taps) if i in wanted else layer
            for i, layer in enumerate(self.saved)
        ]
        return self.taps

    def __exit__(self, *exc) -> None:
        self.owner.layers = self.saved
