"""The trainable MTP head: the engine's own ``MTPHead`` plus what training adds.

The module is the drafter's (engine/drafters/mtp/head.py), so a trained head loads
into exactly the class that runs it. Training adds: initialisation from the target
(block = a copy of the target's last layer, output norm = the target's final norm),
a reduced draft vocabulary, and a whole-sequence forward for depth 1 and depth 2.

Depth 2 is the head chained on its own output, as the drafter does for the second
draft: at position i+1 it reads its depth-1 output at i and token t_{i+2}, and
attends to the depth-1 keys of positions <= i plus its own. One extra pass over
the window trains that ("training-time test"), so k > 1 drafts stay useful.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from engine.drafters.mtp.families import build_block, family_name, text_config
from engine.drafters.mtp.head import MTPHead
from engine.target import split_model

# Target config fields a decoder block is built from, copied into the decoder repo.
BLOCK_FIELDS = (
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "rope_traditional",
    "max_position_embeddings",
    "attention_bias",
    "mlp_bias",
    "hidden_act",
    "vocab_size",
    "tie_word_embeddings",
)


def block_config(target_config: dict) -> dict:
    cfg = text_config(target_config)
    out = {k: cfg[k] for k in BLOCK_FIELDS if k in cfg}
    out["num_hidden_layers"] = 1
    return out


def new_head(target_config: dict) -> MTPHead:
    cfg = block_config(target_config)
    family = family_name(target_config)
    return MTPHead(
        int(cfg["hidden_size"]),
        float(cfg.get("rms_norm_eps", 1e-6)),
        [build_block(family, cfg, moe=False)],
        hidden_first=False,
        family=family,
    )


def init_head(
    head: MTPHead, model: nn.Module, how: str = "target", sample: list[int] | None = None
) -> None:
    """Initialise the head's weights (call after seeding mx.random).

    - ``target``: block <- the target's last decoder layer, output norm <- its final
      norm, eh_proj <- s * [I/2 | I], s chosen so the block's input has the scale of
      the residual stream that layer normally reads (measured on ``sample`` tokens):
      unscaled, its updates swamp the unit-scale input and training starts far worse.
    - ``random``: mlx's default initialisation (about as good after 60 steps).
    - a decoder folder this module exported before: continue from its weights
      (retraining an existing decoder on more data).
    """
    from pathlib import Path

    if how not in ("target", "random") and (Path(how) / "model.safetensors").is_file():
        weights = dict(mx.load(str(Path(how) / "model.safetensors")).items())
        weights.pop("draft_vocab_ids", None)
        head.load_weights(list(weights.items()), strict=True)
        head.set_dtype(mx.float32)
        mx.eval(head.parameters())
        return
    if how == "random":
        head.set_dtype(mx.float32)
        mx.eval(head.parameters())
        return
    if how != "target":
        raise ValueError(f"unknown head initialisation {how!r}")
    body, _ = split_model(model)
    last = dict(tree_flatten(body.layers[-1].parameters()))
    head.layers[0].load_weights(list(last.items()), strict=True)
    head.norm.weight = mx.array(body.norm.weight)
    size = head.enorm.weight.shape[0]
    eye = mx.eye(size)
    noise = 0.01 * mx.random.normal((size, 2 * size))
    base = mx.concatenate([0.5 * eye, eye], axis=1) + noise
    head.eh_proj.weight = _residual_scale(body, sample or list(range(64))) / 1.12 * base
    head.set_dtype(mx.float32)
    mx.eval(head.parameters())


def _residual_scale(body: nn.Module, sample: list[int]) -> float:
    """RMS of the residual stream entering the target's last layer."""
    from mlx_lm.models.base import create_attention_mask

    x = body.embed_tokens(mx.array(sample[:256])[None])
    mask = create_attention_mask(x, None)
    for layer in body.layers[:-1]:
        x = layer(x, mask, None)
    x = x.astype(mx.float32)
    return float(mx.sqrt(mx.mean(x * x)).item())


def draft_rows(model: nn.Module, draft_ids: np.ndarray) -> mx.array:
    """Rows (Vd, H) of the target's output head for the draft vocabulary (frozen)."""
    from engine.drafters.mtp.loader import _head_rows

    body, _ = split_model(model)
    rows = _head_rows(model, body, mx.array(draft_ids.astype(np.int32)))
    return rows.astype(mx.float32)


class _Window:
    """A cache stand-in for whole-window training: no state kept between calls.

    ``prefix`` (keys, values) are the depth-1 keys a depth-2 pass attends to;
    query j (position j + 1) sees prefix positions <= j and its own key only.
    """

    def __init__(self, prefix: tuple[mx.array, mx.array] | None = None):
        self.prefix = prefix
        self.offset = 0 if prefix is None else 1
        self.seen: tuple[mx.array, mx.array] | None = None

    def update_and_fetch(self, keys: mx.array, values: mx.array):
        self.seen = (keys, values)
        if self.prefix is None:
            return keys, values
        pk, pv = self.prefix
        return mx.concatenate([pk, keys], axis=2), mx.concatenate([pv, values], axis=2)

    def make_mask(self, n: int, return_array: bool = False, window_size=None) -> mx.array:
        idx = mx.arange(n)
        causal = idx[:, None] >= idx[None, :]
        if self.prefix is None:
            return causal
        own = idx[:, None] == idx[None, :]
        return mx.concatenate([causal, own], axis=1)


def forward_depths(
    head: MTPHead, embed, hidden: mx.array, next_tokens: mx.array, depths: int
) -> list[mx.array]:
    """Normed head outputs (B, T, H) for depth 1 (and 2).

    hidden[:, i] = h_i, next_tokens[:, i] = t_{i+1}. Depth-1 output i predicts
    t_{i+2}; depth-2 output j (fed t_{j+2}) predicts t_{j+3}.
    """
    first = _Window()
    out1 = head(embed(next_tokens), hidden, [first])
    outs = [out1]
    if depths >= 2:
        keys, values = first.seen
        second = _Window((keys, values))
        tokens2 = mx.concatenate([next_tokens[:, 1:], next_tokens[:, -1:]], axis=1)
        outs.append(head(embed(tokens2), out1, [second]))
    return outs
