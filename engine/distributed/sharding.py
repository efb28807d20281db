"""Each rank's part of a model: tensor-parallel via mlx-lm's ``shard()``, or pipeline.

Tensor parallel (families with ``Model.shard``: llama, qwen2/3, qwen3-moe,
deepseek-v2/v3, glm4-moe, ...): every rank holds a slice of every layer, and the
``all_sum`` inside each layer leaves the full hidden state on every rank.

Pipeline (any family whose body is ``model.model.layers`` with plain KV caches or
recurrent ``ArraysCache`` layers):
rank r runs a contiguous block of layers; as in mlx-lm, rank 0 gets the *last*
block so the final hidden state (and with it the output head, sampling and any
MTP head) lives with rank 0. Layers a rank does not run are replaced by
``_Skipped`` stand-ins that only advance a weightless ``GhostCache``, so layer
indices, masks and cache offsets stay exactly as in the single-process model.

Weights are read lazily: a rank only reads what its part needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from mlx_lm.models.cache import ArraysCache, KVCache

from engine.errors import ModelLoadError

_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
# Config sizes that tensor parallelism splits evenly across ranks.
_SPLIT_KEYS = (
    "num_attention_heads",
    "intermediate_size",
    "linear_num_key_heads",
    "linear_num_value_heads",
)
# Families whose mlx-lm shard() repeats KV heads when there are fewer than ranks.
_REPEATS_KV = ("qwen3_5",)


@dataclass(frozen=True)
class ShardPlan:
    mode: str  # "tensor" | "pipeline"
    rank: int
    size: int
    dtype: str  # "native" or a dtype name: the same on every rank
    blocks: tuple[tuple[int, int], ...] = ()  # pipeline: [start, end) layers per rank

    @property
    def owned(self) -> tuple[int, int]:
        return self.blocks[self.rank] if self.blocks else (0, 0)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "dtype": self.dtype, "blocks": [list(b) for b in self.blocks]}

    @classmethod
    def from_dict(cls, d: dict, rank: int, size: int) -> ShardPlan:
        blocks = tuple(tuple(b) for b in d.get("blocks", ()))
        return cls(d["mode"], rank, size, d["dtype"], blocks)


def lazy_model(path: Path) -> nn.Module:
    """The model with its weights mapped but not read."""
    from mlx_lm.utils import load_model

    try:
        model, _ = load_model(path, lazy=True)
    except ValueError as e:
        raise ModelLoadError(f"{path.name}: {str(e).splitlines()[0]}") from None
    except Exception as e:
        raise ModelLoadError(f"{path.name}: could not build the model ({e})") from None
    return model


def body_owner(model: nn.Module) -> nn.Module:
    """The module whose ``.model`` attribute is the body (a multimodal wrapper such
    as Qwen3.5's only exposes its language model's body through a property)."""
    language = getattr(model, "language_model", None)
    if isinstance(language, nn.Module) and "model" in language:
        return language
    return model


def body_layers(model: nn.Module) -> list | None:
    body = getattr(model, "model", None)
    layers = getattr(body, "layers", None) if body is not None else None
    return layers if isinstance(layers, list) else None


def _head_owner(model: nn.Module) -> nn.Module | None:
    for owner in (model, getattr(model, "language_model", None)):
        if isinstance(owner, nn.Module) and isinstance(owner.get("lm_head"), nn.Module):
            return owner
    return None


def choose_mode(model: nn.Module, config: dict, size: int, wanted: str) -> tuple[str, str]:
    """("tensor" | "pipeline", why). Raises ModelLoadError when wanted is impossible."""
    tensor_why = _tensor_blocker(model, config, size)
    pipeline_why = _pipeline_blocker(model, size)
    if wanted == "tensor" or (wanted == "auto" and tensor_why is None):
        if tensor_why is not None:
            raise ModelLoadError(f"tensor parallel over {size} ranks is not possible: {tensor_why}")
        return "tensor", "mlx-lm shard()"
    if pipeline_why is not None:
        extra = f"; tensor parallel: {tensor_why}" if tensor_why else ""
        raise ModelLoadError(f"cannot split this model over {size} ranks: {pipeline_why}{extra}")
    return "pipeline", tensor_why or "asked for"


def _tensor_blocker(model: nn.Module, config: dict, size: int) -> str | None:
    if not hasattr(model, "shard"):
        return f"mlx-lm has no shard() for {config.get('model_type')!r}"
    cfg = {**config, **config.get("text_config", {})}
    for key in _SPLIT_KEYS:
        value = cfg.get(key)
        if isinstance(value, int) and value % size:
            return f"{key}={value} does not divide by {size}"
    kv = cfg.get("num_key_value_heads")
    if isinstance(kv, int) and kv % size:
        repeats = str(config.get("model_type", "")).startswith(_REPEATS_KV)
        if not (repeats and size % kv == 0):
            return f"num_key_value_heads={kv} does not divide by {size}"
    owner = _head_owner(model)
    vocab = cfg.get("vocab_size")
    splits_head = owner is not None and hasattr(owner, "sharding_group")
    if splits_head and isinstance(vocab, int) and vocab % size:  # split by vocabulary
        return f"vocab_size={vocab} does not divide by {size}"
    return None


def _pipeline_blocker(model: nn.Module, size: int) -> str | None:
    layers = body_layers(model)
    if layers is None:
        return "its layers are not at model.model.layers"
    if len(layers) < size:
        return f"it has {len(layers)} layers for {size} ranks"
    caches = model.make_cache() if hasattr(model, "make_cache") else [KVCache() for _ in layers]
    odd = {type(c).__name__ for c in caches if not _splittable(c)}
    if odd:
        return f"pipeline needs plain KV or recurrent caches; it uses {', '.join(sorted(odd))}"
    return None


def _splittable(cache) -> bool:
    # A KV cache of a layer run elsewhere becomes a ghost (masks read its offset); a
    # recurrent cache of such a layer just stays empty.
    return type(cache) is KVCache or isinstance(cache, ArraysCache)


def pipeline_blocks(n_layers: int, size: int) -> tuple[tuple[int, int], ...]:
    """[start, end) per rank: rank 0 the last block, rank size-1 the first; the
    lower ranks take the extra layers (mlx-lm's split)."""
    base, extra = divmod(n_layers, size)
    counts = [base + (1 if r < extra else 0) for r in range(size)]
    blocks = []
    for r in range(size):
        start = sum(counts[r + 1 :])
        blocks.append((start, start + counts[r]))
    return tuple(blocks)


def apply_dtype(model: nn.Module, dtype: str) -> None:
    """Lazily dequantize and cast (read only when evaluated)."""
    if dtype == "native":
        return
    from mlx_lm.utils import dequantize_model

    dequantize_model(model)
    model.set_dtype(_DTYPES[dtype])


def shard(model: nn.Module, plan: ShardPlan, group) -> None:
    """Turn the full lazy model into this rank's part, then read its weights."""
    apply_dtype(model, plan.dtype)
    if plan.mode == "tensor":
        owner = _head_owner(model)
        head = owner.get("lm_head") if owner is not None else None
        model.shard(group)
        if head is not None and getattr(owner, "sharding_group", None) is not None:
            # Some families split the head by vocabulary and gather the logits. Keep
            # it whole instead: rank 0 alone turns hidden states into logits, so the
            # workers never join a gather they do not know is coming.
            owner.lm_head = head
            owner.sharding_group = None
    else:
        _split_layers(model, plan, group)
    owner = _head_owner(model)
    if plan.rank != 0 and owner is not None:
        owner.lm_head = _Unused()  # only rank 0 turns hidden states into logits
    mx.eval(model.parameters())


def _split_layers(model: nn.Module, plan: ShardPlan, group) -> None:
    body = model.model
    start, end = plan.owned
    layers = body.layers
    for i in range(len(layers)):
        if not start <= i < end:
            layers[i] = _Skipped(layers[i])
    if plan.rank < plan.size - 1:  # not the first stage: input comes from rank + 1
        layers[start] = _Receive(layers[start], plan.rank + 1, group)
        if plan.rank != 0:  # the token embedding is never used here
            body.embed_tokens = _ShapeOnly(body.embed_tokens)
    if plan.rank > 0:  # not the last stage: output goes to rank - 1
        layers[end - 1] = _Send(layers[end - 1], plan.rank - 1, group)


def make_cache(model: nn.Module, plan: ShardPlan) -> list:
    """The model's cache for this rank: ghosts stand in for layers run elsewhere."""
    base = getattr(type(model), "make_cache", None)
    layers = body_layers(model) or []
    cache = base(model) if base is not None else [KVCache() for _ in layers]
    if plan.mode == "pipeline":
        start, end = plan.owned
        cache = [
            c if start <= i < end or type(c) is not KVCache else GhostCache()
            for i, c in enumerate(cache)
        ]
    return cache


def local_bytes(model: nn.Module) -> int:
    return sum(p.nbytes for _, p in tree_flatten(model.parameters()))


class GhostCache(KVCache):
    """The cache of a layer another rank runs: no tensors, only the offset, which
    masks and rollbacks read."""

    @property
    def state(self):
        return ()

    @state.setter
    def state(self, v):
        raise RuntimeError("a ghost cache holds no state")

    @property
    def nbytes(self) -> int:
        return 0


class _Delegating(nn.Module):
    """Keeps the wrapped layer's plain attributes (``use_sliding``...) readable."""

    def __getattr__(self, key: str):
        if key in self:
            return self[key]
        inner = self.get("layer")
        if inner is not None:
            return getattr(inner, key)
        attrs = self.__dict__.get("_attrs", {})
        if key in attrs:
            return attrs[key]
        raise AttributeError(key)


class _Skipped(_Delegating):
    def __init__(self, layer: nn.Module):
        super().__init__()
        # Only plain values: the weights must not stay referenced (never read).
        attrs = {
            k: v
            for k, v in vars(layer).items()
            if not isinstance(v, (mx.array, nn.Module, dict, list, tuple))
        }
        object.__setattr__(self, "_attrs", attrs)

    def __call__(self, x: mx.array, *args, **kwargs) -> mx.array:
        for c in (*args, *kwargs.values()):
            if isinstance(c, GhostCache):
                c.offset += x.shape[1]
                break
        return x


class _Receive(_Delegating):
    def __init__(self, layer: nn.Module, src: int, group):
        super().__init__()
        self.layer = layer
        object.__setattr__(self, "_src", src)
        object.__setattr__(self, "_group", group)

    def __call__(self, x: mx.array, *args, **kwargs) -> mx.array:
        x = mx.distributed.recv_like(x, self._src, group=self._group)
        return self.layer(x, *args, **kwargs)


class _Send(_Delegating):
    def __init__(self, layer: nn.Module, dst: int, group):
        super().__init__()
        self.layer = layer
        object.__setattr__(self, "_dst", dst)
        object.__setattr__(self, "_group", group)

    def __call__(self, x: mx.array, *args, **kwargs) -> mx.array:
        out = self.layer(x, *args, **kwargs)
        return mx.distributed.send(out, self._dst, group=self._group)


class _ShapeOnly(nn.Module):
    """Stands in for an embedding whose output only gives recv_like its shape."""

    def __init__(self, embed: nn.Module):
        super().__init__()
        probe = embed(mx.zeros((1, 1), dtype=mx.int32))  # lazy: shape and dtype only
        object.__setattr__(self, "_width", probe.shape[-1])
        object.__setattr__(self, "_dtype", probe.dtype)

    def __call__(self, ids: mx.array) -> mx.array:
        return mx.zeros((*ids.shape, self._width), dtype=self._dtype)


class _Unused(nn.Module):
    def __call__(self, *args, **kwargs):
        raise RuntimeError("the output head runs on rank 0 only")
