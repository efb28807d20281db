"""Which decoders can draft for which model — the one place that decides.

For a chat model, ``decoders_for`` lists every decoder that could draft for it: its own
MTP weights, decoder repos in every supported layout (library, hub cache and the ones
shipped in resources/decoders), smaller draft models of its family, and prompt lookup;
each with kind, label, size and — when refused — the reason. ``verdict`` is the check
behind every entry, and loading asks it too (engine.drafters.registry), so a pairing
the app, ``lookahead models``, the API's model ids or ``--decoder auto`` show is the
pairing applied. ``auto_choice`` is what ``auto`` picks.

The verdict has two stages: metadata (family, hidden size, vocabulary, tokenizer;
engine.compat) and loadability (the weights are where the decoder's format says, in
a family and format Lookahead can run; engine.drafters.mtp.sources). Both read JSON,
tokenizer files and safetensors headers only: cheap enough for the GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from engine import library
from engine.compat import (
    Pairing,
    check_pairing,
    decoder_info,
    load_config,
    model_name,
)
from engine.deepseek_v4.support import declares_dspark, is_v4_decoder, is_v4_target
from engine.drafters import kinds as drafter_kinds
from engine.errors import DecoderError
from engine.library import LocalModel

# Decoders with weights of their own, which ``auto`` may pick (not draft models).
WEIGHT_KINDS = ("mtp", *drafter_kinds.KINDS)
LOOKUP_NOTE = "Copies n-grams from the conversation; any model."


@dataclass(frozen=True)
class DecoderChoice:
    """A drafter for one model. ``value`` is what DecoderSettings.decoder takes."""

    value: str  # "lookup", "auto" (the model's own MTP weights) or a decoder id
    label: str
    kind: str  # "mtp" | "dflash" | "dspark" | "eagle3" | "assistant" | "draft" | "lookup"
    origin: str  # "built-in" | "shipped" | "library" | "any model"
    ok: bool
    reason: str  # when ok, what was checked; otherwise why not
    size_bytes: int = 0  # its weights on disk (0: none of its own)
    path: str = ""

    @property
    def origin_label(self) -> str:
        return {
            "built-in": "in the model's own weights",
            "shipped": "shipped with Lookahead",
            "library": "in your library",
        }.get(self.origin, "")


LOOKUP = DecoderChoice("lookup", "Prompt lookup", "lookup", "any model", True, LOOKUP_NOTE)


@dataclass(frozen=True)
class DecoderMatch:
    decoder: LocalModel
    target: LocalModel
    pairing: Pairing


def verdict(target_dir: Path, decoder_dir: Path) -> Pairing:
    """Whether ``decoder_dir`` can draft for ``target_dir`` here, and why (not).
    ``decoder_dir == target_dir`` asks about the model's own MTP weights."""
    target_dir, decoder_dir = Path(target_dir), Path(decoder_dir)
    try:
        if target_dir.resolve() == decoder_dir.resolve():
            return _own_weights(target_dir)
        # A decoder Lookahead cannot run is refused for that first, whatever the model.
        return _loadable(decoder_dir) or check_pairing(target_dir, decoder_dir)
    except Exception as e:  # a broken folder is a reason, never a crash
        return Pairing(False, f"unreadable ({type(e).__name__}: {e})")


def _own_weights(path: Path) -> Pairing:
    """The model's own MTP module: present, in a family Lookahead runs, or why not."""
    from engine.drafters.mtp import sources

    config = load_config(path)
    if not config or decoder_info(path, config) is not None:
        return check_pairing(path, path)  # says which: no config, or itself a decoder
    if declares_dspark(config):  # DeepSeek-V4.1: a DSpark drafter under mtp.*
        from engine.deepseek_v4 import pairing as v4

        return v4.own_dspark(path, config)
    if is_v4_target(config):  # mlx-vlm's DeepSeek-V4 MTP block
        from engine.deepseek_v4 import pairing as v4

        return v4.own_weights(path, config)
    source, note = sources.builtin_source(SimpleNamespace(path=path, config=config))
    if source is None:
        return Pairing(False, note or "a model cannot be its own draft model")
    return Pairing(True, f"built-in MTP weights ({source.label})")


def _loadable(decoder_dir: Path) -> Pairing | None:
    """A refusal when a decoder repo's weights cannot be run, else None."""
    from engine.drafters.mtp import sources

    if not load_config(decoder_dir):
        return None  # check_pairing says so
    info = decoder_info(decoder_dir)
    if info is None:
        return None  # a draft model: any chat model loads
    if is_v4_decoder(load_config(decoder_dir)):
        from engine.deepseek_v4 import pairing as v4

        return v4.loadable(decoder_dir)
    if info.format == "assistant" and info.family != "gemma4":
        return Pairing(
            False, f"{info.family} assistant drafters are not supported by Lookahead yet"
        )
    if info.format in drafter_kinds.LABELS:  # DFlash, EAGLE-3, Gemma 4 assistants
        why = drafter_kinds.mlx_vlm_missing() or drafter_kinds.weights_missing(decoder_dir)
        if not why and info.format == "eagle3":
            why = drafter_kinds.eagle3_weights_missing(decoder_dir, load_config(decoder_dir))
        return Pairing(False, why) if why else None
    try:
        sources.folder_source(decoder_dir)
    except DecoderError as e:
        return Pairing(False, str(e))
    return None


def decoder_matches(models: list[LocalModel] | None = None) -> list[DecoderMatch]:
    """Every local decoder checked against every local chat model."""
    models = library.local_models() if models is None else models
    targets = [m for m in models if not m.is_decoder]
    return [
        DecoderMatch(dec, target, verdict(target.path, dec.path))
        for dec in (m for m in models if m.is_decoder)
        for target in targets
    ]


def same_family(decoder: LocalModel, target: LocalModel) -> bool:
    return bool(decoder.decoder_family) and decoder.decoder_family == target.model_type


def unpaired_reason(decoder: LocalModel, matches: list[DecoderMatch]) -> str:
    """Why ``decoder`` pairs with no local model (the closest miss), or ""."""
    mine = [m for m in matches if m.decoder == decoder]
    if any(m.pairing.ok for m in mine):
        return ""
    closest = [m for m in mine if same_family(decoder, m.target)] or mine
    if decoder.decoder_family and closest is mine:
        return f"no local {decoder.decoder_family} model to pair with"
    if closest:
        return f"{closest[0].target.id}: {closest[0].pairing.reason}"
    return "no local chat model to pair with"


def decoders_for(
    target: LocalModel | Path,
    models: list[LocalModel] | None = None,
    matches: list[DecoderMatch] | None = None,
) -> list[DecoderChoice]:
    """Every decoder for ``target``, best first: the model's own MTP weights, decoder
    repos declaring this model, other decoder repos, draft models, then prompt lookup.
    Refused ones (``ok`` False, with the reason) are those a user would expect: the
    model's declared MTP layers and decoders of its family."""
    models = library.local_models() if models is None else models
    path = Path(target.path if isinstance(target, LocalModel) else target)
    me = _find(models, path) or library.describe_folder(path)
    out: list[DecoderChoice] = []
    if me is not None and (me.mtp or _declares_drafting(path)):
        own = verdict(path, path)
        dspark = declares_dspark(load_config(path))
        label, kind = (
            ("Built-in DSpark drafter", "dspark") if dspark else ("Built-in MTP heads", "mtp")
        )
        out.append(DecoderChoice("auto", label, kind, "built-in", own.ok, own.reason))
    repos: list[tuple[int, DecoderChoice]] = []
    for dec in (m for m in models if m.is_decoder):
        pairing = _pairing(matches, dec, path)
        if not pairing.ok and (me is None or not same_family(dec, me)):
            continue  # not for this model: normal when browsing a whole library
        kind = dec.decoder_kind if dec.decoder_kind in WEIGHT_KINDS + ("draft",) else "mtp"
        origin = "shipped" if dec.source == "bundled" else "library"
        choice = DecoderChoice(
            dec.id, _short(dec.id), kind, origin, pairing.ok, pairing.reason,
            dec.size_bytes, str(dec.path),
        )  # fmt: skip
        repos.append((0 if _declares(dec, me, path) else 1, choice))
    out += [c for _, c in sorted(repos, key=lambda r: r[0])]
    if me is not None:
        out += _draft_models(me, models)
    out.append(LOOKUP)
    return out


def auto_choice(choices: list[DecoderChoice]) -> DecoderChoice:
    """What ``auto`` runs: the best decoder with weights of its own that pairs (MTP,
    DFlash, EAGLE-3, assistant), else prompt lookup."""
    return next((c for c in choices if c.ok and c.kind in WEIGHT_KINDS), LOOKUP)


def _declares_drafting(path: Path) -> bool:
    """The config declares drafting layers (MTP, DSpark) or an mtp sidecar lies beside."""
    from engine.drafters.mtp.families import declared_layers

    return bool(declared_layers(load_config(path))[1]) or any(path.glob("mtp*.safetensors"))


def _draft_models(me: LocalModel, models: list[LocalModel]) -> list[DecoderChoice]:
    """Smaller chat models of the same family with the same tokenizer."""
    out = []
    for other in models:
        if other.is_decoder or other.path == me.path or other.model_type != me.model_type:
            continue
        if other.size_bytes and me.size_bytes and other.size_bytes >= me.size_bytes:
            continue  # a draft model only helps when it is smaller
        pairing = verdict(me.path, other.path)
        if pairing.ok:
            out.append(
                DecoderChoice(
                    other.id,
                    _short(other.id),
                    "draft",
                    "library",
                    True,
                    pairing.reason,
                    other.size_bytes,
                    str(other.path),
                )  # fmt: skip
            )
    return out


def _pairing(matches: list[DecoderMatch] | None, dec: LocalModel, path: Path) -> Pairing:
    for m in matches or ():
        if m.decoder == dec and m.target.path == path:
            return m.pairing
    return verdict(path, dec.path)


def _declares(dec: LocalModel, me: LocalModel | None, path: Path) -> bool:
    """The decoder names this model as its target (it is preferred over the rest)."""
    info = decoder_info(dec.path)
    declared = (info.target if info else "").rsplit("/", 1)[-1]
    names = {path.name, model_name(path).rsplit("/", 1)[-1]} | ({me.id} if me else set())
    return bool(declared) and declared in names


def _find(models: list[LocalModel], path: Path) -> LocalModel | None:
    resolved = path.resolve()
    return next((m for m in models if Path(m.path).resolve() == resolved), None)


def _short(model_id: str) -> str:
    return model_id.rsplit("/", 1)[-1]
