"""Linear layers and embeddings that multiply through the skinny kernel.

``accelerate(model, weight_dtype)`` swaps every ``nn.Linear`` and ``nn.Embedding``
of a loaded model for these (the output head and tied embeddings included), with
their weights in ``weight_dtype`` and every other parameter in float32: activations
stay float32 end to end, so only the weight bytes shrink. The subclasses keep
``isinstance`` checks and ``.weight`` reads elsewhere working.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from engine.native.kernel import skinny_matmul

COMPUTE = mx.float32


class SkinnyLinear(nn.Linear):
    def __init__(self, weight: mx.array, bias: mx.array | None = None) -> None:
        nn.Module.__init__(self)
        self.weight = weight
        if bias is not None:
            self.bias = bias

    def __call__(self, x: mx.array) -> mx.array:
        y = skinny_matmul(x, self["weight"])
        if "bias" in self:
            y = y + self["bias"]
        return y


class SkinnyEmbedding(nn.Embedding):
    """Looks rows up in the stored dtype and hands them on as float32."""

    def __init__(self, weight: mx.array) -> None:
        nn.Module.__init__(self)
        self.weight = weight

    def __call__(self, x: mx.array) -> mx.array:
        return self["weight"][x].astype(COMPUTE)

    def as_linear(self, x: mx.array) -> mx.array:
        return skinny_matmul(x, self["weight"])


def accelerate(model: nn.Module, weight_dtype: mx.Dtype = mx.bfloat16) -> int:
    """Swap the model's float linear layers and embeddings in place; returns how many.

    Weights are cast to ``weight_dtype`` (float32 or bfloat16), the remaining floating
    parameters (norms, biases, anything else) to float32. Quantized layers are left
    alone: dequantize first.
    """
    swaps = []
    others = []
    for path, module in tree_flatten(model.leaf_modules(), is_leaf=nn.Module.is_module):
        weight = module.get("weight") if isinstance(module, dict) else None
        if isinstance(module, SkinnyLinear | SkinnyEmbedding):
            continue
        if type(module) is nn.Linear and _is_float(weight):
            bias = module.get("bias")
            swaps.append((path, SkinnyLinear(weight.astype(weight_dtype), _as_compute(bias))))
        elif type(module) is nn.Embedding and _is_float(weight):
            swaps.append((path, SkinnyEmbedding(weight.astype(weight_dtype))))
        else:
            others.append(module)
    if swaps:
        model.update_modules(tree_unflatten(swaps))
    for module in others:
        module.set_dtype(COMPUTE)
    mx.eval(model.parameters())
    return len(swaps)


def _is_float(a: object) -> bool:
    return isinstance(a, mx.array) and a.ndim == 2 and mx.issubdtype(a.dtype, mx.floating)


def _as_compute(a: mx.array | None) -> mx.array | None:
    return None if a is None else a.astype(COMPUTE)
