"""Weight-based drafters for a target: what ``auto`` picks, and opening one by name.

Which decoders pair is decided by engine.decoder_catalog (the same verdict the app,
the API and ``lookahead models`` show); this module turns a choice into an
MTPDrafter. ``best_drafter``: the catalog's best MTP choice that loads, else None
(the caller falls back to prompt lookup). ``open_drafter``: a decoder repo id,
local name, folder, or an ``mtp*.safetensors`` file; an incompatible, corrupted or
unsupported one is refused with DecoderError saying why. Engine thread only
(loading builds MLX arrays).
"""

from __future__ import annotations

from pathlib import Path

from engine.compat import decoder_info
from engine.deepseek_v4.support import declares_dspark, is_v4_target
from engine.drafters.kinds import LABELS
from engine.drafters.mtp.drafter import MTPDrafter
from engine.drafters.mtp.loader import get_head
from engine.drafters.mtp.sources import (
    HeadSource,
    builtin_source,
    check_pairing,
    folder_source,
    sidecar_file_source,
)
from engine.errors import DecoderError, ModelNotFound


def best_drafter(loaded) -> tuple[MTPDrafter | None, str | None]:
    """The best compatible drafter with weights (MTP, DFlash, DSpark, EAGLE-3, assistant)
    found locally, and a note on what was skipped."""
    from engine import decoder_catalog, library

    chosen: HeadSource | None = loaded.extras.get("mtp_auto")
    if chosen is not None:  # found before: a positive choice does not go stale
        return MTPDrafter(get_head(chosen, loaded)), None
    notes: list[str] = []
    try:
        models = library.local_models()
    except Exception as e:  # a broken library must not break generation
        notes.append(f"could not list local models ({e})")
        models = []
    for choice in decoder_catalog.decoders_for(loaded.path, models):
        if choice.kind not in decoder_catalog.WEIGHT_KINDS:
            continue
        if not choice.ok:
            if choice.origin == "built-in":  # the model's own layers: say why not
                notes.append(choice.reason)
            continue
        if choice.kind != "mtp":  # DFlash, DSpark, EAGLE-3, assistants: found each time
            try:
                if choice.origin == "built-in":  # DeepSeek-V4.1's own DSpark drafter
                    from engine.drafters.dspark import load_builtin_dspark

                    return load_builtin_dspark(loaded), "; ".join(notes) or None
                return open_drafter(loaded, choice.path), "; ".join(notes) or None
            except DecoderError as e:
                notes.append(str(e))
                continue
        try:
            if is_v4_target(loaded.config):  # mlx-vlm's V4 MTP block
                from engine.deepseek_v4.pairing import open_drafter as open_v4

                return open_v4(loaded, Path(choice.path) if choice.path else None), (
                    "; ".join(notes) or None
                )
            source = _source(loaded, choice.path or None)
            drafter = MTPDrafter(get_head(source, loaded))
        except DecoderError as e:
            notes.append(str(e))
            continue
        loaded.extras["mtp_auto"] = source
        return drafter, "; ".join(notes) or None
    return None, "; ".join(notes) or None


def _source(loaded, folder: str | None) -> HeadSource:
    """The weights of a catalog choice: a decoder folder, or the model's own (None)."""
    if folder is None:
        source, note = builtin_source(loaded)
        if source is None:
            raise DecoderError(note or f"{loaded.path.name} carries no MTP weights")
        return source
    return folder_source(Path(folder))


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
    from engine.decoder_catalog import verdict

    folder = path if path.is_dir() else _resolve(name)
    pairing = verdict(loaded.path, folder)  # the verdict the catalog shows
    if not pairing.ok:
        raise DecoderError(f"{folder.name}: {pairing.reason}")
    if (info := decoder_info(folder)) is not None and info.format in LABELS:
        return open_feature_drafter(loaded, folder, info.format)
    own = folder.resolve() == loaded.path.resolve()
    if own and declares_dspark(loaded.config):
        from engine.drafters.dspark import load_builtin_dspark

        return load_builtin_dspark(loaded)
    if is_v4_target(loaded.config):
        from engine.deepseek_v4.pairing import open_drafter as open_v4

        return open_v4(loaded, None if own else folder)
    return MTPDrafter(get_head(_source(loaded, None if own else str(folder)), loaded))


def open_feature_drafter(loaded, folder: Path, fmt: str):
    """A DFlash, DSpark, EAGLE-3 or Gemma 4 assistant drafter (the pairing already
    checked)."""
    if fmt == "dspark":
        from engine.drafters.dspark import load_dspark

        return load_dspark(loaded, folder)
    if fmt in ("dflash", "dflash2"):
        from engine.drafters.dflash import load_dflash

        return load_dflash(loaded, folder, fmt)
    if fmt == "eagle3":
        from engine.drafters.eagle3 import load_eagle3

        return load_eagle3(loaded, folder)
    from engine.drafters.gemma4_assistant import load_assistant

    return load_assistant(loaded, folder)


def _resolve(name: str) -> Path:
    from engine.library import resolve_model

    try:
        return resolve_model(name)
    except ModelNotFound as e:
        raise DecoderError(f"decoder {name!r} not found: {e}") from None
