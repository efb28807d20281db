"""The local model library: imported models, trained decoders and the HF cache.

``resolve_model`` turns what a user typed (a path, a local name, a hub repo id) into
a model folder on disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine import paths
from engine.errors import ModelNotFound

WEIGHT_SUFFIXES = (".safetensors", ".npz", ".gguf")


@dataclass(frozen=True)
class LocalModel:
    id: str  # what a user types: a local name or a hub repo id
    path: Path
    source: str  # "imported" | "hub" | "path" | "bundled"
    model_type: str
    is_decoder: bool  # an MTP head / drafter repo rather than a chat model


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


def _describe(model_id: str, path: Path, source: str) -> LocalModel | None:
    try:
        cfg = read_config(path)
    except ModelNotFound:
        return None
    model_type = str(cfg.get("model_type", "unknown"))
    is_decoder = model_type.endswith("_mtp") or "lookahead_decoder" in cfg
    return LocalModel(model_id, path, source, model_type, is_decoder)


def imported_models() -> list[LocalModel]:
    root = paths.models_dir()
    found = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith(".") and is_model_dir(child):
            if m := _describe(child.name, child, "imported"):
                found.append(m)
    return found


def hub_models() -> list[LocalModel]:
    """Complete snapshots in the Hugging Face cache."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # no cache yet, or unreadable: nothing to list
        return []
    found = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            path = Path(rev.snapshot_path)
            if is_model_dir(path):
                if m := _describe(repo.repo_id, path, "hub"):
                    found.append(m)
                break
    return found


def local_models() -> list[LocalModel]:
    return imported_models() + hub_models()


def resolve_model(name: str) -> Path:
    """A model folder for a path, a local model name or a cached hub repo id."""
    if not name or not name.strip():
        raise ModelNotFound("no model given")
    candidate = Path(name).expanduser()
    if candidate.exists():
        if not candidate.is_dir():
            raise ModelNotFound(
                f"{name} is a file, not a model folder"
                + (" (import it first: lookahead import-gguf FILE)" if name.endswith(".gguf") else "")
            )
        if not (candidate / "config.json").is_file():
            raise ModelNotFound(f"{name} has no config.json; it is not a model folder")
        return candidate.resolve()
    for m in local_models():
        if m.id == name or m.id.lower() == name.lower():
            return m.path
    raise ModelNotFound(
        f"no local model called {name!r} (see `lookahead models`, or `lookahead pull REPO`)"
    )
