"""Tiny random DeepSeek-V4 models built with mlx-vlm's own classes, in every layout
users download: DeepSeek's checkpoint naming (``mtp.0.*`` kept), an mlx-vlm
conversion (``mlx_vlm.convert``, optionally quantized; it drops the MTP) and the
separate ``deepseek_v4_mtp`` decoder repo mlx-vlm's splitter writes.

The MTP block is a "copy" head (as in tests/mtp_models.py): ``e_proj = I`` and
``h_proj = 0`` pass the normed embedding of the token through, and the block's
output projections are scaled by ``mtp_scale``. With ``layer_scale`` 0 every target
layer adds nothing, the hyper-connection streams stay equal copies of the
embedding, and the target is a bigram model the head reproduces; with both scales
> 0 they differ now and then, so drafts are accepted and rejected.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from tests.tiny_models import write_tokenizer

CONFIG = dict(
    model_type="deepseek_v4", hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
    head_dim=16, q_lora_rank=16, qk_rope_head_dim=8, o_groups=2, o_lora_rank=8,
    moe_intermediate_size=16, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
    sliding_window=8, compress_ratios=[0, 4, 128, 0], num_hash_layers=1, index_n_heads=2,
    index_head_dim=16, index_topk=4, hc_mult=2, hc_sinkhorn_iters=3,
    num_nextn_predict_layers=1, rms_norm_eps=1e-6, eos_token_id=2,
    tie_word_embeddings=False,
)  # fmt: skip
# Quantizable sizes (group size 32 needs every input dimension a multiple of 32).
QUANT_SIZES = dict(
    hidden_size=64, head_dim=32, q_lora_rank=32, o_lora_rank=32, moe_intermediate_size=32,
    index_head_dim=32, qk_rope_head_dim=16,
)  # fmt: skip

_OUT = re.compile(r"\.(wo_b|down_proj)\.weight$")
_W = {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}
_HC = re.compile(r"\.(attn|ffn)_hc\.(fn|base|scale)$")


def _randomize(params: dict[str, mx.array], layer_scale: float) -> dict[str, mx.array]:
    out = {}
    for k, v in params.items():
        if v.dtype == mx.int32:  # hash routing: a random expert choice per token
            out[k] = mx.random.randint(0, 4, v.shape).astype(mx.int32)
            continue
        v = v.astype(mx.float32)
        if k.endswith((".fn", ".base", "attn_sink", ".ape", ".gate.weight")):
            v = 0.3 * mx.random.normal(v.shape)
        if _OUT.search(k):
            v = v * layer_scale
        out[k] = v
    return out


def build(cfg: dict, seed: int, layer_scale: float, logit_scale: float = 8.0) -> dict:
    """mlx-vlm's deepseek_v4 Model's parameters (its MLX names), randomized."""
    from mlx_vlm.models import deepseek_v4

    mx.random.seed(seed)
    model = deepseek_v4.Model(deepseek_v4.ModelConfig.from_dict(cfg))
    params = _randomize(dict(tree_flatten(model.parameters())), layer_scale)
    params["language_model.lm_head.weight"] *= logit_scale
    norm = "language_model.model.norm.weight"
    params[norm] = 1.0 + 0.2 * mx.random.uniform(-1, 1, params[norm].shape)
    return params


def build_mtp(cfg: dict, target: dict, seed: int, mtp_scale: float) -> dict:
    """mlx-vlm's DeepseekV4MTPDraftModel parameters: the copy head."""
    from mlx_vlm.speculative.drafters.deepseek_v4_mtp import DeepseekV4MTPDraftModel, ModelConfig

    mx.random.seed(seed + 1000)
    drafter = DeepseekV4MTPDraftModel(ModelConfig.from_dict({"text_config": cfg}))
    params = _randomize(dict(tree_flatten(drafter.parameters())), mtp_scale)
    h = cfg["hidden_size"]
    params["e_proj.weight"] = mx.eye(h)
    params["h_proj.weight"] = mx.zeros((h, h))
    params["enorm.weight"] = mx.ones((h,))
    params["norm.weight"] = target["language_model.model.norm.weight"]
    return params


# -- DeepSeek's checkpoint naming


def _raw_block(k: str, v: mx.array, cfg: dict) -> dict[str, mx.array]:
    """One block tensor (mlx-vlm names below the block) -> DeepSeek's names."""
    if m := re.match(r"^(.*)ffn\.switch_mlp\.(\w+)\.weight$", k):
        return {f"{m[1]}ffn.experts.{e}.{_W[m[2]]}.weight": v[e] for e in range(v.shape[0])}
    if k.endswith("attn.wo_a.weight"):
        v = v.reshape(-1, v.shape[-1])
    if m := re.match(r"^(.*?)(attn|ffn)_hc\.(fn|base|scale)$", k):
        k = f"{m[1]}hc_{m[2]}_{m[3]}"
    k = k.replace("ffn.gate.e_score_correction_bias", "ffn.gate.bias")
    for mlx_name, raw in _W.items():
        k = k.replace(f"shared_experts.{mlx_name}.", f"shared_experts.{raw}.")
    return {k: v}


def to_raw(params: dict, mtp: dict | None, cfg: dict) -> dict[str, mx.array]:
    out: dict[str, mx.array] = {}
    top = {
        "language_model.model.embed_tokens.weight": "embed.weight",
        "language_model.lm_head.weight": "head.weight",
        "language_model.model.norm.weight": "norm.weight",
        "language_model.model.hc_head.fn": "hc_head_fn",
        "language_model.model.hc_head.base": "hc_head_base",
        "language_model.model.hc_head.scale": "hc_head_scale",
    }
    for k, v in params.items():
        if k in top:
            out[top[k]] = v
        else:
            out.update(_raw_block(k.removeprefix("language_model.model."), v, cfg))
    for k, v in (mtp or {}).items():
        k = k.removeprefix("decoder.").replace("hc_head.", "hc_head_")
        out.update({f"mtp.0.{n}": t for n, t in _raw_block(k, v, cfg).items()})
    return out


def make_raw(
    path: Path,
    seed: int = 0,
    layer_scale: float = 0.3,
    mtp_scale: float = 0.3,
    mtp: bool = True,
    **over,
) -> dict:
    """A V4 checkpoint in DeepSeek's naming, MTP block under ``mtp.0.*``."""
    path.mkdir(parents=True, exist_ok=True)
    vocab = write_tokenizer(path)
    cfg = {**CONFIG, "vocab_size": vocab, **over}
    params = build(cfg, seed, layer_scale)
    head = build_mtp(cfg, params, seed, mtp_scale) if mtp else None
    if not mtp:
        cfg["num_nextn_predict_layers"] = 0
    (path / "config.json").write_text(json.dumps(cfg))
    mx.save_safetensors(
        str(path / "model.safetensors"), to_raw(params, head, cfg), metadata={"format": "pt"}
    )
    return {"path": path, "config": cfg, "params": params, "mtp": head}


def convert_mlx(raw: Path, out: Path, quantize: bool = False, q_bits: int = 4, **kw) -> Path:
    """What ``mlx_vlm.convert`` writes from the raw checkpoint (the target only)."""
    from mlx_vlm.convert import convert

    if out.exists():
        shutil.rmtree(out)
    convert(str(raw), str(out), quantize=quantize, q_bits=q_bits, q_group_size=32, **kw)
    return out


def split_mtp(raw: Path, out: Path) -> Path:
    """The separate ``deepseek_v4_mtp`` decoder repo mlx-vlm's splitter writes."""
    from mlx_vlm.speculative.drafters.deepseek_v4_mtp.split import split_deepseek_v4_mtp

    if out.exists():
        shutil.rmtree(out)
    split_deepseek_v4_mtp(str(raw), str(out))
    return out
