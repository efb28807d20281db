"""A DeepSeek-V4 target: mlx-vlm's model, seen by the engine as body + head.

The body returns the hyper-connection streams after the last layer, flattened to
(B, T, hc_mult * H): the tensor V4's MTP block reads. The head collapses them
(``hc_head``), applies the final norm and the output head — the same operations, in
the same order, as mlx-vlm's own forward, so logits agree bit for bit. A DSpark
drafter asks for taps (``add_taps``): the mean over the streams after those layers,
appended to the body's output after the streams.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from engine.errors import ModelLoadError


class V4Body(nn.Module):
    def __init__(self, language_model: nn.Module):
        super().__init__()
        self.lm = language_model
        object.__setattr__(self, "taps", ())
        args = language_model.args
        object.__setattr__(self, "stream_width", args.hc_mult * args.hidden_size)

    def add_taps(self, layer_ids) -> None:
        object.__setattr__(self, "taps", tuple(sorted(set(self.taps) | set(layer_ids))))

    def __call__(self, inputs: mx.array, cache=None) -> mx.array:
        sink = [] if self.taps else None
        h = self.lm.model(
            inputs,
            cache=cache,
            skip_final_norm=True,
            capture_layer_ids=list(self.taps) or None,
            capture_sink=sink,
        )
        flat = h.reshape(*h.shape[:2], -1)
        return mx.concatenate([flat, *sink], axis=-1) if sink else flat

    def head(self, hidden: mx.array) -> mx.array:
        return self.lm.logits_from_hidden(hidden[..., : self.stream_width])

    def tapped(self, hidden: mx.array, layer_ids) -> mx.array:
        """The taps of ``layer_ids`` (in that order) out of the body's output."""
        h = self.lm.args.hidden_size
        start = self.stream_width
        parts = [hidden[..., start + self.taps.index(i) * h :][..., :h] for i in layer_ids]
        return mx.concatenate(parts, axis=-1)


class V4Target(nn.Module):
    """What the engine holds as ``loaded.model`` for a DeepSeek-V4 checkpoint."""

    def __init__(self, vlm_model: nn.Module):
        super().__init__()
        self.model = V4Body(vlm_model.language_model)
        object.__setattr__(self, "lm_head", self.model.head)

    @property
    def language_model(self) -> nn.Module:
        return self.model.lm

    def __call__(self, inputs: mx.array, cache=None) -> mx.array:
        return self.model.head(self.model(inputs, cache=cache))

    def make_cache(self) -> list:
        return self.model.lm.make_cache()


def load(path: Path) -> nn.Module:
    """mlx-vlm's loader (sanitize: DeepSeek's naming or an mlx-vlm conversion,
    quantized or not; the ``mtp.*`` block is left out), wrapped."""
    try:
        from mlx_vlm.utils import load_model
    except ImportError as e:
        raise ModelLoadError(
            f"{path.name}: DeepSeek-V4 models need mlx-vlm ({e}); "
            "run tools/bootstrap.sh again to install it"
        ) from None
    try:
        model = load_model(Path(path), lazy=False)
    except (RuntimeError, OSError) as e:
        raise ModelLoadError(
            f"{path.name}: could not read the weights ({str(e).splitlines()[0]}); "
            "the files may be corrupted — delete and download again"
        ) from None
    except Exception as e:  # ValueError from strict loading, KeyError from a bad config
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelLoadError(
            f"{path.name}: weights do not match the DeepSeek-V4 config "
            f"({type(e).__name__}: {first[:300]})"
        ) from None
    return V4Target(model)
