"""Drafter repos that are neither MTP heads nor draft models: what they are, and
whether they fit a target — from config.json alone (cheap enough for the GUI thread).

- DFlash / DFlash2 block drafters (z-lab layout): the drafter's own backbone
  ``model_type`` (``qwen3``...), ``dflash_config`` {``mask_token_id``,
  ``target_layer_ids``}, ``block_size``, ``num_target_layers``; DFlash2 also
  ``architectures`` ``["DFlash2DraftModel"]``. They read the outputs of the target's
  ``target_layer_ids`` layers and draft ``block_size - 1`` tokens in one pass.
- EAGLE-3 heads (Speculators / SGLang layout): ``speculators_model_type`` or
  ``model_type`` ``eagle3`` (or ``architectures`` ``LlamaForCausalLMEagle3``), a
  ``transformer_layer_config`` (SGLang: the top level), ``draft_vocab_size``; they read
  three target layers (``eagle_aux_hidden_state_layer_ids``, hidden-states indices).
- Gemma 4 assistants: ``model_type`` ``gemma4_assistant``, ``backbone_hidden_size``,
  a ``text_config``; they attend to the target's last full and sliding K/V.

The drafters themselves run mlx-vlm's model classes (imported only when one is
loaded); ``mlx_vlm_missing`` says so when it is not installed.
"""

from __future__ import annotations

import importlib.util

KINDS = ("dflash", "eagle3", "assistant")
LABELS = {
    "dflash": "DFlash block drafter",
    "dflash2": "DFlash2 block drafter",
    "eagle3": "EAGLE-3 head",
    "assistant": "Gemma 4 assistant",
}


def drafter_format(cfg: dict) -> str | None:
    """ "dflash" | "dflash2" | "eagle3" | "assistant", or None for anything else."""
    archs = " ".join(str(a) for a in cfg.get("architectures") or [])
    model_type = str(cfg.get("model_type") or "").lower()
    if "DFlash2DraftModel" in archs:
        return "dflash2"
    if isinstance(cfg.get("dflash_config"), dict) or "DFlashDraftModel" in archs:
        return "dflash"
    spec_type = str(cfg.get("speculators_model_type") or "").lower()
    if model_type == "eagle3" or spec_type == "eagle3" or "Eagle3" in archs:
        return "eagle3"
    if model_type == "gemma4_assistant":
        return "assistant"
    return None


def kind_of(fmt: str) -> str:
    """The catalog kind of a format: dflash2 is a DFlash drafter."""
    return "dflash" if fmt == "dflash2" else fmt


def family(fmt: str, cfg: dict) -> str:
    """The target family a drafter declares ("" when it does not)."""
    if fmt == "assistant":
        return "gemma4"
    return ""


def dims(fmt: str, cfg: dict) -> tuple[int | None, int | None]:
    """(the target hidden size it reads, the target vocabulary it drafts in)."""
    if fmt == "assistant":
        text = cfg.get("text_config") or {}
        return _int(cfg.get("backbone_hidden_size")), _int(text.get("vocab_size"))
    if fmt == "eagle3":
        layer = eagle3_layer_config(cfg)
        hidden = cfg.get("target_hidden_size") or layer.get("hidden_size")
        return _int(hidden), _int(layer.get("vocab_size"))
    return _int(cfg.get("hidden_size")), _int(cfg.get("vocab_size"))


def eagle3_layer_config(cfg: dict) -> dict:
    """The decoder layer's config: Speculators nest it, SGLang's layout is flat."""
    layer = cfg.get("transformer_layer_config")
    return layer if isinstance(layer, dict) else cfg


def dflash_layers(cfg: dict) -> tuple[list[int], int | None]:
    """(target_layer_ids, num_target_layers) of a DFlash config."""
    d = cfg.get("dflash_config") or {}
    ids = [int(i) for i in d.get("target_layer_ids") or cfg.get("target_layer_ids") or []]
    n = d.get("num_target_layers") or cfg.get("num_target_layers")
    return ids, (_int(n) if n else (max(ids) + 1 if ids else None))


def eagle3_layers(cfg: dict, target_layers: int) -> list[int]:
    """The target layers an EAGLE-3 head reads (as layer-output indices).

    Checkpoints name hidden-states indices (0 = the embeddings), so layer i - 1's
    output; without a list the published default is [2, n // 2, n - 3] of the target.
    """
    ids = cfg.get("eagle_aux_hidden_state_layer_ids") or cfg.get("target_layer_ids")
    if not ids:
        n = target_layers
        ids = [2, n // 2, max(n - 3, 0)]
    return [max(int(i) - 1, 0) for i in ids]


def mlx_vlm_missing() -> str | None:
    """Why these drafters cannot run here, or None."""
    if importlib.util.find_spec("mlx_vlm") is None:
        return "needs mlx-vlm, which is not installed (pip install mlx-vlm)"
    return None


def check(fmt: str, cfg: dict, tcfg: dict) -> str | None:
    """Why a drafter of ``fmt`` (config ``cfg``) cannot draft for a target with config
    ``tcfg`` — beyond hidden size, vocabulary and tokenizer (checked by the caller) —
    or None."""
    text = tcfg.get("text_config") or tcfg
    n_layers = _int(text.get("num_hidden_layers") or tcfg.get("num_hidden_layers"))
    target_type = str(text.get("model_type") or tcfg.get("model_type") or "")
    if fmt in ("dflash", "dflash2"):
        ids, want = dflash_layers(cfg)
        if not ids:
            return "its dflash_config names no target_layer_ids"
        if n_layers and want and want != n_layers:
            return f"made for a target with {want} layers, this one has {n_layers}"
        if n_layers and max(ids) >= n_layers:
            return f"reads target layer {max(ids)}, this model has {n_layers} layers"
        if int(cfg.get("block_size") or 16) < 2:
            return "its block_size is below 2"
        return None
    if fmt == "eagle3":
        ids = eagle3_layers(cfg, n_layers or 0)
        if n_layers and max(ids) >= n_layers:
            return f"reads target layer {max(ids)}, this model has {n_layers} layers"
        return None
    if fmt == "assistant":
        if not target_type.startswith("gemma4"):
            return f"Gemma 4 assistants draft for gemma4 models, this one is {target_type}"
        return None
    return f"unknown drafter format {fmt}"


def _int(v) -> int | None:
    try:
        return int(v) if v else None
    except (TypeError, ValueError):
        return None


def weights_missing(folder) -> str | None:
    """Why a drafter folder's weights cannot be read, or None (names only, no tensors)."""
    from pathlib import Path

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return f"{Path(folder).name} has no .safetensors weights (incomplete download?)"
    return None
