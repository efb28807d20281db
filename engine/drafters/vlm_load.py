"""Loading a drafter repo into one of mlx-vlm's drafter classes, with our checks.

mlx-vlm (MIT) implements the published DFlash, EAGLE-3 and Gemma 4 assistant
architectures; we use its model classes as they are, imported only here and only
when such a drafter is loaded (its package pulls in nothing heavy for these), and
drive them from our own verification loop. Loading is ours: config and weights are
checked so a corrupt or mismatched checkpoint is a DecoderError saying why, and the
weights follow the target's dtype policy. Loaded drafters are kept per target in
``loaded.extras["vlm_drafters"]``. Engine thread only.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from engine.drafters.kinds import LABELS, mlx_vlm_missing
from engine.errors import DecoderError

MODULES = {  # drafter format -> mlx-vlm module
    "dflash": "mlx_vlm.speculative.drafters.qwen3_dflash",
    "dflash2": "mlx_vlm.speculative.drafters.dflash2",
    "eagle3": "mlx_vlm.speculative.drafters.eagle3",
    "assistant": "mlx_vlm.speculative.drafters.gemma4_assistant",
}


def vlm_module(fmt: str, target_type: str = ""):
    if why := mlx_vlm_missing():
        raise DecoderError(f"{LABELS.get(fmt, fmt)} drafters {why}")
    name = MODULES[fmt]
    if fmt == "dflash" and target_type.startswith("gemma4"):
        name = "mlx_vlm.speculative.drafters.gemma4_dflash"  # its mask token default
    try:
        return importlib.import_module(name)
    except Exception as e:  # an mlx-vlm too old or too new for us
        raise DecoderError(
            f"{LABELS.get(fmt, fmt)} drafters need mlx-vlm's {name} ({type(e).__name__}: {e})"
        ) from None


def read_weights(folder: Path) -> dict[str, mx.array]:
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise DecoderError(f"{folder.name} has no .safetensors weights (incomplete download?)")
    weights: dict[str, mx.array] = {}
    for f in files:
        try:
            weights.update(mx.load(str(f)))
        except Exception as e:
            raise DecoderError(
                f"{folder.name}: could not read {f.name} ({e}); it may be corrupted"
            ) from None
    return weights


def load_weights(model: nn.Module, weights: dict, where: str, config: dict, dtype: str) -> None:
    """Put ``weights`` (already sanitized) into ``model``: every parameter must be there
    with its shape; tensors the model has no place for (a copy of the target's head or
    embeddings some repos ship) are left out."""
    if any(k.endswith(".scales") for k in weights):
        q = config.get("quantization") or config.get("quantization_config") or {}
        nn.quantize(
            model,
            group_size=int(q.get("group_size", 64)),
            bits=int(q.get("bits", 4)),
            mode=q.get("mode", "affine"),
            class_predicate=lambda p, m: f"{p}.scales" in weights,
        )
    params = dict(tree_flatten(model.parameters()))
    missing = sorted(k for k in params if k not in weights)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DecoderError(f"{where}: weights missing: {', '.join(missing[:3])}{more}")
    wrong = [k for k, p in params.items() if tuple(weights[k].shape) != tuple(p.shape)]
    if wrong:
        k = wrong[0]
        raise DecoderError(
            f"{where}: {k} has shape {tuple(weights[k].shape)}, the config needs "
            f"{tuple(params[k].shape)}"
        )
    model.load_weights([(k, weights[k]) for k in params], strict=False)
    from engine.drafters.mtp.loader import _match_dtype

    _match_dtype(model, dtype)
    try:
        mx.eval(model.parameters())
    except (RuntimeError, ValueError) as e:
        raise DecoderError(f"{where}: could not read the weights ({e}); corrupted?") from None
    model.eval()


def cached(loaded, key: str, build):
    """``build()`` once per target and key."""
    store = loaded.extras.setdefault("vlm_drafters", {})
    if key not in store:
        store[key] = build()
    return store[key]
