"""Every on-disk location the app uses, in one place.

Each can be redirected by an environment variable so tests never touch a real home:
``LOOKAHEAD_HOME`` moves all of them; ``LOOKAHEAD_DATA_DIR``, ``LOOKAHEAD_MODELS_DIR``,
``LOOKAHEAD_CACHE_DIR`` and ``LOOKAHEAD_CONFIG_DIR`` move one. Models downloaded from
the hub live in the Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "Lookahead"


def _dir(env: str, sub: str, default) -> Path:
    if value := os.environ.get(env):
        path = Path(value).expanduser()
    elif home := os.environ.get("LOOKAHEAD_HOME"):
        path = Path(home).expanduser() / sub
    else:
        path = Path(default(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Conversations database and other user data."""
    return _dir("LOOKAHEAD_DATA_DIR", "data", platformdirs.user_data_dir)


def models_dir() -> Path:
    """Imported and trained models (GGUF imports, MTP heads)."""
    return _dir("LOOKAHEAD_MODELS_DIR", "models", lambda *a, **k: data_dir() / "models")


def cache_dir() -> Path:
    """Disposable state: prompt caches, precomputed training states."""
    return _dir("LOOKAHEAD_CACHE_DIR", "cache", platformdirs.user_cache_dir)


def config_dir() -> Path:
    """Settings files."""
    return _dir("LOOKAHEAD_CONFIG_DIR", "config", platformdirs.user_config_dir)


def database_path() -> Path:
    return data_dir() / "conversations.sqlite3"


def shipped_decoders_dir() -> Path:
    """Decoders that ship with the app (resources/decoders): read-only, never created.
    ``LOOKAHEAD_SHIPPED_DECODERS`` points elsewhere (tests, packaged bundles)."""
    if value := os.environ.get("LOOKAHEAD_SHIPPED_DECODERS"):
        return Path(value).expanduser()
    from resources import resource_path

    return resource_path("decoders")
