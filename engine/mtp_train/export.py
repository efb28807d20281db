"""Write a trained head as a decoder repo the engine loads and pairs by itself.

Layout (our "lookahead_mtp" format, read by engine/drafters/mtp/sources.py):
config.json, model.safetensors (canonical names ``enorm``, ``hnorm``, ``eh_proj``,
``layers.0.*``, ``norm`` and ``draft_vocab_ids``) and a README.md model card saying
how the head was trained and what acceptance it measured.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlx.core as mx
import numpy as np

from engine.drafters.mtp.families import family_name
from engine.mtp_train.head import block_config

_DTYPES = {"float16": mx.float16, "float32": mx.float32, "bfloat16": mx.bfloat16}


def tokenizer_sha256(model_path: Path) -> str | None:
    f = Path(model_path) / "tokenizer.json"
    return hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None


def export_decoder(
    out: Path,
    head_weights: dict[str, mx.array],
    draft_ids: np.ndarray | None,
    target_name: str,
    target_path: Path,
    target_config: dict,
    trained: dict,
    dtype: str = "float16",
    card_extra: str = "",
    tokenizer_hash: bool = True,
) -> Path:
    """Write the repo to ``out`` (created or overwritten) and return it.

    ``trained``: facts for config and card (data, tokens, steps, time, acceptance).
    Weights are stored in ``dtype`` (float16 halves the download; the loader casts
    to the target's dtype). ``tokenizer_hash=False`` writes no tokenizer_sha256, so
    the decoder pairs by family, sizes and vocabulary alone.
    """
    out.mkdir(parents=True, exist_ok=True)
    cfg = block_config(target_config)
    vocab = int(cfg.get("vocab_size") or 0)
    weights = {k: v.astype(_DTYPES[dtype]) for k, v in head_weights.items()}
    if draft_ids is not None and len(draft_ids) < vocab:
        weights["draft_vocab_ids"] = mx.array(np.asarray(draft_ids, dtype=np.int32))
        draft_size: int | None = len(draft_ids)
    else:
        draft_size = None
    config = {
        "model_type": "lookahead_mtp",
        "lookahead_decoder": {
            "kind": "mtp",
            "family": family_name(target_config),
            "target": target_name,
            "hidden_size": int(cfg["hidden_size"]),
            "vocab_size": vocab,
            "tokenizer_sha256": tokenizer_sha256(target_path) if tokenizer_hash else None,
            "num_layers": 1,
            "draft_vocab_size": draft_size,
            "trained": trained,
        },
        "text_config": cfg,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "README.md").write_text(model_card(config, weights, card_extra))
    return out


def head_weights_from(path: Path) -> dict[str, mx.array]:
    return dict(mx.load(str(path)).items())


def model_card(config: dict, weights: dict[str, mx.array], extra: str = "") -> str:
    own = config["lookahead_decoder"]
    t = own["trained"]
    params = sum(v.size for k, v in weights.items() if k != "draft_vocab_ids")
    size_mb = sum(v.nbytes for v in weights.values()) / 1e6
    lines = [
        "---",
        "library_name: mlx",
        "tags: [mtp, speculative-decoding, lookahead]",
        f"base_model: {own['target']}",
        "---",
        "",
        f"# MTP decoder for {own['target']}",
        "",
        "A DeepSeek-style multi-token-prediction head that drafts tokens for speculative "
        "decoding in Lookahead. It reads the target's final-normed "
        "hidden state h_i and the embedding of the next token t_{i+1} and predicts "
        "t_{i+2}: `eh_proj(concat[enorm(Emb(t)), hnorm(h)])`, one "
        f"`{own['family']}` decoder block (initialised from the target's last layer), a "
        "final norm, then the target's own (shared, frozen) output head, restricted to "
        f"a draft vocabulary of {own['draft_vocab_size'] or own['vocab_size']} tokens.",
        "",
        f"- {params / 1e6:.2f} M parameters, {size_mb:.1f} MB on disk",
        "- output is lossless: the target verifies every draft",
        "",
        "## How it was trained",
        "",
        "Self-distillation: the label at position i is the target's own next-token "
        "distribution at position i+1 (its top-8, renormalised over the draft vocabulary), "
        "computed in one target forward that also gave the hidden states.",
        "",
    ]
    for key, value in t.items():
        if key in ("files", "validation", "history"):
            continue
        if isinstance(value, dict):
            lines.append(f"- {key.replace('_', ' ')}:")
            lines += [f"  - {k.replace('_', ' ')}: {v}" for k, v in value.items()]
        else:
            lines.append(f"- {key.replace('_', ' ')}: {value}")
    val = t.get("validation") or {}
    if val:
        lines += [
            "",
            "## Measured acceptance (held-out data, greedy)",
            "",
            "First draft = the head's top token equals the target's; second draft = "
            "the chained draft is right given the first was.",
            "",
            "| data | positions | first draft | second draft |",
            "|---|---|---|---|",
        ]
        for kind, m in val.items():
            if isinstance(m, dict):
                lines.append(
                    f"| {kind} | {m['positions']} | {m['acc1']:.1%} | {m['acc2_given_1']:.1%} |"
                )
    if extra:
        lines += ["", extra.strip()]
    files = t.get("files") or []
    if files:
        lines += ["", "## Training text files", "", "```"] + files + ["```"]
    return "\n".join(lines) + "\n"


def training_summary(folder: Path) -> str:
    """One line on how a decoder this module wrote was trained and what it measured,
    e.g. "trained on 24 of your replies · 46% of first drafts accepted on held-out
    text (19% untrained)"; "" for other decoders. Reads config.json only."""
    try:
        own = json.loads((Path(folder) / "config.json").read_text())["lookahead_decoder"]
        t = own["trained"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    if not isinstance(t, dict):
        return ""
    data = t.get("data") or {}
    by_kind = data.get("tokens_by_kind") or {}
    parts = []
    if data.get("chats"):
        parts.append("your chats")
    if any(k in by_kind for k in ("code", "story", "chat")):
        parts.append("its own replies to built-in prompts")
    if any(k.startswith("text:") for k in by_kind):
        parts.append("text files")
    total = data.get("total_tokens")
    line = "trained on " + (", ".join(parts) or "self-distillation data")
    if isinstance(total, int):
        line += f" ({total:,} tokens)"
    acc = ((t.get("validation") or {}).get("all") or {}).get("acc1")
    if isinstance(acc, int | float):
        line += f" \u00b7 {acc:.0%} of first drafts accepted on held-out text"
        base = (t.get("untrained_validation") or {}).get("acc1")
        if isinstance(base, int | float):
            line += f" ({base:.0%} untrained)"
    return line
