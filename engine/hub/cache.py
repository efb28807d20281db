"""The Hugging Face cache on disk: where repos live, which snapshots are ready.

Layout (the one huggingface_hub writes, so its tools and mlx-lm find our downloads):
``<cache>/models--owner--name/{blobs/<etag>, snapshots/<commit>/<file> -> blob, refs/<ref>}``.
Our own per-repo bookkeeping (download state, lock) lives in ``.lookahead/`` inside the
repo folder, so deleting a repo folder removes everything about it at once.

A snapshot is *ready* only when nothing is missing: config.json, weights, every shard
its index names, and no dangling links. Downloads link a snapshot only at the very
end, but other tools (an interrupted ``snapshot_download``) leave half snapshots.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".npz", ".gguf")
STATE_DIR = ".lookahead"


def hub_cache_dir() -> Path:
    """The hub cache, read from the environment on every call (tests redirect it)."""
    if value := os.environ.get("HF_HUB_CACHE"):
        return Path(value).expanduser()
    if home := os.environ.get("HF_HOME"):
        return Path(home).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_folder_name(repo_id: str) -> str:
    return "models--" + repo_id.replace("/", "--")


def repo_folder(repo_id: str) -> Path:
    return hub_cache_dir() / repo_folder_name(repo_id)


def repo_id_from_folder(name: str) -> str | None:
    if not name.startswith("models--"):
        return None
    return name[len("models--") :].replace("--", "/")


def repo_id_for_path(path: Path) -> str | None:
    """The hub repo id of a snapshot folder (``.../models--o--n/snapshots/<commit>``)."""
    parts = Path(path).parts
    if len(parts) >= 3 and parts[-2] == "snapshots":
        return repo_id_from_folder(parts[-3])
    return None


@dataclass(frozen=True)
class CachedSnapshot:
    repo_id: str
    commit: str
    path: Path
    refs: tuple[str, ...]  # branch or tag names pointing here ("main", ...)
    mtime: float


@dataclass(frozen=True)
class CachedRepo:
    repo_id: str
    path: Path  # the models--owner--name folder
    snapshots: tuple[CachedSnapshot, ...]  # preferred first: refs/main, other refs, newest


def _refs(repo_path: Path) -> dict[str, list[str]]:
    """commit -> ref names."""
    by_commit: dict[str, list[str]] = {}
    refs = repo_path / "refs"
    if not refs.is_dir():
        return by_commit
    for ref in sorted(refs.rglob("*")):
        if ref.is_file():
            try:
                commit = ref.read_text().strip()
            except OSError:
                continue
            by_commit.setdefault(commit, []).append(ref.relative_to(refs).as_posix())
    return by_commit


def scan_repo(repo_path: Path) -> CachedRepo | None:
    repo_id = repo_id_from_folder(repo_path.name)
    if repo_id is None or not repo_path.is_dir():
        return None
    refs = _refs(repo_path)
    snaps = []
    snap_root = repo_path / "snapshots"
    if snap_root.is_dir():
        for snap in snap_root.iterdir():
            if snap.is_dir() and not snap.name.startswith("."):  # dot dirs: links being built
                names = tuple(refs.get(snap.name, ()))
                snaps.append(CachedSnapshot(repo_id, snap.name, snap, names, snap.stat().st_mtime))
    snaps.sort(key=lambda s: ("main" not in s.refs, not s.refs, -s.mtime))
    return CachedRepo(repo_id, repo_path, tuple(snaps))


def cached_repos() -> list[CachedRepo]:
    """Every model repo folder in the cache, complete or not, sorted by id."""
    root = hub_cache_dir()
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        if child.name.startswith("models--") and (repo := scan_repo(child)) is not None:
            found.append(repo)
    return sorted(found, key=lambda r: r.repo_id.lower())


def _index_shards(path: Path) -> set[str]:
    shards: set[str] = set()
    for index in path.glob("*.safetensors.index.json"):
        try:
            weight_map = json.loads(index.read_text()).get("weight_map") or {}
        except (OSError, ValueError):
            raise ValueError(f"{index.name} is unreadable") from None
        shards.update(str(v) for v in weight_map.values())
    return shards


def snapshot_problem(path: Path) -> str | None:
    """Why the folder is not a complete model, or None when it is."""
    if not (path / "config.json").is_file():
        return "no config.json"
    files = list(path.iterdir())
    for f in files:
        if f.is_symlink() and not f.exists():
            return f"{f.name} is missing (dangling link)"
    if not any(f.suffix in WEIGHT_SUFFIXES and f.is_file() for f in files):
        return "no weight files"
    try:
        shards = _index_shards(path)
    except ValueError as e:
        return str(e)
    missing = sorted(s for s in shards if not (path / s).is_file())
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        return f"weight shard {missing[0]}{more} missing"
    return None


def dir_size(path: Path) -> int:
    """Bytes on disk under ``path``; links are not followed (blobs count once)."""
    total = 0
    stack = [Path(path)]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_symlink():
                    continue
                if entry.is_dir():
                    stack.append(Path(entry.path))
                else:
                    total += entry.stat().st_size
            except OSError:
                continue
    return total


def model_dir_size(path: Path) -> int:
    """Bytes a model folder's files take, following snapshot links to their blobs."""
    total = 0
    for f in Path(path).rglob("*"):
        try:
            if f.is_file():
                total += f.stat().st_size
        except OSError:
            continue
    return total
