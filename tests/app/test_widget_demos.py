"""Every widget module starts on its own against the fake engine (python -m app.<module>)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PySide6.QtGui import QImage

MODULES = (
    "chat_pane",
    "first_run",
    "inference_controls",
    "main_window",
    "metrics_plot",
    "prompt_box",
    "serve_page",
    "settings_page",
    "transcript_view",
)
# Pages laid out for a window rather than a pane get a window-sized screen.
SIZES = {"serve_page": "1000x800", "settings_page": "1000x800"}


@pytest.mark.parametrize("module", MODULES)
def test_widget_demo_runs(module, tmp_path):
    shot = tmp_path / f"{module}.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", LOOKAHEAD_HOME=str(tmp_path / "home"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            f"app.{module}",
            "--screenshot",
            str(shot),
            "--wait",
            "1",
            "--size",
            SIZES.get(module, "640x480"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert not QImage(str(shot)).isNull()
