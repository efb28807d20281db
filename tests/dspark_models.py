"""Tiny DSpark drafters built with mlx-vlm's own classes, in the layouts users get:

- DeepSeek-V4.1's ``mtp.<stage>.*`` tensors inside the main checkpoint (DeepSeek's
  naming: the inverse of mlx-vlm's ``DeepseekV4DsparkDraftModel.sanitize``);
- the ``deepseek_v4_dspark`` repo mlx-vlm's splitter writes from that checkpoint;
- a ``dspark`` repo (Qwen-style backbone, DFlash layout with ``projector_type``
  ``dspark``), mlx-vlm's ``DSparkDraftModel``.

``bigram``: the Markov head is the target's bigram table (``markov_w1`` rows are the
target's final-normed embeddings, ``markov_w2`` its output head) and the block's own
logits are scaled by ``base_scale`` (its final norm): on a target whose layers add
little, drafts follow the target most of the time, not always.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from tests.deepseek_v4_models import _randomize, _raw_block

# What the V4.1 tiny declares for its drafter: three stages, blocks of five drafts.
V41_DSPARK = dict(
    num_nextn_predict_layers=3, dspark_block_size=5, dspark_target_layer_ids=[0, 1, 2],
    dspark_markov_rank=32, dspark_noise_token_id=5,
)  # fmt: skip


def _bigram(params: dict, target: dict, final_norm: str, base_scale: float, eps: float):
    """Markov head := the target's bigram logits; the block's own logits scaled by
    ``base_scale`` (its final norm's weight)."""
    embed = target["model.embed_tokens.weight"]
    params["markov_head.markov_w1.weight"] = mx.fast.rms_norm(
        embed, target["model.norm.weight"], eps
    )
    params["markov_head.markov_w2.weight"] = target["lm_head.weight"]
    params[final_norm] = mx.full(params[final_norm].shape, base_scale)


def build_v4_dspark(cfg: dict, seed: int, target: dict | None = None, base_scale=1.0) -> dict:
    """mlx-vlm's DeepseekV4DsparkDraftModel parameters (its names) for target config
    ``cfg`` (DeepSeek-V4 / V4.1 with the dspark_* fields)."""
    from mlx_vlm.speculative.drafters import deepseek_v4_dspark as module

    dcfg = module.ModelConfig.from_dict(  # the fields mlx-vlm's splitter writes
        {
            "text_config": cfg,
            "n_mtp_layers": cfg["num_nextn_predict_layers"],
            "target_layer_ids": cfg["dspark_target_layer_ids"],
            "markov_rank": cfg["dspark_markov_rank"],
            "mask_token_id": cfg["dspark_noise_token_id"],
            "block_size": cfg["dspark_block_size"] + 1,
        }
    )
    mx.random.seed(seed + 2000)
    model = module.Model(dcfg)
    params = _randomize(dict(tree_flatten(model.parameters())), 0.5)
    if target is not None:
        final = f"stages.{cfg['num_nextn_predict_layers'] - 1}.norm.weight"
        _bigram(params, target, final, base_scale, cfg["rms_norm_eps"])
    return params


def v4_dspark_raw(params: dict, cfg: dict) -> dict[str, mx.array]:
    """DSpark parameters -> the ``mtp.<stage>.*`` tensors V4.1 checkpoints carry."""
    last = cfg["num_nextn_predict_layers"] - 1
    out: dict[str, mx.array] = {}
    for k, v in params.items():
        if k.startswith("markov_head."):
            out[f"mtp.{last}.{k}"] = v
            continue
        stage, rest = k.removeprefix("stages.").split(".", 1)
        rest = rest.replace("hc_head.", "hc_head_")
        out.update({f"mtp.{stage}.{n}": t for n, t in _raw_block(rest, v, cfg).items()})
    hidden, rank = cfg["hidden_size"], cfg["dspark_markov_rank"]
    out[f"mtp.{last}.confidence_head.proj.weight"] = mx.zeros((1, hidden + rank))  # unused
    out[f"mtp.{last}.confidence_head.proj.bias"] = mx.zeros((1,))
    return out


def split_v4_dspark(raw: Path, out: Path) -> Path:
    """The separate ``deepseek_v4_dspark`` repo mlx-vlm's splitter writes."""
    from mlx_vlm.speculative.drafters.deepseek_v4_dspark.split import split_deepseek_v4_dspark

    if out.exists():
        shutil.rmtree(out)
    split_deepseek_v4_dspark(str(raw), str(out))
    return out


def dspark_config(target_cfg: dict, layers=(0, 2), block_size: int = 4, mask: int = 5) -> dict:
    """A ``dspark`` repo config (Qwen-style backbone) for a target config."""
    return {
        "architectures": ["DSparkDraftModel"],
        "model_type": "qwen3",
        "hidden_size": target_cfg["hidden_size"],
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "rms_norm_eps": 1e-6,
        "vocab_size": target_cfg["vocab_size"],
        "rope_theta": 10000.0,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
        "block_size": block_size,
        "num_target_layers": target_cfg["num_hidden_layers"],
        "dflash_config": {
            "projector_type": "dspark",
            "mask_token_id": mask,
            "target_layer_ids": list(layers),
            "markov_rank": target_cfg["hidden_size"],
        },
    }


def make_dspark(
    path: Path, cfg: dict, seed: int = 1, target: dict | None = None, base_scale: float = 1.0
) -> Path:
    """A ``dspark`` repo: mlx-vlm's DSparkDraftModel, random (or bigram) weights."""
    from mlx_vlm.speculative.drafters import dspark

    path.mkdir(parents=True, exist_ok=True)
    mx.random.seed(seed)
    model = dspark.Model(dspark.ModelConfig.from_dict(cfg))
    params = {k: v.astype(mx.float32) for k, v in tree_flatten(model.parameters())}
    if target is not None:
        _bigram(params, target, "norm.weight", base_scale, cfg["rms_norm_eps"])
    (path / "config.json").write_text(json.dumps(cfg))
    mx.save_safetensors(str(path / "model.safetensors"), params, metadata={"format": "mlx"})
    return path
