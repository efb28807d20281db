"""Gemma4AssistantDrafter: Gemma 4 "assistant" drafter repos behind the one loop.

An assistant has no KV cache of its own: each draft step attends to the target's
keys and values (the last full-attention and the last sliding-attention layer that
hold a cache, which Gemma 4's KV-shared layers reuse too), at the position of the
last token the target has seen. Its input is [target embedding of the token, the
previous hidden]: the target's final-normed hidden at that position for the first
step, its own projected output after that. So ``propose`` reads the target cache
(the loop hands it over as ``target_cache``; it holds exactly the verified tokens
then) and ``commit`` keeps the last verified position's hidden. mlx-vlm's
Gemma4AssistantDraftModel does the drafting. Engine thread only.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
from mlx_lm.models.cache import RotatingKVCache

from engine.drafters.base import DraftSampling
from engine.drafters.vlm_load import cached, load_weights, read_weights, vlm_module
from engine.errors import DecoderError

DEFAULT_MAX_DRAFTS = 4  # what the published assistants are tuned for (block_size 4)


class Gemma4AssistantDrafter:
    needs_hidden = True  # the final-normed hidden (the loop's default)

    def __init__(self, model, label: str, layer_types: list[str]):
        self.model = model
        self.name = f"Gemma 4 assistant ({label})"
        self.layer_types = layer_types
        # It chains step by step, so any k works; adaptive k grows to its block at least.
        block = int(getattr(model.config, "block_size", 0) or 0)
        self.max_draft_tokens = max(block - 1, DEFAULT_MAX_DRAFTS)
        self.target_cache: list | None = None  # set by the loop before begin
        self.sampling: DraftSampling | None = None  # set by the loop per request
        self._hidden: mx.array | None = None  # (1, 1, H) at the last cached position
        self._lqs: list[mx.array] = []
        self._weights = sum(v.nbytes for _, v in _flat(model.parameters()))

    def begin(self, prompt_ids, hidden, reused) -> None:
        if hidden is None:
            raise ValueError("the Gemma 4 assistant needs the target's hidden states")
        self._hidden = _last(hidden)

    def propose(self, last_token: int, k: int) -> list[int] | mx.array:
        if k <= 0 or self._hidden is None or self.target_cache is None:
            return []
        kv, offset = shared_kv(self.target_cache, self.layer_types)
        if not kv:
            return []
        self.model.set_shared_kv(kv, offset, position=max(offset - 1, 0), kv_valid_len=offset)
        self._lqs = []
        sampler = _argmax if self.sampling is None else self._draw
        drafts = self.model.draft_block(last_token, self._hidden, None, k + 1, sampler, mx.int32)
        return drafts[0]

    def _draw(self, logits: mx.array) -> mx.array:
        tokens, lq = self.sampling.draw(logits)
        self._lqs.append(lq.reshape(-1, lq.shape[-1])[0])
        return tokens

    def draft_logprobs(self) -> mx.array | None:
        return mx.stack(self._lqs) if self._lqs else None

    def commit(self, verified, next_token, hidden) -> None:
        self._hidden = _last(hidden)

    def memory_bytes(self) -> int:
        return self._weights  # no cache of its own

    def close(self) -> None:
        self._hidden = None
        self._lqs = []
        self.model._shared_kv = None


def shared_kv(cache: list, layer_types: list[str]) -> tuple[dict, int]:
    """{layer type: (keys, values)} of the last cached layer of each attention type,
    in temporal order, and the number of tokens the cache holds."""
    out: dict = {}
    offset = 0
    for layer_type, c in zip(layer_types, cache, strict=False):
        if c is None or getattr(c, "keys", None) is None:
            continue
        keys, values = c.state[:2]
        if isinstance(c, RotatingKVCache):  # a ring buffer: oldest first
            keys, values = c._temporal_order(keys), c._temporal_order(values)
        out[layer_type] = (keys, values)
        offset = max(offset, int(c.offset))
    return out, offset


def _last(hidden: mx.array) -> mx.array:
    return hidden.reshape(-1, hidden.shape[-1])[-1:][None]


def _argmax(logits: mx.array) -> mx.array:
    return mx.argmax(logits, axis=-1)


def _flat(tree):
    from mlx.utils import tree_flatten

    return tree_flatten(tree)


# -- loading


def load_assistant(loaded, folder: Path) -> Gemma4AssistantDrafter:
    """A Gemma 4 assistant for ``loaded`` (a gemma4 model) from its published repo."""
    from engine.drafters.mtp.sources import read_json

    config = read_json(folder / "config.json")
    layer_types = _target_layer_types(loaded)

    def build():
        module = vlm_module("assistant")
        where = folder.name
        try:
            model = module.Model(module.ModelConfig.from_dict(config))
        except Exception as e:
            raise DecoderError(f"{where}: not a valid Gemma 4 assistant config ({e})") from None
        weights = model.sanitize(read_weights(folder))
        load_weights(model, weights, where, config, loaded.dtype)
        model.bind(loaded.model)
        if model._input_embed is None:
            raise DecoderError(f"{where}: {loaded.path.name} has no token embeddings to share")
        model.config.target_layer_types = layer_types
        return model

    model = cached(loaded, f"assistant:{folder.resolve()}", build)
    return Gemma4AssistantDrafter(model, folder.name, layer_types)


def _target_layer_types(loaded) -> list[str]:
    lm = getattr(loaded.model, "language_model", loaded.model)
    args = getattr(lm, "args", None) or getattr(lm, "config", None)
    types = list(getattr(args, "layer_types", None) or [])
    if not types:
        raise DecoderError(
            f"{loaded.path.name} is not a Gemma 4 model (no attention layer types): "
            "Gemma 4 assistants draft for gemma4 models"
        )
    return types
