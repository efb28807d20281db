"""A tiny random DeepSeek-V4.1 model (mlx-lm's ``deepseek_v41``) in DeepSeek's own
checkpoint naming, optionally with a DSpark drafter under ``mtp.*`` as V4.1 ships.

Its layer caches (sliding window, compressed KV, indexer keys, the open group of a
compressing layer) cannot be trimmed, so every rejected draft goes through the
snapshot / restore / replay path. The window is short and two layers compress, so a
few dozen tokens exercise eviction and compression both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from tests.dspark_models import V41_DSPARK, build_v4_dspark, v4_dspark_raw
from tests.tiny_models import write_tokenizer

CONFIG = dict(
    model_type="deepseek_v41", hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
    head_dim=16, q_lora_rank=16, qk_rope_head_dim=8, o_groups=2, o_lora_rank=8,
    moe_intermediate_size=16, n_routed_experts=4, num_experts_per_tok=2, sliding_window=8,
    compress_ratios=[0, 4, 4], kv_source_layer_ids=[1, 2], index_source_layer_ids=[2],
    index_n_heads=2, index_head_dim=16, index_topk=4, hc_mult=2, hc_sinkhorn_iters=3,
    rms_norm_eps=1e-6, eos_token_id=2,
)  # fmt: skip
# What DeepSeek-V4.1 declares for its drafter (three DSpark stages, blocks of five).
DSPARK_CONFIG = V41_DSPARK

# MLX name fragment -> DeepSeek checkpoint fragment (mlx-lm's renames, undone).
_TO_RAW = (
    (".self_attn.", ".attn."),
    (".mlp.", ".ffn."),
    (".input_layernorm.", ".attn_norm."),
    (".post_attention_layernorm.", ".ffn_norm."),
    (".attn_hc.", ".hc_attn_"),
    (".ffn_hc.", ".hc_ffn_"),
    (".sinks", ".attn_sink"),
    (".q_a_proj.", ".wq_a."),
    (".q_b_proj.", ".wq_b."),
    (".shared_experts.gate_proj.", ".shared_experts.w1."),
    (".shared_experts.down_proj.", ".shared_experts.w2."),
    (".shared_experts.up_proj.", ".shared_experts.w3."),
    (".kv_proj.", ".wkv."),
    (".gate_proj.", ".wgate."),
    (".o_a_proj.", ".wo_a."),
    (".o_b_proj.", ".wo_b."),
    (".q_a_norm.", ".q_norm."),
    (".compressor.kv_norm.", ".compressor.norm."),
    (".indexer.k_proj.", ".indexer.wk."),
    (".gate.e_score_correction_bias", ".gate.bias"),
)
_EXPERTS = re.compile(r"^model\.(layers\.\d+)\.mlp\.experts\.switch_mlp\.(\w+)\.weight$")
_EXPERT_RAW = {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}


_OUT = re.compile(r"\.(o_b_proj|down_proj)\.weight$")


def build(
    vocab: int, seed: int, logit_scale: float = 8.0, layer_scale: float = 1.0
) -> dict[str, mx.array]:
    """The model's parameters (MLX names, float32). ``layer_scale`` multiplies every
    layer's output projections (0: the streams stay copies of the embedding, and the
    model is a bigram table)."""
    from mlx_lm.models import deepseek_v41

    mx.random.seed(seed)
    model = deepseek_v41.Model(deepseek_v41.ModelArgs.from_dict({**CONFIG, "vocab_size": vocab}))
    params = {k: v.astype(mx.float32) for k, v in tree_flatten(model.parameters())}
    params["lm_head.weight"] = params["lm_head.weight"] * logit_scale
    for k in params:
        if _OUT.search(k):
            params[k] = params[k] * layer_scale
    return params


def to_raw(params: dict[str, mx.array]) -> dict[str, mx.array]:
    """MLX names -> the names DeepSeek publishes (per-expert tensors, flat wo_a)."""
    out: dict[str, mx.array] = {}
    for k, v in params.items():
        if k == "lm_head.weight":
            out["head.weight"] = v
            continue
        if k == "model.embed_tokens.weight":
            out["embed.weight"] = v
            continue
        if m := _EXPERTS.match(k):
            layer, proj = m.groups()
            for e in range(v.shape[0]):
                out[f"{layer}.ffn.experts.{e}.{_EXPERT_RAW[proj]}.weight"] = v[e]
            continue
        if k.endswith(".o_a_proj.weight"):
            v = v.reshape(-1, v.shape[-1])
        for mlx_name, raw in _TO_RAW:
            k = k.replace(mlx_name, raw)
        out[k.removeprefix("model.")] = v
    return out


def make_deepseek_v41(
    path: Path,
    seed: int = 0,
    dspark: bool = False,
    perturb: float = 0.0,
    layer_scale: float = 1.0,
    bigram: float | None = None,
) -> dict:
    """Write the model folder; returns its path, config and MLX-named parameters.

    ``perturb`` adds noise of that scale to the output head: a draft model that agrees
    with the unperturbed model most of the time, not always. ``dspark``: a DSpark
    drafter under ``mtp.*`` built with mlx-vlm's class (random; with ``bigram`` its
    Markov head is the model's bigram table and its own logits scaled by ``bigram``,
    tests/dspark_models.py)."""
    path.mkdir(parents=True, exist_ok=True)
    vocab = write_tokenizer(path)
    cfg = {**CONFIG, "vocab_size": vocab, **(DSPARK_CONFIG if dspark else {})}
    params = build(vocab, seed, layer_scale=layer_scale)
    if perturb:
        head = params["lm_head.weight"]
        params["lm_head.weight"] = head + perturb * mx.random.normal(head.shape)
    weights = to_raw(params)
    if dspark:
        target = params if bigram is not None else None
        drafter = build_v4_dspark(cfg, seed, target, 1.0 if bigram is None else bigram)
        weights.update(v4_dspark_raw(drafter, cfg))
    (path / "config.json").write_text(json.dumps(cfg))
    mx.save_safetensors(str(path / "model.safetensors"), weights, metadata={"format": "pt"})
    return {"path": path, "config": cfg, "params": params, "dspark": drafter if dspark else None}
