"""Drop a checkpoint's MTP layers before mlx-lm sees them, at any depth.

DeepSeek-V3-style checkpoints keep their MTP module as ``model.layers.{N}`` where N is
``num_hidden_layers``. mlx-lm's ``sanitize`` drops only ``model.layers.61`` (the full
model's depth), so a checkpoint of any other depth fails to load ("parameters not in
model"). The MTP drafter reads those tensors from the files itself
(engine.drafters.mtp.sources), so the main model never needs them.
"""

from __future__ import annotations

import re

_LAYER = re.compile(r"^(?:model\.)?layers\.(\d+)\.")


def model_classes_without_extra_layers(config: dict):
    """mlx-lm's (Model, ModelArgs) for ``config``, with a sanitize that first drops
    decoder layers at or past ``num_hidden_layers``."""
    from mlx_lm.utils import _get_classes

    model_class, args_class = _get_classes(config)
    depth = _depth(config)
    if depth is None:
        return model_class, args_class

    class Model(model_class):
        def sanitize(self, weights):
            weights = {k: v for k, v in weights.items() if not _beyond(k, depth)}
            parent = getattr(super(), "sanitize", None)
            return parent(weights) if parent is not None else weights

    Model.__name__ = Model.__qualname__ = model_class.__name__
    Model.__module__ = model_class.__module__
    return Model, args_class


def _depth(config: dict) -> int | None:
    text = config.get("text_config") or {}
    value = config.get("num_hidden_layers") or text.get("num_hidden_layers")
    return int(value) if isinstance(value, int) and value > 0 else None


def _beyond(name: str, depth: int) -> bool:
    m = _LAYER.match(name)
    return m is not None and int(m.group(1)) >= depth
