"""Weight-based drafters for a target: what ``auto`` picks, and opening one by name.

``best_drafter``: the target's own MTP module (in its checkpoint or an
``mtp.safetensors`` beside it), else a compatible decoder repo among the local
models, else None (the caller falls back to prompt lookup). ``open_drafter``: a
decoder repo id, local name, folder, or an ``mtp*.safetensors`` file; an
incompatible, corrupted or unsupported one is refused with DecoderError saying why.
Engine thread only (loading builds MLX arrays).
"""

from __future__ import annotations

from pathlib import Path

from engine.drafters.mtp.drafter import MTPDrafter
from engine.drafters.mtp.loader import get_head
from engine.drafters.mtp.sources import (
    HeadSource,
    builtin_source,
    check_pairing,
    decoder_format,
    folder_source,
    read_json,
    sidecar_file_source,
)
from engine.errors import DecoderError, ModelNotFound

# Decoders shipped with the app (the starter model's trained head), beside the library's.
BUNDLED_DECODERS = Path(__file__).resolve().parents[2] / "resources" / "decoders"


def best_drafter(loaded) -> tuple[MTPDrafter | None, str | None]:
    """The best compatible MTP drafter found locally, and a note on what was skipped."""
    notes: list[str] = []
    chosen: HeadSource | None = loaded.extras.get("mtp_auto")
    if chosen is not None:  # found before: a positive choice does not go stale
        return MTPDrafter(get_head(chosen, loaded)), None
    candidates: list[HeadSource] = []
    try:
        own, note = builtin_source(loaded)
    except DecoderError as e:
        own, note = None, str(e)
    if own is not None:
        candidates.append(own)
    if note:
        notes.append(note)
    candidates += _paired_repos(loaded, notes)
    for source in candidates:
        try:
            drafter = MTPDrafter(get_head(source, loaded))
        except DecoderError as e:
            notes.append(str(e))
            continue
        loaded.extras["mtp_auto"] = source
        return drafter, "; ".join(notes) or None
    return None, "; ".join(notes) or None


def _paired_repos(loaded, notes: list[str]) -> list[HeadSource]:
    """Decoder repos among the local models and the bundled decoders that pair with
    ``loaded``, best first: those declaring this target by name, then the rest."""
    from engine import library

    try:
        folders = [Path(m.path) for m in library.local_models()]
    except Exception as e:  # a broken library must not break generation
        notes.append(f"could not list local models ({e})")
        folders = []
    if BUNDLED_DECODERS.is_dir():
        folders += sorted(p for p in BUNDLED_DECODERS.iterdir() if (p / "config.json").is_file())
    here = loaded.path.resolve()
    found: list[tuple[int, HeadSource]] = []
    for folder in folders:
        if folder.resolve() == here:
            continue
        try:
            if decoder_format(read_json(folder / "config.json"), folder) is None:
                continue
            source = folder_source(folder)
            check_pairing(source, loaded, folder)
        except DecoderError:
            continue  # not for this model: normal when browsing a whole library
        declared = str(source.own.get("target") or "")
        named = bool(declared) and declared.rsplit("/", 1)[-1] in (loaded.name, loaded.path.name)
        found.append((0 if named else 1, source))
    return [s for _, s in sorted(found, key=lambda x: x[0])]


def open_drafter(loaded, name_or_path: str) -> MTPDrafter:
    """The decoder a user named, checked against ``loaded`` (DecoderError with the reason)."""
    name = name_or_path.strip()
    path = Path(name).expanduser()
    if path.is_file():
        if not path.name.endswith(".safetensors"):
            raise DecoderError(f"{name} is a file but not an mtp .safetensors sidecar")
        source = sidecar_file_source(path, loaded)
        check_pairing(source, loaded)
        return MTPDrafter(get_head(source, loaded))
    folder = path if path.is_dir() else _resolve(name)
    if folder.resolve() == loaded.path.resolve():
        source, note = builtin_source(loaded)
        if source is None:
            raise DecoderError(note or f"{loaded.path.name} carries no MTP weights")
    else:
        source = folder_source(folder)
        check_pairing(source, loaded, folder)
    return MTPDrafter(get_head(source, loaded))


def _resolve(name: str) -> Path:
    from engine.library import resolve_model

    try:
        return resolve_model(name)
    except ModelNotFound as e:
        raise DecoderError(f"decoder {name!r} not found: {e}") from None
