"""Launch the app for real: the --screenshot option, and a compare on the starter model."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PySide6.QtGui import QImage


def _run_launcher(args: list[str], home, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", LOOKAHEAD_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "app.launcher", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _check_png(path, width: int, height: int) -> None:
    image = QImage(str(path))
    assert not image.isNull(), f"{path} is not a PNG"
    assert (image.width(), image.height()) == (width, height)


def test_screenshot_option_on_the_fake_engine(tmp_path):
    shot = tmp_path / "fake.png"
    result = _run_launcher(
        ["--fake-engine", "--screenshot", str(shot), "--send", "hi", "--size", "1200x800"],
        tmp_path / "home",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    _check_png(shot, 1200, 800)


def test_screenshot_of_the_first_run_page(tmp_path):
    shot = tmp_path / "first-run.png"
    result = _run_launcher(
        ["--fake-engine", "--first-run", "--screenshot", str(shot), "--size", "1000x700"],
        tmp_path / "home",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    _check_png(shot, 1000, 700)


@pytest.mark.starter
def test_real_app_compares_decoder_off_and_on(qtbot, themed, tmp_path, starter_gguf):
    """First run imports the starter, then one prompt goes to two panes, one with a
    drafter, and both finish with the same greedy text."""
    from app.bridge import EngineBridge
    from app.library.catalog import ModelCatalog
    from app.library.first_run import default_starter
    from app.main_window import MainWindow
    from engine.service import EngineService

    bridge = EngineBridge(EngineService().start())
    try:
        win = MainWindow(bridge, ModelCatalog(), default_starter())
        qtbot.addWidget(win)
        win.resize(1360, 860)
        win.show()
        qtbot.waitUntil(lambda: win.ready, timeout=300_000)
        off, on = win.panes
        assert off.model_id() and off.model_id() == on.model_id()
        for pane in (off, on):
            pane.controls.max_tokens.setValue(40)
        assert not off.controls.settings().decoder.enabled
        assert on.controls.settings().decoder.enabled
        assert win.send("Name three colours.", to_all=True) == [off, on]
        qtbot.waitUntil(lambda: not off.busy and not on.busy, timeout=300_000)
        a, b = off.transcript.last, on.transcript.last
        assert a.finish_reason in ("stop", "length"), a.error
        assert b.finish_reason in ("stop", "length"), b.error
        assert a.content and a.content == b.content  # speculation never changes greedy output
        assert b.stats["decoder"] and not a.stats["decoder"]
        win.grab().save(str(tmp_path / "real.png"))
    finally:
        bridge.close()


@pytest.mark.starter
def test_lookahead_screenshot_on_the_real_engine(tmp_path, starter_gguf):
    shot = tmp_path / "real.png"
    result = _run_launcher(
        ["--screenshot", str(shot), "--send", "Say hello.", "--size", "1280x800"],
        tmp_path / "home",
        timeout=500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _check_png(shot, 1280, 800)
