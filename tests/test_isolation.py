"""A test run cannot see the real home: every folder the app or huggingface_hub would
write to lies inside the throwaway folder tests/conftest.py made."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from engine import paths
from tests.conftest import PATH_VARS, TEST_HOME


def _inside(path: Path, root: str) -> bool:
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def test_every_app_folder_is_in_the_test_home():
    folders = {
        "data": paths.data_dir(),
        "models": paths.models_dir(),
        "cache": paths.cache_dir(),
        "config": paths.config_dir(),
        "database": paths.database_path(),
    }
    outside = {
        k: str(v) for k, v in folders.items() if not _inside(v, os.environ["LOOKAHEAD_HOME"])
    }
    assert outside == {}
    real = Path(platformdirs.user_data_dir(paths.APP_NAME, appauthor=False))
    assert not any(_inside(v, str(real)) for v in folders.values())


def test_the_hub_cache_is_in_the_test_home():
    from huggingface_hub import constants

    assert _inside(Path(constants.HF_HUB_CACHE), TEST_HOME)
    assert _inside(Path(constants.HF_TOKEN_PATH), TEST_HOME)


def test_no_variable_moves_a_folder_out():
    assert [v for v in PATH_VARS if v in os.environ] == []
    assert os.environ["LOOKAHEAD_HOME"] and os.environ["HF_HOME"]
