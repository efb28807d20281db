"""Rebuild a Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) from GGUF.

GGUF keeps the vocabulary, merges and token types but only names the pre-tokenizer
(``tokenizer.ggml.pre``); the regexes below are the originals from the models'
tokenizer.json files, as catalogued by llama.cpp. A wrong pre-tokenizer still
round-trips text but splits it differently from training, so an unknown name is an
error rather than a silent guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, processors
from tokenizers import pre_tokenizers as pt

from engine.gguf.reader import GGUFError

CONTROL, USER_DEFINED = 3, 4

_LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = _LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
_TEKKEN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
_GPT4O = (
    rf"[^\r\n\p{{L}}\p{{N}}]?[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}\p{{M}}]*[\p{{Ll}}\p{{Lm}}\p{{Lo}}\p{{M}}]+{_CONTRACTIONS}"
    rf"|[^\r\n\p{{L}}\p{{N}}]?[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}\p{{M}}]+[\p{{Ll}}\p{{Lm}}\p{{Lo}}\p{{M}}]*{_CONTRACTIONS}"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_DEEPSEEK3 = (
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)


@dataclass(frozen=True)
class _Pre:
    splits: tuple[str, ...] = ()  # regexes applied before byte-level (isolated)
    digits: bool = False  # every digit its own piece (StarCoder family)
    ignore_merges: bool = False  # whole words in the vocab win (llama.cpp does the same)
    nfc: bool = False


_GPT2 = _Pre()
_FAMILIES: dict[str, _Pre] = {
    **dict.fromkeys(
        ["gpt2", "gpt-2", "default", "mpt", "olmo", "jais", "trillion", "phi-2"], _GPT2
    ),
    **dict.fromkeys(
        ["smollm", "starcoder", "refact", "codeshell", "command-r", "exaone", "minerva"],
        _Pre(digits=True),
    ),
    **dict.fromkeys(
        ["llama3", "llama-v3", "llama-bpe", "falcon3"], _Pre((_LLAMA3,), ignore_merges=True)
    ),
    **dict.fromkeys(["dbrx", "smaug-bpe", "chatglm-bpe"], _Pre((_LLAMA3,))),
    **dict.fromkeys(["qwen2", "deepseek-r1-qwen", "megrez"], _Pre((_QWEN2,), nfc=True)),
    **dict.fromkeys(["stablelm2", "hunyuan", "grok-2"], _Pre((_QWEN2,))),
    **dict.fromkeys(["tekken", "pixtral"], _Pre((_TEKKEN,), ignore_merges=True)),
    **dict.fromkeys(["gpt-4o", "llama4", "minimax-m2"], _Pre((_GPT4O,))),
    **dict.fromkeys(["deepseek-v3", "hunyuan-dense"], _Pre(_DEEPSEEK3)),
}
SUPPORTED_PRE = tuple(_FAMILIES)


class UnsupportedTokenizer(GGUFError):
    pass


@dataclass
class TokenizerInfo:
    """What the rest of the import needs to know about the rebuilt tokenizer."""

    pre: str
    eos_token_ids: list[int]
    bos_token_id: int | None
    special_tokens: dict[str, str | None] = field(default_factory=dict)


def check_tokenizer(meta: dict[str, Any], file_name: str) -> str:
    """Refuse tokenizers we cannot rebuild; returns the pre-tokenizer name."""
    model = meta.get("tokenizer.ggml.model")
    if model is None or "tokenizer.ggml.tokens" not in meta:
        raise UnsupportedTokenizer(f"{file_name} has no tokenizer vocabulary")
    if model == "llama":
        raise UnsupportedTokenizer(
            f"{file_name} uses a SentencePiece ('llama') tokenizer, which GGUF import does "
            "not support yet; import the original Hugging Face model instead"
        )
    if model != "gpt2":
        raise UnsupportedTokenizer(
            f"{file_name} uses a {model!r} tokenizer; only byte-level BPE ('gpt2') is supported"
        )
    pre_name = str(meta.get("tokenizer.ggml.pre", "default"))
    if pre_name not in _FAMILIES:
        raise UnsupportedTokenizer(
            f"{file_name} uses pre-tokenizer {pre_name!r}, which this importer does not know; "
            f"known: {', '.join(SUPPORTED_PRE)}"
        )
    return pre_name


def write_tokenizer(meta: dict[str, Any], out_dir: Path, file_name: str) -> TokenizerInfo:
    """Write tokenizer.json and tokenizer_config.json for the GGUF's vocabulary."""
    pre_name = check_tokenizer(meta, file_name)
    pre = _FAMILIES[pre_name]
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    types = [int(t) for t in meta.get("tokenizer.ggml.token_type", [1] * len(tokens))]

    def token_at(key: str) -> str | None:
        i = meta.get(key)
        return tokens[int(i)] if i is not None and 0 <= int(i) < len(tokens) else None

    tok = _build(tokens, meta.get("tokenizer.ggml.merges", []), pre)
    tok.add_special_tokens(
        [_added(t) for t, ty in zip(tokens, types, strict=False) if ty == CONTROL]
    )
    tok.add_tokens(
        [
            _added(t, special=False)
            for t, ty in zip(tokens, types, strict=False)
            if ty == USER_DEFINED
        ]
    )

    bos, eos = token_at("tokenizer.ggml.bos_token_id"), token_at("tokenizer.ggml.eos_token_id")
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False)) and bos is not None
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False)) and eos is not None
    tok.post_processor = _post_processor(tok, bos if add_bos else None, eos if add_eos else None)
    tok.save(str(out_dir / "tokenizer.json"))

    special = {
        "bos_token": bos,
        "eos_token": eos,
        "pad_token": token_at("tokenizer.ggml.padding_token_id"),
        "unk_token": token_at("tokenizer.ggml.unknown_token_id"),
    }
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(meta.get(f"{meta.get('general.architecture')}.context_length", 0))
        or 131072,
    }
    if template := _chat_template(meta):
        config["chat_template"] = template
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))

    eos_ids = [
        int(meta[k])
        for k in (
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        )
        if k in meta
    ]
    bos_id = meta.get("tokenizer.ggml.bos_token_id")
    return TokenizerInfo(
        pre=pre_name,
        eos_token_ids=list(dict.fromkeys(eos_ids)),
        bos_token_id=None if bos_id is None else int(bos_id),
        special_tokens=special,
    )


def _added(content: str, special: bool = True) -> AddedToken:
    # normalized=False: match the raw text, exactly as llama.cpp does.
    return AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False)


def _build(tokens: list[str], merges_raw: list[str], pre: _Pre) -> Tokenizer:
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    merges = []
    for m in merges_raw:
        a, _, b = m.partition(" ")
        # BPE refuses the whole model over one merge whose parts or result are unknown
        if a in vocab and b in vocab and a + b in vocab:
            merges.append((a, b))
    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, ignore_merges=pre.ignore_merges, fuse_unk=False)
    )
    if pre.nfc:
        tok.normalizer = normalizers.NFC()
    parts: list[pt.PreTokenizer] = []
    if pre.digits:
        parts.append(pt.Digits(individual_digits=True))
    parts += [pt.Split(Regex(r), behavior="isolated", invert=False) for r in pre.splits]
    parts.append(pt.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=not pre.splits))
    tok.pre_tokenizer = pt.Sequence(parts) if len(parts) > 1 else parts[0]
    tok.decoder = decoders.ByteLevel()
    return tok


def _post_processor(tok: Tokenizer, bos: str | None, eos: str | None) -> processors.PostProcessor:
    byte_level = processors.ByteLevel(trim_offsets=False)
    if bos is None and eos is None:
        return byte_level
    pre = f"{bos}:0 " if bos else ""
    post = f" {eos}:0" if eos else ""
    pair_pre = f"{bos}:1 " if bos else ""
    pair_post = f" {eos}:1" if eos else ""
    specials = [(t, tok.token_to_id(t)) for t in dict.fromkeys(x for x in (bos, eos) if x)]
    template = processors.TemplateProcessing(
        single=f"{pre}$A:0{post}",
        pair=f"{pre}$A:0{post} {pair_pre}$B:1{pair_post}",
        special_tokens=specials,
    )
    return processors.Sequence([byte_level, template])


def _chat_template(meta: dict[str, Any]) -> str | list[dict[str, str]] | None:
    default = meta.get("tokenizer.chat_template")
    named = {
        k.removeprefix("tokenizer.chat_template."): v
        for k, v in meta.items()
        if k.startswith("tokenizer.chat_template.")
    }
    if not named:
        return default
    templates = [{"name": "default", "template": default}] if default else []
    return templates + [{"name": n, "template": t} for n, t in named.items()]
