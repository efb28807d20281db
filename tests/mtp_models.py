"""Tiny random-weight models of every MTP family, in real checkpoint naming, MTP included.

Targets are written the way their publishers ship them (transformers layout:
per-expert or fused expert tensors, DeepSeek's fused ``kv_b_proj``, Qwen's
zero-centred norms and conv1d layout), so mlx-lm's own ``sanitize`` loads them, and
our MTP loader has to undo the same things for the MTP module.

The MTP module is a "copy" head that provably drafts the target's greedy token
whenever the target behaves as a bigram model: ``eh_proj = [I | 0]`` passes the
normed token embedding through (``[0 | I]`` for MiMo's [hidden, embedding] order),
the block's output projections are scaled by ``mtp_scale`` (0: the block adds
nothing) and the output norm is the target's final norm. With ``layer_scale`` 0
every target layer adds exactly zero, so the target's next token is
``argmax W·norm(E t)`` — what the head computes from the embedding of t (up to a
second RMS normalisation, ~1e-7 relative). With both scales > 0 the target and the
head deviate from that now and then: drafts are accepted and rejected.
Logits are scaled (``logit_scale``) so greedy choices are never float near-ties.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from tests.tiny_models import write_tokenizer

HF = {"format": "pt"}  # what transformers writes
MLX = {"format": "mlx"}
_OUT_PROJ = re.compile(r"\.(o_proj|down_proj|out_proj)\.weight$")
_QWEN_NORM = re.compile(r"(input_layernorm|post_attention_layernorm|q_norm|k_norm)\.weight$")

_MLA = dict(
    kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8, v_head_dim=8, qk_nope_head_dim=8,
    n_shared_experts=1, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
    routed_scaling_factor=1.0, topk_method="noaux_tc", scoring_func="sigmoid",
    norm_topk_prob=True, n_group=1, topk_group=1, moe_layer_freq=1,
)  # fmt: skip
_LINEAR = dict(
    linear_num_value_heads=2, linear_num_key_heads=1, linear_key_head_dim=8,
    linear_value_head_dim=8, linear_conv_kernel_dim=4, full_attention_interval=2,
)  # fmt: skip
_QWEN_MOE = dict(
    num_experts=4, num_experts_per_tok=2, decoder_sparse_step=1, mlp_only_layers=[],
    shared_expert_intermediate_size=32, moe_intermediate_size=16, norm_topk_prob=True,
)  # fmt: skip
_COMMON = dict(
    hidden_size=32, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1,
    rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=4096,
    tie_word_embeddings=False, eos_token_id=2,
)  # fmt: skip

FAMILIES = (
    "deepseek_v3",
    "deepseek_v32",
    "glm4_moe",
    "qwen3_next",
    "qwen3_5",
    "qwen3_5_moe",
    "mimo",
)
NEXTN_ARCH = {
    "deepseek_v3": "DeepseekV3ForCausalLMNextN",
    "deepseek_v32": "DeepseekV32ForCausalLMNextN",
    "glm4_moe": "Glm4MoeForCausalLMNextN",
}


def family_config(family: str, vocab: int) -> dict:
    """A tiny config of ``family`` that declares one MTP layer, as published configs do."""
    c = dict(_COMMON, vocab_size=vocab, model_type=family)
    if family == "deepseek_v3":  # its MTP layer at model.layers.2, not mlx-lm's hard-coded 61
        c.update(_MLA, num_hidden_layers=2, first_k_dense_replace=1, num_key_value_heads=2)
    elif family == "deepseek_v32":
        c.update(_MLA, num_hidden_layers=2, first_k_dense_replace=1, num_key_value_heads=2)
        c.update(index_head_dim=8, index_n_heads=2, index_topk=2048)
    elif family == "glm4_moe":
        c.update({k: v for k, v in _MLA.items() if not k.startswith(("kv_", "q_", "qk_", "v_"))})
        c.update(num_hidden_layers=2, first_k_dense_replace=1, head_dim=16, use_qk_norm=True)
        c.update(attention_bias=False, partial_rotary_factor=0.5, rope_scaling=None)
    elif family == "qwen3_next":
        c.update(
            **_LINEAR, **_QWEN_MOE, num_hidden_layers=2, head_dim=16, partial_rotary_factor=0.25
        )
        c["mtp_num_hidden_layers"] = 1
        return c
    elif family in ("qwen3_5", "qwen3_5_moe"):
        text = dict(c, model_type=f"{family}_text", num_hidden_layers=2, head_dim=16, **_LINEAR)
        text["rope_parameters"] = {
            "rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25,
        }  # fmt: skip
        text["mtp_num_hidden_layers"] = 1
        if family == "qwen3_5_moe":
            text.update(_QWEN_MOE)
        return {"model_type": family, "text_config": text, "vision_config": {},
                "tie_word_embeddings": False, "eos_token_id": 2}  # fmt: skip
    elif family == "mimo":
        c.update(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4)
        c.update(num_key_value_heads=2)
    elif family == "llama":
        c.update(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
        return c
    c["num_nextn_predict_layers"] = 1
    return c


def text_cfg(cfg: dict) -> dict:
    return {**{k: v for k, v in cfg.items() if k != "text_config"}, **cfg.get("text_config", {})}


def mtp_prefix(family: str, cfg: dict) -> str:
    if family in ("deepseek_v3", "deepseek_v32", "glm4_moe"):
        return f"model.layers.{text_cfg(cfg)['num_hidden_layers']}."
    return "model.mtp_layers.0." if family == "mimo" else "mtp."


# -- building (MLX layout)


def build_target(cfg: dict, seed: int, layer_scale: float, logit_scale: float) -> dict:
    from mlx_lm.utils import _get_classes

    model_cls, args_cls = _get_classes(cfg)
    mx.random.seed(seed)
    model = model_cls(args_cls.from_dict(cfg))
    params = {k: v.astype(mx.float32) for k, v in tree_flatten(model.parameters())}
    for k, v in params.items():
        if _OUT_PROJ.search(k):
            params[k] = v * layer_scale
        elif k.endswith("lm_head.weight"):
            params[k] = v * logit_scale
        elif k.endswith("model.norm.weight"):  # a non-trivial final norm the head must share
            params[k] = 1.0 + 0.2 * mx.random.uniform(-1, 1, v.shape)
    return params


def _block(family: str, cfg: dict):
    import importlib

    tc = text_cfg(cfg)
    if family in ("qwen3_5", "qwen3_5_moe"):
        from mlx_lm.models import qwen3_5

        args = qwen3_5.TextModelArgs.from_dict(tc)
        return qwen3_5.DecoderLayer(replace(args, full_attention_interval=1), 0)
    module = importlib.import_module(f"mlx_lm.models.{family}")
    args = module.ModelArgs.from_dict(tc)
    n = tc["num_hidden_layers"]
    if family == "qwen3_next":
        return module.Qwen3NextDecoderLayer(replace(args, full_attention_interval=1), 0)
    if family in ("mimo", "llama"):
        return module.TransformerBlock(args)
    cls = {"deepseek_v3": "DeepseekV3DecoderLayer", "deepseek_v32": "DeepseekV32DecoderLayer"}
    return getattr(module, cls.get(family, "DecoderLayer"))(args, n)  # MoE at index n


def build_mtp(family: str, cfg: dict, target: dict, seed: int, mtp_scale: float, copy=True):
    """The MTP module's tensors in canonical names and MLX layout."""
    mx.random.seed(seed + 1000)
    h = text_cfg(cfg)["hidden_size"]
    block = {k: v.astype(mx.float32) for k, v in tree_flatten(_block(family, cfg).parameters())}
    out = {f"layers.0.{k}": (v * mtp_scale if _OUT_PROJ.search("." + k) else v)
           for k, v in block.items()}  # fmt: skip
    eye, zero = mx.eye(h), mx.zeros((h, h))
    if copy:
        out["eh_proj.weight"] = mx.concatenate([zero, eye] if family == "mimo" else [eye, zero], 1)
    else:
        out["eh_proj.weight"] = mx.random.uniform(-0.2, 0.2, (h, 2 * h))
    out["enorm.weight"] = mx.ones((h,))
    out["hnorm.weight"] = mx.ones((h,))
    out["norm.weight"] = next(v for k, v in target.items() if k.endswith("model.norm.weight"))
    return out


# -- transformers layout


def _unstack(k: str, v: mx.array, fused: bool) -> dict:
    """switch_mlp tensors -> per-expert (or Qwen3.5-MoE's fused) checkpoint tensors."""
    base, proj = re.match(r"(.*\.mlp)\.switch_mlp\.(\w+)\.weight$", k).groups()
    if fused:
        return {f"{base}.experts.down_proj": v} if proj == "down_proj" else {}
    return {f"{base}.experts.{e}.{proj}.weight": v[e] for e in range(v.shape[0])}


def to_hf(family: str, params: dict) -> dict:
    """MLX-layout tensors (main model or canonical MTP names) -> transformers layout."""
    out: dict[str, mx.array] = {}
    fused = family == "qwen3_5_moe"
    for k, v in params.items():
        if ".switch_mlp." in k:
            out.update(_unstack(k, v, fused))
            if fused and k.endswith("switch_mlp.gate_proj.weight"):
                up = params[k.replace("gate_proj", "up_proj")]
                out[k.replace("switch_mlp.gate_proj.weight", "experts.gate_up_proj")] = (
                    mx.concatenate([v, up], axis=-2)
                )
            continue
        if k.endswith("self_attn.embed_q.weight"):  # MLA: re-fuse kv_b_proj
            wv = params[k.replace("embed_q", "unembed_out")]
            kv = mx.concatenate([v.swapaxes(-1, -2), wv], axis=1)
            out[k.replace("embed_q.weight", "kv_b_proj.weight")] = kv.reshape(-1, kv.shape[-1])
            continue
        if k.endswith("self_attn.unembed_out.weight"):
            continue
        if family.startswith("qwen3"):
            if "conv1d.weight" in k:
                v = v.moveaxis(2, 1)
            if v.ndim == 1 and (_QWEN_NORM.search(k) or k.endswith(("model.norm.weight", "enorm.weight", "hnorm.weight")) or k == "norm.weight"):  # fmt: skip
                v = v - 1.0  # zero-centred norms
        if family in ("qwen3_5", "qwen3_5_moe"):
            k = k.replace("language_model.model.", "model.language_model.")
            k = k.replace("language_model.lm_head.", "lm_head.")
        out[k] = v
    return out


_HF_NAMES = {
    "deepseek": {"enorm.": "enorm.", "hnorm.": "hnorm.", "eh_proj.": "eh_proj.", "norm.": "shared_head.norm."},
    "mimo": {"enorm.": "token_layernorm.", "hnorm.": "hidden_layernorm.", "eh_proj.": "input_proj.", "norm.": "final_layernorm."},
    "qwen": {"enorm.": "pre_fc_norm_embedding.", "hnorm.": "pre_fc_norm_hidden.", "eh_proj.": "fc.", "norm.": "norm."},
}  # fmt: skip


def mtp_to_hf(family: str, canon: dict, target: dict, prefix: str) -> dict:
    """Canonical MTP tensors -> the family's checkpoint names under ``prefix``."""
    style = "qwen" if family.startswith("qwen") else ("mimo" if family == "mimo" else "deepseek")
    out = {}
    for k, v in to_hf(family, canon).items():
        if k.startswith("layers.0.") and style != "qwen":
            out[prefix + k[len("layers.0.") :]] = v
            continue
        for old, new in _HF_NAMES[style].items():
            if k.startswith(old):
                k = new + k[len(old) :]
                break
        out[prefix + k] = v
    if style == "deepseek":  # real checkpoints carry copies of the shared embedding and head
        out[prefix + "embed_tokens.weight"] = target["model.embed_tokens.weight"]
        out[prefix + "shared_head.head.weight"] = target["lm_head.weight"]
    return out


# -- writing folders


def _write(path: Path, cfg: dict, weights: dict, meta: dict, name="model.safetensors") -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(cfg))
    mx.save_safetensors(str(path / name), weights, metadata=meta)


def make_target(
    path: Path,
    family: str,
    seed: int = 0,
    layer_scale: float = 0.3,
    mtp_scale: float = 0.3,
    logit_scale: float = 8.0,
    mtp: str = "embedded",  # "embedded" | "sidecar" | "none" (config still declares it)
    copy: bool = True,
    **overrides,
) -> dict:
    """Write a target folder; returns what decoder writers need (config, tensors).
    ``overrides`` change top-level config fields (e.g. hidden_size)."""
    path.mkdir(parents=True, exist_ok=True)
    vocab = write_tokenizer(path)
    cfg = {**family_config(family, vocab), **overrides}
    target = build_target(cfg, seed, layer_scale, logit_scale)
    canon = build_mtp(family, cfg, target, seed, mtp_scale, copy)
    main = to_hf(family, target) if family != "llama" else dict(target)
    prefix = mtp_prefix(family, cfg) if family != "llama" else ""
    module = mtp_to_hf(family, canon, main, prefix) if family != "llama" else {}
    if mtp == "embedded":
        main = {**main, **module}
    _write(path, cfg, main, HF)
    if mtp == "sidecar":
        mx.save_safetensors(str(path / "mtp.safetensors"), module, metadata=HF)
    return {"path": path, "family": family, "config": cfg, "canon": canon, "module": module,
            "prefix": prefix, "target": target}  # fmt: skip


def _copy_tokenizer(src: Path, dst: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / name, dst / name)


def write_nextn(built: dict, path: Path) -> Path:
    """SGLang's NextN export: the target's config with one layer, model.layers.0.*."""
    family, cfg = built["family"], dict(built["config"])
    cfg.update(num_hidden_layers=1, architectures=[NEXTN_ARCH[family]])
    weights = {
        "model.layers.0." + k[len(built["prefix"]) :]: v
        for k, v in built["module"].items()
        if not k.endswith(("embed_tokens.weight", "shared_head.head.weight"))  # left out
    }
    _write(path, cfg, weights, HF)
    _copy_tokenizer(built["path"], path)
    return path


def write_mlx_vlm(built: dict, path: Path) -> Path:
    """mlx-vlm's split format: {"model_type": "qwen3_5_mtp"}, flat names, MLX layout."""
    names = {"enorm.": "pre_fc_norm_embedding.", "hnorm.": "pre_fc_norm_hidden.", "eh_proj.": "fc."}
    weights = {}
    for k, v in built["canon"].items():
        for old, new in names.items():
            if k.startswith(old):
                k = new + k[len(old) :]
        weights[k] = v
    tc = (
        text_cfg(built["config"])
        if built["family"] == "qwen3_next"
        else built["config"]["text_config"]
    )
    cfg = {
        "model_type": "qwen3_5_mtp",
        "text_config": tc,
        "block_size": 3,
        "tie_word_embeddings": False,
    }
    _write(path, cfg, weights, MLX)
    _copy_tokenizer(built["path"], path)
    return path


def write_sidecar_file(built: dict, path: Path) -> Path:
    """A raw mtp.safetensors on its own (keys prefixed as in the main checkpoint)."""
    path.mkdir(parents=True, exist_ok=True)
    file = path / "mtp.safetensors"
    mx.save_safetensors(str(file), built["module"], metadata=HF)
    return file


def write_lookahead(built: dict, path: Path, draft_ids: list[int] | None = None) -> Path:
    """Our own decoder format (what the MTP training tool writes)."""
    import hashlib

    cfg_t = built["config"]
    tok = (built["path"] / "tokenizer.json").read_bytes()
    weights = dict(built["canon"])
    if draft_ids is not None:
        weights["draft_vocab_ids"] = mx.array(draft_ids, dtype=mx.int32)
    keep = ("model_type", "hidden_size", "intermediate_size", "num_attention_heads",
            "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "rope_scaling",
            "max_position_embeddings", "attention_bias", "mlp_bias", "vocab_size")  # fmt: skip
    cfg = {
        "model_type": "lookahead_mtp",
        "lookahead_decoder": {
            "kind": "mtp", "family": cfg_t["model_type"], "target": built["path"].name,
            "hidden_size": cfg_t["hidden_size"], "vocab_size": cfg_t["vocab_size"],
            "tokenizer_sha256": hashlib.sha256(tok).hexdigest(), "num_layers": 1,
            "draft_vocab_size": len(draft_ids) if draft_ids is not None else None,
            "trained": {"steps": 0, "note": "tiny random test head"},
        },
        "text_config": {k: cfg_t[k] for k in keep if k in cfg_t},
    }  # fmt: skip
    _write(path, cfg, weights, MLX)
    return path
