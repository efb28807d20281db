"""Every demo starts on its own against the fake engine (python -m app.dev.demo NAME)
and renders; the library's widgets browse the fake hub."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from app.dev.demos import DEMOS

FAKE_HUB = {"models_page", "model_search", "local_library"}


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", LOOKAHEAD_HOME=str(tmp_path / "home"))
    return subprocess.run(
        [sys.executable, "-m", "app.dev.demo", *args],
        env=env,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", sorted(DEMOS))
def test_demo_runs(name, tmp_path):
    shot = tmp_path / f"{name}.png"
    extra = ["--fake-hub", "--wait", "2"] if name in FAKE_HUB else ["--wait", "1"]
    result = _demo(tmp_path, name, "--screenshot", str(shot), *extra)
    assert result.returncode == 0, result.stderr[-2000:]
    image = QImage(str(shot))
    assert not image.isNull() and image.width() > 100


def test_demo_list_names_every_demo(tmp_path):
    result = _demo(tmp_path, "--list")
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == list(DEMOS)


def test_unknown_demo_is_refused_with_the_choices(tmp_path):
    result = _demo(tmp_path, "token_inpsector")
    assert result.returncode == 2
    assert "token_inspector" in result.stderr
