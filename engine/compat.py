"""Which decoders (MTP heads, draft models) can speculate for which target models.

Decoder folders come in several published shapes (see shared/MTP_NOTES.md):

- mlx-vlm split: config ``{"model_type": "<family>_mtp", "text_config": {...}}``;
- SGLang NextN export: ``architectures`` ``[...NextN]``, ``num_hidden_layers`` 1;
- a raw ``mtp.safetensors`` sidecar with a copy of the target's config;
- our own trained heads: ``"lookahead_decoder": {"target": ..., ...}`` in config.json;
- Gemma-style ``<family>_assistant`` drafters.

A main checkpoint may also carry MTP weights itself (``num_nextn_predict_layers`` /
``mtp_num_hidden_layers`` > 0 and the weights kept). A decoder pairs with a target when
family, hidden size, vocab size and tokenizer agree; every refusal says which did not.
Reads JSON and tokenizer files only: cheap enough for the GUI thread after the first
call (tokenizer fingerprints are cached per file).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from engine.drafters import kinds as drafter_kinds
from engine.hub.cache import repo_id_for_path
from engine.hub.describe import has_mtp_weight_names, mtp_layers

WEIGHT_SUFFIXES = (".safetensors", ".npz", ".gguf")


@dataclass(frozen=True)
class Pairing:
    ok: bool
    reason: str  # why not; when ok, what was checked


@dataclass(frozen=True)
class DecoderInfo:
    format: str  # "mlx-vlm" | "nextn" | "sidecar" | "lookahead" | "assistant" | "dflash" | ...
    family: str  # the target's model_type it is made for ("" when unknown)
    hidden_size: int | None
    vocab_size: int | None
    target: str  # declared target repo id or name ("" when none)
    tokenizer_sha256: str = ""  # our heads: sha256 of the target's tokenizer.json


def load_config(path: Path) -> dict:
    try:
        data = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _dims(cfg: dict, *more: dict) -> tuple[int | None, int | None]:
    """(hidden size, vocab size), looking into text_config for multimodal configs."""
    hidden = vocab = None
    for c in (*more, cfg, cfg.get("text_config") or {}):
        hidden = hidden or c.get("hidden_size") or c.get("d_model") or c.get("n_embd")
        vocab = vocab or c.get("vocab_size") or c.get("padded_vocab_size")
    return (int(hidden) if hidden else None), (int(vocab) if vocab else None)


def _weight_files(path: Path) -> list[Path]:
    try:
        return [p for p in Path(path).iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()]
    except OSError:
        return []


def decoder_info(path: Path, config: dict | None = None) -> DecoderInfo | None:
    """How ``path`` is a decoder repo, or None for an ordinary model folder."""
    cfg = load_config(path) if config is None else config
    model_type = str(cfg.get("model_type") or "")
    archs = " ".join(str(a) for a in cfg.get("architectures") or [])
    hidden, vocab = _dims(cfg)
    if isinstance(own := cfg.get("lookahead_decoder"), dict):
        hidden, vocab = _dims(cfg, own)
        family = str(own.get("family") or own.get("model_type") or model_type)
        target, tok = str(own.get("target") or ""), str(own.get("tokenizer_sha256") or "")
        return DecoderInfo("lookahead", _strip(family), hidden, vocab, target, tok)
    if (fmt := drafter_kinds.drafter_format(cfg)) is not None:  # DFlash, EAGLE-3, assistants
        hidden, vocab = drafter_kinds.dims(fmt, cfg)
        return DecoderInfo(fmt, drafter_kinds.family(fmt, cfg), hidden, vocab, _declared(cfg))
    if model_type.endswith("_mtp"):
        # text_config names the exact family (one qwen3_5_mtp type serves dense and MoE).
        inner = str((cfg.get("text_config") or {}).get("model_type") or "")
        family = _norm_family(inner) if inner else model_type[: -len("_mtp")]
        return DecoderInfo("mlx-vlm", family, hidden, vocab, _declared(cfg))
    if "NextN" in archs and int(cfg.get("num_hidden_layers") or 0) == 1:
        return DecoderInfo("nextn", model_type, hidden, vocab, _declared(cfg))
    if model_type.endswith("_assistant"):
        return DecoderInfo(
            "assistant", model_type[: -len("_assistant")], hidden, vocab, _declared(cfg)
        )
    weights = _weight_files(path)
    if weights and all(w.name.startswith("mtp") for w in weights):
        return DecoderInfo("sidecar", model_type, hidden, vocab, _declared(cfg))
    return None


def _declared(cfg: dict) -> str:
    for key in ("target_model", "base_model"):  # not _name_or_path: often a local path
        if isinstance(cfg.get(key), str) and cfg[key]:
            return cfg[key]
    return ""


def _strip(family: str) -> str:
    return re.sub(r"_(mtp|decoder|head)$", "", family)


def _families(cfg: dict) -> set[str]:
    out = set()
    for c in (cfg, cfg.get("text_config") or {}):
        if mt := c.get("model_type"):
            out.add(_norm_family(str(mt)))
    return out


def _norm_family(name: str) -> str:
    return re.sub(r"_text$", "", name.lower().replace("-", "_"))


def carries_mtp(path: Path, config: dict | None = None) -> str:
    """For a main model folder: "weights" (MTP layers present), "declared" or ""."""
    cfg = load_config(path) if config is None else config
    if (Path(path) / "mtp.safetensors").is_file():
        return "weights"
    if not mtp_layers(cfg):
        return ""
    return "weights" if has_mtp_weight_names(weight_names(path), cfg) else "declared"


def weight_names(path: Path) -> list[str]:
    """Tensor names of a model folder, from its index or its safetensors headers."""
    names: list[str] = []
    for index in Path(path).glob("*.safetensors.index.json"):
        try:
            names += list(json.loads(index.read_text()).get("weight_map", {}))
        except (OSError, ValueError, AttributeError):
            continue
    if names:
        return names
    for f in sorted(Path(path).glob("*.safetensors")):
        names += [k for k in safetensors_header(f) if k != "__metadata__"]
    return names


def safetensors_header(path: Path) -> dict:
    """A safetensors file's JSON header (names, dtypes, shapes) without the tensors."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100_000_000:  # no honest header is this big
                return {}
            data = json.loads(f.read(length))
    except (OSError, ValueError, struct.error):
        return {}
    return data if isinstance(data, dict) else {}


def weights_dtype(path: Path) -> str:
    """The storage dtype most tensors of the first weight file use ("fp32", "bf16"...)."""
    from engine.hub.describe import quantization

    files = sorted(Path(path).glob("*.safetensors"))
    counts: dict[str, int] = {}
    for name, t in safetensors_header(files[0]).items() if files else ():
        if name != "__metadata__" and isinstance(t, dict):
            counts[str(t.get("dtype"))] = counts.get(str(t.get("dtype")), 0) + 1
    return quantization({}, "", counts) if counts else ""


# -- tokenizers

_FINGERPRINTS: dict[tuple[str, int, int], str | None] = {}


def tokenizer_fingerprint(path: Path) -> str | None:
    """A hash of what makes two tokenizers the same (vocab, merges, added tokens)."""
    path = Path(path)
    for name in ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model"):
        f = path / name
        try:
            st = f.stat()
        except OSError:
            continue
        key = (str(f.resolve()), st.st_mtime_ns, st.st_size)
        if key not in _FINGERPRINTS:
            _FINGERPRINTS[key] = _fingerprint_file(f)
        if _FINGERPRINTS[key] is not None:
            return _FINGERPRINTS[key]
    return None


def _fingerprint_file(f: Path) -> str | None:
    try:
        raw = f.read_bytes()
    except OSError:
        return None
    if f.name != "tokenizer.json":
        extra = f.with_name("merges.txt") if f.name == "vocab.json" else None
        if extra is not None and extra.is_file():
            raw += extra.read_bytes()
        return hashlib.sha256(raw).hexdigest()
    try:
        data = json.loads(raw)
        model = data.get("model") or {}
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
        added = sorted((t.get("id"), t.get("content")) for t in data.get("added_tokens") or [])
        canonical = [model.get("type"), model.get("vocab"), merges, added]
    except (ValueError, AttributeError, TypeError):
        return None
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def _base_name(name: str) -> str:
    """``mlx-community/Qwen3.5-4B-4bit`` -> ``qwen3.5-4b``: a model, whatever its storage."""
    base = name.rstrip("/").rsplit("/", 1)[-1].lower()
    return re.sub(
        r"([-_.](mlx|\d[-_]?bits?|q\d(_k)?(_[a-z])?|bf16|fp16|f16|fp32|f32|mxfp4|dwq|awq|gptq))+$",
        "",
        base,
    )


def model_name(path: Path) -> str:
    """The repo id of a hub snapshot, else the folder name."""
    if repo := repo_id_for_path(Path(path)):
        return repo
    return Path(path).name


# -- pairing


def check_pairing(target_dir: Path, decoder_dir: Path) -> Pairing:
    """Whether ``decoder_dir`` can draft for ``target_dir``, and why (not)."""
    target_dir, decoder_dir = Path(target_dir), Path(decoder_dir)
    tcfg, dcfg = load_config(target_dir), load_config(decoder_dir)
    if not tcfg:
        return Pairing(False, f"{target_dir.name} has no readable config.json")
    if not dcfg:
        return Pairing(False, f"{decoder_dir.name} has no readable config.json")
    if decoder_info(target_dir, tcfg) is not None:
        return Pairing(False, f"{model_name(target_dir)} is itself a decoder, not a chat model")
    if target_dir.resolve() == decoder_dir.resolve():
        return _self_pairing(target_dir, tcfg)
    dec = decoder_info(decoder_dir, dcfg)
    if dec is None:
        return _draft_pairing(target_dir, tcfg, decoder_dir, dcfg)
    families = _families(tcfg)
    if dec.family and families and _norm_family(dec.family) not in families:
        return Pairing(
            False,
            f"made for {dec.family} models, this one is a {'/'.join(sorted(families))} model",
        )
    hidden, vocab = _dims(tcfg)
    target_name = model_name(target_dir)
    if dec.hidden_size and hidden and dec.hidden_size != hidden:
        return Pairing(
            False, f"hidden size {dec.hidden_size}, but {target_name} has hidden size {hidden}"
        )
    if dec.vocab_size and vocab and dec.vocab_size != vocab:
        return Pairing(False, f"vocabulary of {dec.vocab_size}, but {target_name} has {vocab}")
    if drafter_kinds.drafter_format(dcfg) and (why := drafter_kinds.check(dec.format, dcfg, tcfg)):
        return Pairing(False, why)
    target_tok = target_dir / "tokenizer.json"
    if dec.tokenizer_sha256 and target_tok.is_file():  # our heads record what they saw
        if _file_sha256(target_tok) != dec.tokenizer_sha256.lower():
            return Pairing(
                False,
                "its tokenizer differs from the model's "
                "(it was trained with another tokenizer: tokenizer_sha256 differs)",
            )
        tok: bool | None = True
    else:
        tok = _same_tokenizer(target_dir, decoder_dir)
    if tok is False:
        return Pairing(False, "its tokenizer differs from the model's")
    if tok is None and dec.target and _base_name(dec.target) != _base_name(target_name):
        return Pairing(False, f"made for {dec.target}, not {target_name}")
    checked = f"{dec.family + ' family, ' if dec.family else ''}hidden {hidden}, vocab {vocab}"
    if tok:
        checked += ", same tokenizer"
    elif dec.target:
        checked += f", made for {dec.target}"
    else:
        checked += " (tokenizer not checked: the decoder ships none)"
    return Pairing(True, f"{_label(dec.format)}: {checked}")


def _label(fmt: str) -> str:
    return {
        "mlx-vlm": "MTP head (mlx-vlm format)",
        "nextn": "MTP head (NextN export)",
        "sidecar": "MTP head (mtp.safetensors)",
        "lookahead": "trained MTP head",
        **drafter_kinds.LABELS,
    }.get(fmt, fmt)


def _same_tokenizer(a: Path, b: Path) -> bool | None:
    fa, fb = tokenizer_fingerprint(a), tokenizer_fingerprint(b)
    if fa is None or fb is None:
        return None
    return fa == fb


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _self_pairing(path: Path, cfg: dict) -> Pairing:
    status = carries_mtp(path, cfg)
    if status == "weights":
        return Pairing(True, f"built-in MTP weights ({mtp_layers(cfg) or 1} layer)")
    if status == "declared":
        return Pairing(
            False, "the config declares MTP layers but the weights were dropped in conversion"
        )
    return Pairing(False, "a model cannot be its own draft model")


def _draft_pairing(target: Path, tcfg: dict, draft: Path, dcfg: dict) -> Pairing:
    """A separate small model as drafter: only the tokenizer has to agree."""
    tok = _same_tokenizer(target, draft)
    if tok is False:
        return Pairing(False, "draft model with a different tokenizer")
    _, tv = _dims(tcfg)
    _, dv = _dims(dcfg)
    if tok is None:
        if tv and dv and tv != dv:
            return Pairing(False, f"draft model with a vocabulary of {dv}, the model has {tv}")
        return Pairing(True, "draft model: same vocabulary size (tokenizer not checked)")
    return Pairing(True, "draft model: same tokenizer")
