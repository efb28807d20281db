"""Test-wide isolation: no test touches the real home, hub or network."""

from __future__ import annotations

import os
import tempfile

# Before any engine import: every app path and the HF cache go to a throwaway dir.
_HOME = tempfile.mkdtemp(prefix="lookahead-tests-")
os.environ.setdefault("LOOKAHEAD_HOME", _HOME)
os.environ.setdefault("HF_HOME", os.path.join(_HOME, "hf"))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# The engine package preloads an optimized BLAS; it must be imported before mlx.
import pytest  # noqa: E402

import engine  # noqa: E402, F401


@pytest.fixture
def no_shipped_decoders(tmp_path, monkeypatch):
    """A library without the decoders shipped in resources/ (for tests that list an
    isolated library exactly; tests/engine/test_shipped_decoder.py covers those)."""
    monkeypatch.setenv("LOOKAHEAD_SHIPPED_DECODERS", str(tmp_path / "no-shipped-decoders"))
