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
import engine  # noqa: E402, F401
