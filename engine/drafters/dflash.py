"""DFlashDrafter: a block drafter (DFlash, DFlash2) behind the one verification loop.

The drafter reads the outputs of a few target layers (``hidden_layers``, its
``target_layer_ids``) as context, and proposes a whole block at once: one pass over
[last token, mask x k] gives k drafts (k up to ``block_size - 1``). Its cache holds
context keys and values of verified positions only (the block's own keys are never
stored), so nothing is rolled back: ``commit`` queues the verified positions' layer
outputs as the next round's new context. DFlash2 picks its drafts with a candidate
selector along the block; it drafts greedily (the loop's one-hot rule keeps sampling
exact). Engine thread only.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from engine.drafters.base import DraftSampling
from engine.drafters.kinds import LABELS, dflash_layers
from engine.drafters.vlm_load import cached, load_weights, read_weights, vlm_module
from engine.errors import DecoderError
from engine.target import HiddenStatesUnsupported, num_layers


class DFlashDrafter:
    needs_hidden = True

    def __init__(self, model, label: str, fmt: str):
        """``model``: an mlx-vlm DFlashDraftModel (or DFlash2) bound to the target."""
        self.model = model
        self.fmt = fmt
        self.name = f"{LABELS[fmt].split(' ')[0]} ({label})"
        cfg = model.config
        self.hidden_layers = tuple(sorted(int(i) for i in cfg.target_layer_ids))
        self.block_size = int(cfg.block_size)
        self.max_draft_tokens = self.block_size - 1
        self.mask_id = int(cfg.mask_token_id)
        self.cache = model.make_cache()
        self._context: mx.array | None = None  # (1, T, D) verified, not yet in the cache
        self.sampling: DraftSampling | None = None  # set by the loop per request
        self._lq: mx.array | None = None
        self._weights = sum(p.nbytes for p in _leaves(model.parameters()))

    def _add_context(self, hidden: mx.array | None) -> None:
        if hidden is None or hidden.shape[-2] == 0:
            return
        hidden = hidden[None] if hidden.ndim == 2 else hidden
        self._context = (
            hidden if self._context is None else mx.concatenate([self._context, hidden], 1)
        )

    def begin(self, prompt_ids, hidden, reused) -> None:
        """The prompt's layer outputs become the first context. Positions before
        ``reused`` (a prompt cache) have none: the drafter sees less, the output
        does not change."""
        self.close()
        if hidden is None:
            raise ValueError("DFlashDrafter needs the target's layer outputs")
        self._add_context(hidden)

    def propose(self, last_token: int, k: int) -> list[int] | mx.array:
        k = min(k, self.max_draft_tokens)
        if k <= 0 or self._context is None:
            return []
        context, self._context = self._context, None
        self._lq = None
        if self.sampling is not None and self.fmt == "dflash":
            drafts = self.model.draft_block(
                last_token, context, self.cache, k + 1, self._draw, mx.int32
            )
        else:
            drafts = self.model.draft_block(
                last_token, context, self.cache, k + 1, _argmax, mx.int32
            )
        return drafts[0]

    def _draw(self, logits: mx.array) -> mx.array:
        tokens, lq = self.sampling.draw(logits)
        self._lq = lq[0]
        return tokens

    def draft_logprobs(self) -> mx.array | None:
        """Each position's log-distribution when drafts were sampled (positions are
        drawn independently given the context), else None (greedy)."""
        return self._lq

    def commit(self, verified, next_token, hidden) -> None:
        self._add_context(hidden)
        if self._context is not None:
            mx.async_eval(self._context)

    def memory_bytes(self) -> int:
        kv = [getattr(c, name, None) for c in self.cache for name in ("keys", "values")]
        return self._weights + sum(a.nbytes for a in kv if a is not None)

    def close(self) -> None:
        self.cache = self.model.make_cache()
        self._context = None
        self._lq = None


def _argmax(logits: mx.array) -> mx.array:
    return mx.argmax(logits, axis=-1)


def _leaves(tree) -> list[mx.array]:
    if isinstance(tree, mx.array):
        return [tree]
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, (list, tuple)):
        return [a for t in tree for a in _leaves(t)]
    return []


# -- loading


def load_dflash(loaded, folder: Path, fmt: str) -> DFlashDrafter:
    """A DFlash/DFlash2 drafter for ``loaded`` from a published repo (DecoderError if not)."""
    from engine.drafters.mtp.sources import read_json

    config = read_json(folder / "config.json")
    target_type = str(loaded.config.get("model_type") or "")

    def build():
        module = vlm_module(fmt, target_type)
        where = folder.name
        try:
            cfg = module.ModelConfig.from_dict(config)
            model = module.Model(cfg)
        except Exception as e:  # a config the class cannot take
            raise DecoderError(f"{where}: not a valid {LABELS[fmt]} config ({e})") from None
        weights = model.sanitize(read_weights(folder))
        weights.pop("embed_tokens.weight", None)  # the target's embeddings are used
        model.embed_tokens = None
        load_weights(model, weights, where, config, loaded.dtype)
        _check_target(model, loaded, where)
        _bind(model, loaded.model, fmt)
        return model

    model = cached(loaded, f"{fmt}:{folder.resolve()}", build)
    return DFlashDrafter(model, folder.name, fmt)


def _check_target(model, loaded, where: str) -> None:
    cfg = model.config
    try:
        n = num_layers(loaded.model)
    except HiddenStatesUnsupported as e:
        raise DecoderError(f"{where}: cannot read {loaded.path.name}'s layers ({e})") from None
    ids, want = dflash_layers({"target_layer_ids": list(cfg.target_layer_ids)})
    if max(ids) >= n:
        raise DecoderError(f"{where}: reads target layer {max(ids)}, the model has {n} layers")
    want = int(getattr(cfg, "num_target_layers", 0) or 0)
    if want and want != n:
        raise DecoderError(f"{where}: made for a target with {want} layers, the model has {n}")


def _bind(model, target, fmt: str) -> None:
    """The target's embeddings and output head (DFlash2's own ``bind`` also insists
    on mlx-vlm's verifier hooks, which our loop does not need)."""
    base = type(model).__mro__[1] if fmt == "dflash2" else type(model)
    base.bind(model, target)
