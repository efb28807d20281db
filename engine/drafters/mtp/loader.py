"""Turn a HeadSource into a ready HeadBundle: read, rename, sanitize, build, load, cast.

Loaded heads are kept in ``loaded.extras["mtp_heads"]`` so every request after the
first reuses them (engine thread only).
"""

from __future__ import annotations

import re

import mlx.core as mx
import mlx.nn as nn

from engine.drafters.mtp import weights as W
from engine.drafters.mtp.families import FAMILIES, build_block, canonical_name, is_moe, sanitize
from engine.drafters.mtp.head import HeadBundle, MTPHead
from engine.drafters.mtp.sources import HeadSource
from engine.errors import DecoderError
from engine.target import HiddenStatesUnsupported, split_model

_REQUIRED = ("enorm.weight", "hnorm.weight", "eh_proj.weight", "norm.weight")
_FLOAT = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


def get_head(source: HeadSource, loaded) -> HeadBundle:
    heads = loaded.extras.setdefault("mtp_heads", {})
    if source.key not in heads:
        heads[source.key] = load_head(source, loaded)
    return heads[source.key]


def _canonical_names(source: HeadSource) -> dict[str, str]:
    """canonical name -> name in the files."""
    out: dict[str, str] = {}
    for name in source.index:
        if name == "draft_vocab_ids":
            continue
        rest = name[len(source.prefix) :]
        canon = rest if source.style == "canonical" else canonical_name(source.style, rest)
        if canon is not None:
            out[canon] = name
    return out


def _block_count(names, where: str) -> int:
    found = {int(m.group(1)) for n in names if (m := re.match(r"layers\.(\d+)\.", n))}
    if found != set(range(len(found))):
        raise DecoderError(f"{where}: decoder blocks {sorted(found)} are not numbered 0..n-1")
    return len(found)


def load_head(source: HeadSource, loaded) -> HeadBundle:
    where = source.label
    names = _canonical_names(source)
    missing = [r for r in _REQUIRED if r not in names]
    n_blocks = _block_count(names, where)
    declared = source.own.get("num_layers")
    if declared and n_blocks and int(declared) != n_blocks:
        raise DecoderError(f"{where}: config says {declared} block(s), the weights hold {n_blocks}")
    if missing or n_blocks == 0:
        missing += [] if n_blocks else ["layers.0.*"]
        raise DecoderError(
            f"{where}: the MTP weights are incomplete (missing {', '.join(missing)})"
        )
    cfg = source.config
    hidden = int(cfg.get("hidden_size") or 0)
    shape = W.shapes(source.index, [names["eh_proj.weight"]]).get(names["eh_proj.weight"])
    if shape and hidden and "eh_proj.scales" not in names and tuple(shape) != (hidden, 2 * hidden):
        raise DecoderError(
            f"{where}: eh_proj has shape {list(shape)}, expected [{hidden}, {2 * hidden}]"
        )
    tensors = W.load_tensors(source.index, list(names.values()))
    weights = {canon: tensors[name] for canon, name in names.items()}
    try:
        weights = sanitize(source.family, weights, cfg, source.raw)
        blocks = [build_block(source.family, cfg, is_moe(weights)) for _ in range(n_blocks)]
    except DecoderError:
        raise
    except Exception as e:  # a config or layout that mlx-lm's classes reject
        raise DecoderError(
            f"{where}: cannot build the MTP block ({type(e).__name__}: {e})"
        ) from None
    fam = FAMILIES.get(source.family)
    head = MTPHead(
        hidden,
        float(cfg.get("rms_norm_eps", 1e-6)),
        blocks,
        hidden_first=bool(fam and fam.hidden_first and source.kind != "lookahead"),
        family=source.family,
    )
    if any(k.endswith(".scales") for k in weights):
        q = source.quantization or {}
        nn.quantize(
            head,
            group_size=int(q.get("group_size", 64)),
            bits=int(q.get("bits", 4)),
            mode=q.get("mode", "affine"),
            class_predicate=lambda p, m: f"{p}.scales" in weights,
        )
    try:
        head.load_weights(list(weights.items()), strict=True)
    except ValueError as e:
        msg = str(e).splitlines()[0][:300]
        raise DecoderError(
            f"{where}: weights do not match the {source.family} MTP layout ({msg})"
        ) from None
    _match_dtype(head, loaded.dtype)
    try:
        mx.eval(head.parameters())
    except (RuntimeError, ValueError) as e:
        raise DecoderError(
            f"{where}: could not read the weights ({e}); they may be corrupted"
        ) from None
    head.eval()
    return _bundle(head, source, loaded)


def _match_dtype(head: MTPHead, target_dtype: str) -> None:
    """Same numeric policy as the target (fp32 on CPU: no fast low-precision matmul)."""
    if target_dtype not in _FLOAT:
        return
    from mlx_lm.utils import dequantize_model

    dequantize_model(head)
    head.set_dtype(_FLOAT[target_dtype])


def _bundle(head: MTPHead, source: HeadSource, loaded) -> HeadBundle:
    try:
        body, logits = split_model(loaded.model)
    except HiddenStatesUnsupported as e:
        raise DecoderError(f"MTP needs the model's hidden states: {e}") from None
    embed = getattr(body, "embed_tokens", None)
    if embed is None:
        raise DecoderError(f"{loaded.path.name}: no token embedding to share with an MTP head")
    bundle = HeadBundle(head, source.family, source.label, embed, logits)
    if "draft_vocab_ids" in source.index:
        ids = W.load_tensors(source.index, ["draft_vocab_ids"])["draft_vocab_ids"].astype(mx.int32)
        vocab = int(source.vocab_size or 0)
        declared = source.own.get("draft_vocab_size")
        if ids.ndim != 1 or (declared and ids.shape[0] != int(declared)):
            raise DecoderError(f"{source.label}: draft_vocab_ids does not match draft_vocab_size")
        if vocab and (int(mx.min(ids).item()) < 0 or int(mx.max(ids).item()) >= vocab):
            raise DecoderError(f"{source.label}: draft_vocab_ids holds ids outside the vocabulary")
        bundle.draft_ids = ids
        bundle.draft_rows = _head_rows(loaded.model, body, ids)
        mx.eval(bundle.draft_ids, bundle.draft_rows)
    return bundle


def _head_rows(model: nn.Module, body: nn.Module, ids: mx.array) -> mx.array:
    """Rows of the target's output head (or tied embedding) for ``ids``, as floats."""
    lm = getattr(model, "lm_head", None)
    if lm is None:
        lm = getattr(getattr(model, "language_model", None), "lm_head", None)
    layer = lm if lm is not None else body.embed_tokens
    weight = mx.take(layer.weight, ids, axis=0)
    if hasattr(layer, "scales"):  # quantized: dequantize just these rows
        biases = getattr(layer, "biases", None)
        weight = mx.dequantize(
            weight,
            mx.take(layer.scales, ids, axis=0),
            None if biases is None else mx.take(biases, ids, axis=0),
            group_size=layer.group_size,
            bits=layer.bits,
            mode=getattr(layer, "mode", "affine"),
        )
    return weight
