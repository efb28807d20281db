"""The local model library: imported models, trained decoders and the HF cache.

``resolve_model`` turns what a user typed (a path, a local name, a hub repo id) into
a model folder on disk. ``local_models`` lists only models that are ready: a download
in progress, interrupted or corrupted never appears here (see engine.hub.cache and
engine.hub.state). Decoders (MTP heads, drafters) are listed too, flagged — those shipped with the app
among them — and engine.decoder_catalog pairs them with the chat models they speed up.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from engine import paths
from engine.compat import carries_mtp, decoder_info, weights_dtype
from engine.deepseek_v4.pairing import carries_dspark
from engine.deepseek_v4.support import declares_dspark
from engine.drafters.kinds import LABELS, kind_of
from engine.errors import EngineError, ModelNotFound
from engine.hub import cache
from engine.hub.describe import quantization

WEIGHT_SUFFIXES = cache.WEIGHT_SUFFIXES


@dataclass(frozen=True)
class LocalModel:
    id: str  # what a user types: a local name or a hub repo id
    path: Path
    source: str  # "imported" | "hub" | "path" | "bundled"
    model_type: str
    is_decoder: bool  # an MTP head / drafter repo rather than a chat model
    size_bytes: int = 0  # on disk; for hub repos all revisions (what `rm` frees)
    decoder_format: str = ""  # decoders: "mlx-vlm" | "nextn" | "sidecar" | "lookahead" | ...
    decoder_kind: str = ""  # decoders: "mtp", "dflash", "dspark", "eagle3" or "assistant"
    decoder_family: str = ""  # decoders: the model_type of the targets they are made for
    mtp: str = ""  # chat models: "weights" (carries MTP), "declared" (config only) or ""
    dspark: bool = False  # chat models: carries a DSpark drafter (DeepSeek-V4.1's mtp.*)
    quantization: str = ""  # "4-bit", "bf16", ... when the config or name says
    revision: str = ""  # hub models: the snapshot's commit


@dataclass(frozen=True)
class Removed:
    id: str
    path: Path  # the folder that was deleted
    freed_bytes: int


def read_config(path: Path) -> dict:
    cfg = path / "config.json"
    try:
        return json.loads(cfg.read_text())
    except FileNotFoundError:
        raise ModelNotFound(f"{path} has no config.json; it is not a model folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelNotFound(f"{cfg} is not valid JSON ({e})") from None


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(
        p.suffix in WEIGHT_SUFFIXES for p in path.iterdir() if p.is_file()
    )


def _describe(
    model_id: str, path: Path, source: str, size: int, revision: str = ""
) -> LocalModel | None:
    try:
        cfg = read_config(path)
    except ModelNotFound:
        return None
    if not isinstance(cfg, dict):
        return None
    model_type = str(cfg.get("model_type", "unknown"))
    dec = decoder_info(path, cfg)
    return LocalModel(
        id=model_id,
        path=path,
        source=source,
        model_type=model_type,
        is_decoder=dec is not None,
        size_bytes=size,
        decoder_format=dec.format if dec else "",
        decoder_kind=(kind_of(dec.format) if dec.format in LABELS else "mtp") if dec else "",
        decoder_family=dec.family if dec else "",
        mtp="" if dec else carries_mtp(path, cfg),
        dspark=not dec and _carries_dspark(path, cfg),
        quantization=quantization(cfg, model_id) or weights_dtype(path),
        revision=revision,
    )


def _carries_dspark(path: Path, cfg: dict) -> bool:
    return declares_dspark(cfg) and carries_dspark(path)


def imported_models() -> list[LocalModel]:
    root = paths.models_dir()
    found = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith(".") and is_model_dir(child):
            if cache.snapshot_problem(child) is not None:
                continue  # half-written (an import still running, or broken)
            size = cache.model_dir_size(child)
            if m := _describe(child.name, child, "imported", size):
                found.append(m)
    return found


def hub_models() -> list[LocalModel]:
    """Ready snapshots in the Hugging Face cache, one per repo (refs/main first)."""
    from engine.hub.state import pending_commits

    found = []
    for repo in cache.cached_repos():
        pending = pending_commits(repo.repo_id)
        for snap in repo.snapshots:
            if snap.commit in pending or cache.snapshot_problem(snap.path) is not None:
                continue
            size = cache.dir_size(repo.path / "blobs")  # all revisions, partials too
            if m := _describe(repo.repo_id, snap.path, "hub", size, snap.commit):
                found.append(m)
            break
    return found


def shipped_models() -> list[LocalModel]:
    """Decoders that ship with the app (the starter's MTP head): always there."""
    root = paths.shipped_decoders_dir()
    if not root.is_dir():
        return []
    folders = [c for c in sorted(root.iterdir()) if c.is_dir() and is_model_dir(c)]
    described = (_describe(c.name, c, "bundled", cache.model_dir_size(c)) for c in folders)
    return [m for m in described if m is not None]


def local_models() -> list[LocalModel]:
    return imported_models() + hub_models() + shipped_models()


def describe_folder(path: Path) -> LocalModel | None:
    """A model folder outside the library, described as the library would."""
    path = Path(path)
    if not (path / "config.json").is_file():
        return None
    return _describe(str(path), path, "path", 0)


def find_model(name: str) -> LocalModel:
    """The library entry called ``name`` (exact id first, then ignoring case)."""
    models = local_models()
    for m in models:
        if m.id == name:
            return m
    for m in models:
        if m.id.lower() == name.lower():
            return m
    raise ModelNotFound(
        f"no local model called {name!r} (see `lookahead models`, or `lookahead pull REPO`)"
    )


def resolve_model(name: str) -> Path:
    """A model folder for a path, a local model name or a cached hub repo id."""
    if not name or not name.strip():
        raise ModelNotFound("no model given")
    candidate = Path(name).expanduser()
    if candidate.exists():
        if not candidate.is_dir():
            raise ModelNotFound(
                f"{name} is a file, not a model folder"
                + (
                    " (import it first: lookahead import-gguf FILE)"
                    if name.endswith(".gguf")
                    else ""
                )
            )
        if not (candidate / "config.json").is_file():
            raise ModelNotFound(f"{name} has no config.json; it is not a model folder")
        return candidate.resolve()
    try:
        return find_model(name).path
    except ModelNotFound:
        from engine import starter

        # The starter is the one model we can always provide: import it on first use,
        # so `lookahead generate --model SmolLM2-135M-Instruct` works in a fresh home.
        if name in (starter.STARTER_NAME, starter.STARTER_HUB_ID):
            return starter.ensure_starter_model()
        raise


# -- delete


def delete_model(name: str) -> Removed:
    """Delete a library model (imported folder, or a hub repo with all its revisions).

    An unfinished download of a repo counts too: deleting it discards the partial.
    """
    try:
        m = find_model(name)
    except ModelNotFound:
        repo_id = name.strip().strip("/")
        if "/" in repo_id and cache.repo_folder(repo_id).is_dir():  # only a partial
            return _delete_hub_repo(repo_id)
        raise ModelNotFound(
            f"no model called {name!r} in the library (see `lookahead models`)"
        ) from None
    if m.source == "hub":
        return _delete_hub_repo(m.id)
    if m.source == "bundled":
        raise EngineError(f"{m.id} ships with Lookahead and cannot be deleted")
    root = paths.models_dir().resolve()
    if m.source != "imported" or root not in m.path.resolve().parents:
        raise EngineError(f"{m.path} is outside the library; delete it yourself if you mean to")
    size = cache.model_dir_size(m.path)
    shutil.rmtree(m.path)
    return Removed(m.id, m.path, size)


def _delete_hub_repo(repo_id: str) -> Removed:
    from engine.hub.download import repo_lock

    folder = cache.repo_folder(repo_id)
    if cache.hub_cache_dir().resolve() not in folder.resolve().parents:
        raise EngineError(f"{repo_id!r} is not a hub repo id")
    size = cache.dir_size(folder)
    with repo_lock(repo_id):  # refuses while another process downloads it
        for child in folder.iterdir():
            if child.name != cache.STATE_DIR:
                shutil.rmtree(
                    child
                ) if child.is_dir() and not child.is_symlink() else child.unlink()
        (folder / cache.STATE_DIR / "download.json").unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    return Removed(repo_id, folder, size)
