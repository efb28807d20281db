"""Fixtures for widget tests: offscreen Qt, a throwaway home, the fake engine."""

from __future__ import annotations

import os

# Before Qt starts: no display needed (tests/conftest.py has already isolated the home).
os.environ["QT_QPA_PLATFORM"] = "offscreen"

import pytest


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKAHEAD_HOME", str(tmp_path / "home"))


@pytest.fixture(autouse=True)
def _gc_on_gui_thread(qapp):
    """As in the app: a worker thread's collection must never destroy Qt objects."""
    from app.gui_thread_gc import collect_on_gui_thread

    collect_on_gui_thread()


@pytest.fixture
def themed(qapp):
    """The app with the dark theme applied (fonts, palette, stylesheet)."""
    from app import theme

    theme.apply_theme(qapp, "dark")
    return qapp


@pytest.fixture
def fake_service():
    from app.dev.fake_engine import FakeEngineService

    service = FakeEngineService(tokens_per_second=400, load_seconds=0.05).start()
    yield service
    service.close()


@pytest.fixture
def bridge(themed, fake_service):
    from app.bridge import EngineBridge

    b = EngineBridge(fake_service)
    yield b
    b.close()


@pytest.fixture
def catalog():
    from app.dev.fake_engine import fake_catalog

    return fake_catalog()
