"""Tiny random-weight EAGLE-3 heads in the layouts their authors publish, for tiny
Llama targets (tests/feature_models.py builds those).

- Speculators (vLLM): ``speculators_model_type`` ``eagle3``, the decoder layer's config
  under ``transformer_layer_config``, ``eagle_aux_hidden_state_layer_ids`` (hidden-states
  indices), tensors ``layers.0.*``, ``fc``, ``norm``, ``lm_head``, ``embed_tokens`` (a copy
  of the target's), ``d2t``, ``t2d``.
- SGLang / EAGLE: a flat Llama config with ``architectures`` ``LlamaForCausalLMEagle3``
  and ``draft_vocab_size``, layer indices (if any) under ``eagle_config``, tensors
  ``midlayer.*`` instead of ``layers.0.*``, no embeddings.

The heads are mlx-vlm's Eagle3DraftModel with random weights; ``build`` returns that
model too (already holding the tensors, not yet bound), so tests can compare against
it. ``copy`` makes a head that predicts what the target's output head would say at
the position it reads (its fc passes the target's last layer through, its layers add
little, its norm and head are the target's): on a target that falls into repeating
a token, drafts are rejected first and accepted once it repeats.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from tests.feature_models import _OUT_PROJ, make_target


def make_llama_target(path: Path, layers: int = 6, seed: int = 0, **over) -> dict:
    """A random mlx-lm llama target (feature_models' builder, llama config)."""
    return make_target(
        path, seed=seed, model_type="llama", architectures=["LlamaForCausalLM"],
        num_hidden_layers=layers, rms_norm_eps=1e-5, **over,
    )  # fmt: skip


def layer_config(target: dict, **over) -> dict:
    """The head's one Llama decoder layer."""
    t = target["config"]
    cfg = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": t["hidden_size"],
        "intermediate_size": 96,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rms_norm_eps": 1e-5,
        "vocab_size": t["vocab_size"],
        "rope_theta": 10000.0,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
    }
    cfg.update(over)
    return cfg


def speculators_config(target: dict, draft_vocab: int, aux_ids=None, **over) -> dict:
    cfg = {
        "architectures": ["Eagle3Speculator"],
        "speculators_model_type": "eagle3",
        "speculators_version": "0.1.0",
        "draft_vocab_size": draft_vocab,
        "norm_before_residual": False,
        "transformer_layer_config": layer_config(target),
        "speculators_config": {
            "algorithm": "eagle3",
            "default_proposal_method": "greedy",
            "proposal_methods": [{"proposal_type": "greedy", "speculative_tokens": 3}],
            "verifier": {"name_or_path": "org/tiny-llama", "architectures": ["LlamaForCausalLM"]},
        },
    }
    if aux_ids is not None:
        cfg["eagle_aux_hidden_state_layer_ids"] = list(aux_ids)
    cfg.update(over)
    return cfg


def sglang_config(target: dict, draft_vocab: int, layer_ids=None, **over) -> dict:
    cfg = layer_config(target, architectures=["LlamaForCausalLMEagle3"])
    cfg["draft_vocab_size"] = draft_vocab
    if layer_ids is not None:
        cfg["eagle_config"] = {
            "eagle_aux_hidden_state_layer_ids": list(layer_ids),
            "use_aux_hidden_state": True,
        }
    cfg.update(over)
    return cfg


def vlm_reference_config(cfg: dict, capture: list[int]) -> dict:
    """mlx-vlm's Eagle3Config for ``cfg``, written out here by hand: the layers it
    reads (``capture``, layer-output indices), the layer config (flat for SGLang)."""
    layer = cfg.get("transformer_layer_config") or cfg
    return {
        "transformer_layer_config": layer,
        "draft_vocab_size": cfg.get("draft_vocab_size") or layer["vocab_size"],
        "norm_before_residual": cfg.get("norm_before_residual", False),
        "target_layer_ids": [i + 1 for i in capture],
        "capture_layer_ids": list(capture),
    }


def build(
    path: Path,
    cfg: dict,
    target: dict,
    capture: list[int],
    seed: int = 1,
    keep: tuple[int, ...] = (),
    copy: bool = False,
    scale: float = 1.0,
    prefix: str = "",
):
    """Write an EAGLE-3 repo for ``cfg`` (Speculators or SGLang, from its keys) that
    reads target layers ``capture``; returns (folder, mlx-vlm model with the same
    tensors). The draft vocabulary is a random subset of the target's holding ``keep``;
    ``prefix`` is put before every tensor name but lm_head and d2t (vLLM-style)."""
    from mlx_vlm.speculative.drafters import eagle3 as module

    sglang = "transformer_layer_config" not in cfg
    path.mkdir(parents=True, exist_ok=True)
    mx.random.seed(seed)
    model = module.Model(module.ModelConfig.from_dict(vlm_reference_config(cfg, capture)))
    vocab, draft = model.target_vocab_size, model.draft_vocab_size
    params = {k: v.astype(mx.float32) for k, v in tree_flatten(model.parameters())}
    if draft != vocab:
        rest = [i for i in mx.random.permutation(vocab).tolist() if i not in keep]
        ids = sorted(set(keep) | set(rest[: draft - len(set(keep))]))
        params["d2t"] = mx.array([t - i for i, t in enumerate(ids)], dtype=mx.int32)
    else:
        ids = list(range(vocab))
    for k, v in params.items():
        if _OUT_PROJ.search("." + k):
            params[k] = v * scale
    tp = target["params"]
    params["embed_tokens.weight"] = tp["model.embed_tokens.weight"]
    if copy:
        h = model.hidden_size
        params["fc.weight"] = mx.concatenate([mx.zeros((h, 2 * h)), mx.eye(h)], axis=1)
        params["norm.weight"] = tp["model.norm.weight"]
        params["lm_head.weight"] = tp["lm_head.weight"][mx.array(ids)]
    model.load_weights(list(params.items()))
    mx.eval(model.parameters())

    files = {}
    for k, v in params.items():
        if sglang and k.startswith("layers.0."):
            k = "midlayer." + k[len("layers.0.") :]
        if sglang and k == "embed_tokens.weight":
            continue  # SGLang/EAGLE repos use the target's
        if k not in ("lm_head.weight", "d2t"):
            k = prefix + k
        files[k] = v.astype(mx.int64) if k == "d2t" else v
    if draft != vocab:
        files["t2d"] = mx.zeros((vocab,), dtype=mx.bool_)
        files["t2d"][mx.array(ids)] = True
    (path / "config.json").write_text(json.dumps(cfg))
    mx.save_safetensors(str(path / "model.safetensors"), files, metadata={"format": "pt"})
    return path, model
