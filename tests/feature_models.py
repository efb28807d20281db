"""Tiny random-weight targets and drafters of the kinds that read target features
(DFlash, DFlash2, Gemma 4 assistants; EAGLE-3 heads: tests/eagle3_models.py), in the
layouts their authors publish.

The drafters are built with mlx-vlm's own classes and configs, their tensors saved
under the checkpoint names (z-lab DFlash: flat names, ``dflash_config``;
DFlash2: ``DFlash2DraftModel``; ...). Targets are mlx-lm models.

A random drafter almost never agrees with a random target. ``sticky`` makes some
agreement certain without changing what is being tested: the target's output head
is pushed so that token ``c`` (one the plain target emits early on) is followed by
``c`` again, and the drafter's layers are scaled down so it drafts ``c`` from the
mask tokens (``mask_token_id`` = ``c``). Plain decoding then reaches ``c`` after a
few tokens and repeats it: drafts are rejected first, accepted later.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from tests.tiny_models import write_tokenizer

_OUT_PROJ = re.compile(r"\.(o_proj|down_proj)\.weight$")


def qwen3_config(vocab: int, **over) -> dict:
    cfg = {
        "model_type": "qwen3",
        "architectures": ["Qwen3ForCausalLM"],
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "num_hidden_layers": 4,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "vocab_size": vocab,
        "tie_word_embeddings": False,
        "max_position_embeddings": 4096,
        "eos_token_id": 2,
    }
    cfg.update(over)
    return cfg


def make_target(
    path: Path, seed: int = 0, layer_scale: float = 0.5, logit_scale: float = 8.0, **over
) -> dict:
    """A random qwen3 (or ``model_type``) target folder; returns its config and tensors."""
    from mlx_lm.utils import _get_classes

    path.mkdir(parents=True, exist_ok=True)
    vocab = write_tokenizer(path)
    cfg = qwen3_config(vocab, **over)
    model_cls, args_cls = _get_classes(cfg)
    mx.random.seed(seed)
    model = model_cls(args_cls.from_dict(cfg))
    params = {k: v.astype(mx.float32) for k, v in tree_flatten(model.parameters())}
    for k, v in params.items():
        if _OUT_PROJ.search(k):
            params[k] = v * layer_scale
        elif k == "lm_head.weight":
            params[k] = v * logit_scale
    _save(path, cfg, params)
    return {"path": path, "config": cfg, "params": params}


def make_sticky(built: dict, token: int, strength: float = 40.0) -> None:
    """Rewrite a target so that ``token`` is followed by ``token`` (see the module doc)."""
    p = built["params"]
    e = p["model.embed_tokens.weight"][token]
    u = e / mx.sqrt(mx.mean(e * e)) * p["model.norm.weight"]
    w = p["lm_head.weight"]
    w[token] = w[token] + strength * u / mx.linalg.norm(u)
    p["lm_head.weight"] = w
    _save(built["path"], built["config"], p)


def _save(path: Path, cfg: dict, params: dict) -> None:
    (path / "config.json").write_text(json.dumps(cfg))
    mx.save_safetensors(str(path / "model.safetensors"), params, metadata={"format": "mlx"})


# -- DFlash


def dflash_config(target: dict, layers=(0, 2), block_size: int = 16, mask: int = 5, **over):
    """A z-lab DFlash config (drafter backbone qwen3) for ``target``."""
    t = target["config"]
    cfg = {
        "architectures": ["DFlashDraftModel"],
        "model_type": "qwen3",
        "hidden_size": t["hidden_size"],
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rms_norm_eps": 1e-6,
        "vocab_size": t["vocab_size"],
        "rope_theta": 10000.0,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
        "block_size": block_size,
        "num_target_layers": t["num_hidden_layers"],
        "dflash_config": {"mask_token_id": mask, "target_layer_ids": list(layers)},
    }
    cfg.update(over)
    return cfg


def dflash2_config(target: dict, layers=(0, 2), block_size: int = 8, mask: int = 5):
    cfg = dflash_config(target, layers, block_size, mask, architectures=["DFlash2DraftModel"])
    cfg["dflash_config"].update(
        block_size=block_size,
        conv_kernel_size=3,
        conv_group_size=16,
        selector_rank=8,
        selector_top_k=8,
        runtime_block_size=block_size,
    )
    return cfg


def make_dflash(path: Path, cfg: dict, seed: int = 1, scale: float = 1.0) -> Path:
    """A DFlash/DFlash2 repo built with mlx-vlm's classes; ``scale`` multiplies the
    layers' output projections (small: drafts from the token embeddings)."""
    if "DFlash2DraftModel" in cfg["architectures"]:
        from mlx_vlm.speculative.drafters import dflash2 as module
    else:
        from mlx_vlm.speculative.drafters import qwen3_dflash as module
    path.mkdir(parents=True, exist_ok=True)
    mx.random.seed(seed)
    model = module.Model(module.ModelConfig.from_dict(cfg))
    params = {k: v.astype(mx.float32) for k, v in tree_flatten(model.parameters())}
    for k, v in params.items():
        if _OUT_PROJ.search("." + k):
            params[k] = v * scale
        elif "base_kernel" in k or k.endswith("kernel_projection.weight"):
            params[k] = mx.random.uniform(-0.3, 0.3, v.shape)  # zeros would hide the conv
    (path / "config.json").write_text(json.dumps(cfg))
    mx.save_safetensors(str(path / "model.safetensors"), params, metadata={"format": "mlx"})
    return path


# -- Gemma 4 (target: mlx-lm's gemma4; drafter: a gemma4_assistant repo)

_ROPE = {
    "full_attention": {
        "partial_rotary_factor": 0.25,
        "rope_theta": 1e6,
        "rope_type": "proportional",
    },
    "sliding_attention": {"partial_rotary_factor": 1.0, "rope_theta": 1e4, "rope_type": "default"},
}


def gemma4_text_config(vocab: int, **over) -> dict:
    cfg = {
        "model_type": "gemma4_text",
        "hidden_size": 64,
        "num_hidden_layers": 4,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "head_dim": 16,
        "global_head_dim": 16,
        "num_key_value_heads": 1,
        "num_kv_shared_layers": 0,
        "hidden_size_per_layer_input": 0,
        "vocab_size_per_layer_input": vocab,
        "sliding_window": 8,
        "layer_types": ["sliding_attention"] * 3 + ["full_attention"],
        "rope_parameters": _ROPE,
        "final_logit_softcapping": 30.0,
        "use_double_wide_mlp": False,
        "tie_word_embeddings": True,
        "vocab_size": vocab,
        "max_position_embeddings": 4096,
    }
    cfg.update(over)
    return cfg


def make_gemma4_target(path: Path, seed: int = 0, layer_scale: float = 0.3, **over) -> dict:
    """A random mlx-lm ``gemma4`` target (text only), weights in MLX names."""
    from mlx_lm.utils import _get_classes

    path.mkdir(parents=True, exist_ok=True)
    vocab = write_tokenizer(path)
    text = gemma4_text_config(vocab, **over)
    cfg = {"model_type": "gemma4", "architectures": ["Gemma4ForConditionalGeneration"],
           "text_config": text, "vocab_size": vocab, "tie_word_embeddings": True,
           "eos_token_id": 2}  # fmt: skip
    model_cls, args_cls = _get_classes(cfg)
    mx.random.seed(seed)
    model = model_cls(args_cls.from_dict(cfg))
    params = {k: v.astype(mx.float32) for k, v in tree_flatten(model.parameters())}
    for k, v in params.items():
        if _OUT_PROJ.search(k):
            params[k] = v * layer_scale
    _save(path, cfg, params)
    return {"path": path, "config": cfg, "params": params}


def assistant_config(target: dict, **over) -> dict:
    """A ``gemma4_assistant`` config (the published layout) for ``target``."""
    t = target["config"]["text_config"]
    text = gemma4_text_config(
        t["vocab_size"], num_hidden_layers=2, layer_types=["sliding_attention", "full_attention"],
        intermediate_size=96,
    )  # fmt: skip
    cfg = {
        "model_type": "gemma4_assistant",
        "architectures": ["Gemma4AssistantForCausalLM"],
        "backbone_hidden_size": t["hidden_size"],
        "use_ordered_embeddings": False,
        "tie_word_embeddings": True,
        "block_size": 4,
        "text_config": text,
    }
    cfg.update(over)
    return cfg


def make_assistant(path: Path, target: dict, seed: int = 1, copy: bool = False, scale=1.0):
    """An assistant repo built with mlx-vlm's class. ``copy``: it drafts the target's
    greedy chain whenever the target behaves as a bigram model (pre_projection passes
    the token embedding through, the layers add ``scale`` x their output, and its
    embeddings are the target's)."""
    from mlx_vlm.speculative.drafters import gemma4_assistant as module

    path.mkdir(parents=True, exist_ok=True)
    cfg = assistant_config(target)
    mx.random.seed(seed)
    model = module.Model(module.ModelConfig.from_dict(cfg))
    params = {k: v.astype(mx.float32) for k, v in tree_flatten(model.parameters())}
    for k, v in params.items():
        if _OUT_PROJ.search("." + k):
            params[k] = v * scale
    if copy:
        h = cfg["backbone_hidden_size"]
        params["pre_projection.weight"] = mx.concatenate([mx.eye(h), mx.zeros((h, h))], axis=1)
        params["model.embed_tokens.weight"] = target["params"][
            "language_model.model.embed_tokens.weight"
        ]
        params["model.norm.weight"] = target["params"]["language_model.model.norm.weight"]
    (path / "config.json").write_text(json.dumps(cfg))
    mx.save_safetensors(str(path / "model.safetensors"), params, metadata={"format": "mlx"})
    return path
