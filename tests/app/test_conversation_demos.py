"""The conversation and inspector widgets start on their own (python -m app.<module>)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PySide6.QtGui import QImage

MODULES = ("conversation_list", "sidebar", "token_inspector")


@pytest.mark.parametrize("module", MODULES)
def test_widget_demo_runs(module, tmp_path):
    shot = tmp_path / f"{module}.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", LOOKAHEAD_HOME=str(tmp_path / "home"))
    result = subprocess.run(
        [sys.executable, "-m", f"app.{module}", "--screenshot", str(shot), "--wait", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert not QImage(str(shot)).isNull()
