"""Drafter repos that are neither MTP heads nor draft models: what they are, and
whether they fit a target — from config.json alone (cheap enough for the GUI thread).

- DFlash / DFlash2 block drafters (z-lab layout): the drafter's own backbone
  ``model_type`` (``qwen3``...), ``dflash_config`` {``mask_token_id``,
  ``target_layer_ids``}, ``block_size``, ``num_target_layers``; DFlash2 also
  ``architectures`` ``["DFlash2DraftModel"]``. They read the outputs of the target's
  ``target_layer_ids`` layers and draft ``block_size - 1`` tokens in one pass.
- EAGLE-3 heads (Speculators / SGLang layout): ``speculators_model_type`` or
  ``model_type`` ``eagle3`` (or ``architectures`` ``LlamaForCausalLMEagle3``), a
  ``transformer_layer_config`` (SGLang: the top level), ``draft_vocab_size`` (with a
  ``d2t`` tensor: target id = draft id + d2t[draft id]); they read three target layers:
  Speculators' ``eagle_aux_hidden_state_layer_ids`` are hidden-states indices (vLLM's
  convention, 0 = the embeddings), SGLang/SpecForge's ``eagle_config`` ones are layer
  indices; neither: hidden states [2, n // 2, n - 3] of an n-layer target.
- Gemma 4 assistants: ``model_type`` ``gemma4_assistant``, ``backbone_hidden_size``,
  a ``text_config``; they attend to the target's last full and sliding K/V.
- DSpark block drafters: a DFlash-style block with a low-rank Markov head that
  corrects each draft for the one before it. Two layouts: ``model_type`` ``dspark``
  (or a DFlash config whose ``dflash_config`` says ``projector_type`` ``dspark`` /
  ``markov_rank``), a Qwen-style backbone for any target; and ``deepseek_v4_dspark``
  (mlx-vlm's splitter: DeepSeek-V4 blocks, ``n_mtp_layers`` stages, ``text_config``
  the target's), which DeepSeek-V4.1 also carries under ``mtp.*``
  (``dspark_block_size``, ``dspark_target_layer_ids``, ``dspark_markov_rank``).

The drafters themselves run mlx-vlm's model classes (imported only when one is
loaded); ``mlx_vlm_missing`` says so when it is not installed.
"""

from __future__ import annotations

import importlib.util

KINDS = ("dflash", "dspark", "eagle3", "assistant")
LABELS = {
    "dflash": "DFlash block drafter",
    "dflash2": "DFlash2 block drafter",
    "dspark": "DSpark block drafter",
    "eagle3": "EAGLE-3 head",
    "assistant": "Gemma 4 assistant",
}


V4_DSPARK_TYPE = "deepseek_v4_dspark"
V4_FAMILIES = ("deepseek_v4", "deepseek_v41")  # targets with hyper-connection streams


def drafter_format(cfg: dict) -> str | None:
    """ "dflash" | "dflash2" | "dspark" | "eagle3" | "assistant", or None otherwise."""
    archs = " ".join(str(a) for a in cfg.get("architectures") or [])
    model_type = str(cfg.get("model_type") or "").lower()
    if model_type in ("dspark", V4_DSPARK_TYPE) or _dspark_projector(cfg):
        return "dspark"
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


def _dspark_projector(cfg: dict) -> bool:
    """A DFlash-layout config that is a DSpark drafter (mlx-vlm's test, as it loads)."""
    d = cfg.get("dflash_config")
    if not isinstance(d, dict):
        return False
    return d.get("projector_type") == "dspark" or bool(
        _int(cfg.get("markov_rank") or d.get("markov_rank"))
    )


def is_v4_dspark(cfg: dict) -> bool:
    return str(cfg.get("model_type") or "") == V4_DSPARK_TYPE


def dspark_layout(cfg: dict) -> tuple[list[int], int]:
    """(the target layers a DSpark config reads, the drafts it proposes a round).

    mlx-vlm's ``block_size`` counts the anchor token (the last verified one): a V4
    repo's is ``dspark_block_size + 1``; a ``dspark`` config's ``block_size`` is the
    checkpoint's proposal count unless ``dspark_bonus_anchor`` says it includes it."""
    if is_v4_dspark(cfg):
        text = cfg.get("text_config") or {}
        ids = cfg.get("target_layer_ids") or text.get("dspark_target_layer_ids") or []
        block = _int(cfg.get("block_size")) or (_int(text.get("dspark_block_size")) or 0) + 1
        return [int(i) for i in ids], max(block - 1, 0)
    d = cfg.get("dflash_config") or {}
    ids, _ = dflash_layers(cfg)
    raw = _int(d.get("block_size") or cfg.get("block_size")) or 0
    return ids, raw - 1 if cfg.get("dspark_bonus_anchor") else raw


def kind_of(fmt: str) -> str:
    """The catalog kind of a format: dflash2 is a DFlash drafter."""
    return "dflash" if fmt == "dflash2" else fmt


def family(fmt: str, cfg: dict) -> str:
    """The target family a drafter declares ("" when it does not)."""
    if fmt == "assistant":
        return "gemma4"
    if fmt == "dspark" and is_v4_dspark(cfg):
        return str((cfg.get("text_config") or {}).get("model_type") or "")
    return ""


def dims(fmt: str, cfg: dict) -> tuple[int | None, int | None]:
    """(the target hidden size it reads, the target vocabulary it drafts in)."""
    if fmt == "assistant":
        text = cfg.get("text_config") or {}
        return _int(cfg.get("backbone_hidden_size")), _int(text.get("vocab_size"))
    if fmt == "dspark" and is_v4_dspark(cfg):
        text = cfg.get("text_config") or {}
        return _int(text.get("hidden_size")), _int(text.get("vocab_size"))
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
    """The target layers an EAGLE-3 head reads (as layer-output indices), in order.

    Speculators (vLLM) name hidden-states indices (0 = the embeddings), so layer
    i - 1's output, as mlx-vlm reads them; SGLang / SpecForge's nested
    ``eagle_config`` names the layers themselves (SGLang adds 1 to capture them).
    Without a list, EAGLE-3's default: hidden states [2, n // 2, n - 3] of the
    n-layer target (mlx-vlm counts the head's own layers there; we count the target's).
    """
    nested = cfg.get("eagle_config")
    nested = nested.get("eagle_aux_hidden_state_layer_ids") if isinstance(nested, dict) else None
    if nested:
        return [int(i) for i in nested]
    ids = cfg.get("eagle_aux_hidden_state_layer_ids") or cfg.get("target_layer_ids")
    if not ids:
        n = target_layers
        ids = [2, n // 2, max(n - 3, 0)]
    return [max(int(i) - 1, 0) for i in ids]


def eagle3_vocab(cfg: dict) -> tuple[int | None, int | None]:
    """(draft vocabulary, target vocabulary) of an EAGLE-3 config."""
    layer = eagle3_layer_config(cfg)
    vocab = _int(layer.get("vocab_size"))
    return _int(cfg.get("draft_vocab_size")) or vocab, vocab


EAGLE3_FEATURES = 3  # target layers an EAGLE-3 head's fc reads (mlx-vlm's fc: 3 x hidden)


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
    if fmt == "dspark":
        return check_dspark(cfg, n_layers, target_type)
    if fmt == "eagle3":
        return check_eagle3(cfg, n_layers)
    if fmt == "assistant":
        if not target_type.startswith("gemma4"):
            return f"Gemma 4 assistants draft for gemma4 models, this one is {target_type}"
        return None
    return f"unknown drafter format {fmt}"


def check_eagle3(cfg: dict, n_layers: int | None) -> str | None:
    """Why an EAGLE-3 head (config ``cfg``) cannot read an ``n_layers``-layer target."""
    ids = eagle3_layers(cfg, n_layers or 0)
    if len(ids) != EAGLE3_FEATURES:
        return (
            f"it reads {len(ids)} target layers ({ids}); Lookahead runs EAGLE-3 heads "
            f"that read {EAGLE3_FEATURES}"
        )
    if n_layers and max(ids) >= n_layers:
        return f"reads the output of target layer {max(ids)}, this model has {n_layers} layers"
    draft, vocab = eagle3_vocab(cfg)
    if draft and vocab and draft > vocab:
        return f"its draft vocabulary ({draft}) is larger than the target vocabulary ({vocab})"
    return None


def eagle3_weights_missing(folder, cfg: dict) -> str | None:
    """Why an EAGLE-3 repo's tensors (names from the headers) cannot be run, or None:
    its ``fc`` must be there, and a reduced draft vocabulary needs its ``d2t`` map."""
    from engine.compat import weight_names

    names = {n.removeprefix("model.") for n in weight_names(folder)}
    if "fc.weight" not in names:
        return "its weights hold no fc tensor (a corrupted file, or not an EAGLE-3 head)"
    draft, vocab = eagle3_vocab(cfg)
    if draft and vocab and draft != vocab and "d2t" not in names:
        return (
            f"its reduced vocabulary ({draft} of {vocab} tokens) has no d2t tensor "
            "mapping draft ids to the model's"
        )
    return None


def check_dspark(cfg: dict, n_layers: int | None, target_type: str) -> str | None:
    """Why a DSpark drafter (config ``cfg``) cannot draft for a target of ``n_layers``
    layers and ``target_type``, or None."""
    ids, proposals = dspark_layout(cfg)
    d = cfg.get("dflash_config") or {}
    want = (
        None
        if is_v4_dspark(cfg)
        else _int(d.get("num_target_layers") or cfg.get("num_target_layers"))
    )
    return dspark_refusal(ids, proposals, is_v4_dspark(cfg), want, n_layers, target_type)


def dspark_refusal(
    ids: list[int], proposals: int, v4: bool, want: int | None, n_layers: int | None,
    target_type: str,
) -> str | None:  # fmt: skip
    if not ids:
        return "its config names no target_layer_ids"
    if n_layers and max(ids) >= n_layers:
        return f"reads target layer {max(ids)}, this model has {n_layers} layers"
    if ids != sorted(set(ids)):
        return f"its target_layer_ids {ids} are not increasing"
    if proposals < 1:
        return "its block proposes no drafts (block_size below 2)"
    if v4 and target_type not in V4_FAMILIES:
        return f"DeepSeek-V4 DSpark drafters read DeepSeek-V4 models, this one is {target_type}"
    if n_layers and want and want != n_layers:
        return f"made for a target with {want} layers, this one has {n_layers}"
    return None


def _int(v) -> int | None:
    try:
        return int(v) if v else None
    except (TypeError, ValueError):
        return None


def weights_missing(folder) -> str | None:
    """Why a drafter folder's weights cannot be read, or None (names only, no tensors)."""
    from pathlib import Path

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files and any(Path(folder).glob("*.bin")):  # e.g. the EAGLE authors' own repos
        return (
            f"{Path(folder).name} ships PyTorch .bin weights only; Lookahead reads "
            ".safetensors (a converted copy of the repo works)"
        )
    if not files:
        return f"{Path(folder).name} has no .safetensors weights (incomplete download?)"
    return None
