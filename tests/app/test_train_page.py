"""The Train page end to end: a tiny model, a few stored chats with it, Start in the
app, a real training process with live progress, Pause and Resume, and the result
pairing in the pane's decoder list and in compare mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.library.catalog import ModelCatalog
from app.main_window import MainWindow
from engine import paths
from engine.model_loader import load_model
from engine.mtp_train import job as J
from engine.storage import ConversationStore
from tests.tiny_models import make_tiny_model
from tests.train_chats import store_chats

SHOTS = os.environ.get("LOOKAHEAD_TEST_SHOTS")  # a folder: save the page as PNGs there


@pytest.fixture
def library(no_shipped_decoders, monkeypatch):
    """The tiny model in the library and 12 stored chats with it (and shorter runs)."""
    monkeypatch.setattr("app.train.page.LENGTHS", (("Quick", 20), ("Standard", 60), ("Long", 400)))
    model_dir = make_tiny_model(paths.models_dir() / "tiny-chat", seed=5)
    store_chats(load_model(str(model_dir)), paths.database_path(), "tiny-chat")
    catalog = ModelCatalog()
    catalog.refresh()
    return catalog


def _window(qtbot, bridge, catalog) -> MainWindow:
    win = MainWindow(bridge, catalog, store=ConversationStore())
    qtbot.addWidget(win)
    win.resize(1500, 980)
    win.show()
    qtbot.waitUntil(lambda: win.ready)
    win.show_section("train")
    return win


def _shot(win: MainWindow, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        win.grab().save(str(Path(SHOTS) / f"{name}.png"))


def _one_card(page):
    assert len(page.cards) == 1
    return next(iter(page.cards.values()))


def test_train_from_chats_then_compare(qtbot, bridge, library) -> None:
    win = _window(qtbot, bridge, library)
    page = win.train_page
    assert win.stack.currentWidget() is win.sections["train"]
    assert page.model.currentData() == "tiny-chat"
    assert page.chats_note.text() == "12 chats \u00b7 24 replies \u00b7 " + page.chats_note.text().split(" \u00b7 ")[-1]  # fmt: skip
    page.preview_button.click()
    assert page.preview.count() == 12 and page.preview.isVisibleTo(page)
    assert page.use_chats.isChecked() and not page.use_prompts.isChecked()
    page.length.setCurrentIndex(2)  # long enough to watch it run
    assert "min on this computer" in page.estimate.text()
    job = page.start()
    assert job is not None and job.spec.data.chats_of == "tiny-chat"
    card = _one_card(page)
    qtbot.waitUntil(lambda: card.job.state == "training" and len(card.loss) >= 3, timeout=60000)
    qtbot.waitUntil(lambda: len(card.val) >= 1, timeout=60000)
    assert card.buttons["pause"].isVisibleTo(card) and not card.buttons["compare"].isVisibleTo(card)
    assert card.figures["base"].value.text().endswith("%")
    _shot(win, "train-page-training")
    # Pause: the process checkpoints and stops; Resume carries on to the end.
    card.buttons["pause"].click()
    qtbot.waitUntil(lambda: card.job.state == "paused", timeout=30000)
    assert card.buttons["resume"].isVisibleTo(card) and not J.is_running(card.job.folder)
    paused_at = card.job.status["step"]
    assert 0 < paused_at < 400
    with qtbot.waitSignal(page.sig_finished, timeout=120000) as finished:
        card.buttons["resume"].click()
    done = finished.args[0]
    r = done.status["result"]
    assert r["acceptance"] > r["baseline"]  # beats the untrained head on held-out replies
    assert "Drafter tiny-chat-MTP-mine is ready" in win.sidebar.notice_text.text()
    page.poll()
    assert card.buttons["compare"].isVisibleTo(card) and "in your library" in card.data_note.text()
    _shot(win, "train-page-done")
    # The Models page lists it under its model with what it was trained on.
    from app.library.local_library import DecoderLine

    def line():
        return next(
            (
                x
                for x in win.models_page.findChildren(DecoderLine)
                if "MTP-mine" in x.name.full_text()
            ),
            None,
        )

    qtbot.waitUntil(lambda: line() is not None, timeout=20000)
    assert "trained on your chats" in line().note.text()
    assert "of first drafts accepted on held-out text" in line().note.text()
    # It is in the panes' decoder lists, and Compare sets up off vs on.
    pane = win.panes[0]
    labels = [pane.controls.decoder_combo.itemText(i) for i in range(pane.controls.decoder_combo.count())]  # fmt: skip
    assert any("tiny-chat-MTP-mine" in label for label in labels), labels
    card.buttons["compare"].click()
    assert win.stack.currentWidget() is win.chat_page
    a, b = win.panes[:2]
    assert not a.controls.settings().decoder.enabled
    assert b.controls.settings().decoder.decoder.endswith("tiny-chat-MTP-mine")
    # Retraining is offered now that a drafter exists.
    win.show_section("train")
    assert page.retrain.isVisibleTo(page) and page.plan().spec.train["init"] == r["decoder"]


def test_bad_choices_say_why(qtbot, bridge, library) -> None:
    win = _window(qtbot, bridge, library)
    page = win.train_page
    page.use_chats.setChecked(False)
    page.use_prompts.setChecked(False)
    assert not page.start_button.isEnabled()
    assert "Choose some training text" in page.banner.text.text()
    assert page.start() is None
    # A run whose process died shows as interrupted and can be resumed or removed.
    page.use_chats.setChecked(True)
    folder = J.create_job(page.plan().spec)
    J._update(folder, state="training", pid=999_999, step=7, steps=400)
    page.poll()
    card = _one_card(page)
    assert card.job.state == "interrupted" and "Resume continues" in card.status.text.text()
    assert card.buttons["resume"].isVisibleTo(card)
    card.buttons["remove"].click()
    assert not page.cards and not folder.exists() and page.empty.isVisibleTo(page)
