"""DeepSeek-V4 MTP and built-in DSpark for the catalog and the registry: is it there,
can it load, open it.

Reads configs and safetensors headers only (GUI-thread cheap); ``open_drafter``
loads weights (engine thread).
"""

from __future__ import annotations

from pathlib import Path

from engine.compat import Pairing, weight_names
from engine.errors import DecoderError

_BLOCK = ("e_proj.weight", "h_proj.weight")


def _has_block(names: list[str], prefixed: bool) -> bool:
    if prefixed:
        return any(n.startswith("mtp.") and n.endswith(_BLOCK) for n in names)
    return all(any(n == b or n.endswith("." + b) for n in names) for b in _BLOCK)


def own_weights(path: Path, config: dict) -> Pairing:
    """The checkpoint's own ``mtp.*`` block (DeepSeek's naming keeps it; mlx-vlm's
    converter drops it and writes a separate decoder repo)."""
    if _has_block(weight_names(path), prefixed=True):
        return Pairing(True, "built-in MTP weights (deepseek_v4, mtp.* block)")
    if int(config.get("num_nextn_predict_layers") or 0) > 0:
        return Pairing(
            False,
            f"{Path(path).name}: its config declares an MTP block but the weights are "
            "missing (no mtp.* tensors; dropped when it was converted?) — use a "
            "separate deepseek_v4_mtp decoder repo",
        )
    return Pairing(False, "a model cannot be its own draft model")


def loadable(folder: Path) -> Pairing | None:
    """A refusal when a deepseek_v4_mtp repo has no MTP block to load, else None."""
    names = weight_names(folder)
    if not names:
        return Pairing(False, f"{folder.name} has no .safetensors weights (incomplete download?)")
    if not _has_block(names, prefixed=False):
        return Pairing(
            False, f"{folder.name}: no DeepSeek-V4 MTP block in its weights (no e_proj/h_proj)"
        )
    return None


def open_drafter(loaded, folder: Path | None):
    """A V4MTPDrafter from a decoder repo, or from the target's own block (None)."""
    from engine.deepseek_v4.mtp import V4MTPDrafter, load_head

    if folder is None:
        own = own_weights(loaded.path, loaded.config)
        if not own.ok:
            raise DecoderError(own.reason)
        return V4MTPDrafter(loaded, load_head(loaded, loaded.path), "built-in")
    return V4MTPDrafter(loaded, load_head(loaded, folder), Path(folder).name)


def own_dspark(path: Path, config: dict) -> Pairing:
    """The DSpark drafter a DeepSeek-V4(.1) checkpoint keeps under ``mtp.*``."""
    from engine.drafters.kinds import dspark_refusal, mlx_vlm_missing

    text = config.get("text_config") or config
    target_type = str(text.get("model_type") or config.get("model_type") or "")
    ids = [int(i) for i in text.get("dspark_target_layer_ids") or []]
    block = int(text.get("dspark_block_size") or 0)
    stages = int(text.get("num_nextn_predict_layers") or 0)
    layers = int(text.get("num_hidden_layers") or 0) or None
    if why := dspark_refusal(ids, block, True, None, layers, target_type):
        return Pairing(False, f"its built-in DSpark drafter: {why}")
    if not carries_dspark(path):
        return Pairing(
            False,
            f"{Path(path).name}: its config declares a DSpark drafter but the weights are "
            "missing (no mtp.* main_proj / markov_head tensors; dropped when it was "
            "converted?) — use a separate deepseek_v4_dspark decoder repo",
        )
    if why := mlx_vlm_missing():
        return Pairing(False, f"DSpark drafters {why}")
    return Pairing(
        True,
        f"built-in DSpark drafter ({target_type}, {stages} stages under mtp.*, blocks of "
        f"{block} tokens from layers {ids})",
    )


def carries_dspark(path: Path) -> bool:
    """The checkpoint's weights hold a DSpark drafter's ``mtp.*`` stages (headers only)."""
    names = [n for n in weight_names(path) if n.startswith("mtp.")]
    return any(".main_proj." in n for n in names) and any(".markov_head." in n for n in names)
