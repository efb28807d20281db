"""The Models page against the fake hub on 127.0.0.1: search, download, resume, delete."""

from __future__ import annotations

import json

import pytest
from PySide6.QtWidgets import QApplication

from app.library.downloads import DownloadFailure
from app.library.local_library import LocalLibrary
from app.library.models_page import ModelsPage
from engine.hub import download_model, pending_downloads
from engine.library import local_models
from tests.hubserver import hub, safetensors_bytes  # noqa: F401 - the fixture
from tests.tiny_models import llama_config, write_tokenizer

# The library shows exactly what each test downloaded (test_shipped_decoder covers
# the decoders shipped with the app).
pytestmark = pytest.mark.usefixtures("no_shipped_decoders")

MAIN = "org/tiny-llama"
DECODER = "org/tiny-llama-mtp-head"
WITH_MTP = "org/tiny-mimo"
GATED = "corp/tiny-gated"
WEIGHTS = "model.safetensors"
H = 64
WAIT_MS = 20000


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory) -> tuple[int, dict[str, bytes]]:
    folder = tmp_path_factory.mktemp("tok")
    vocab = write_tokenizer(folder)
    return vocab, {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture
def published(hub, tokenizer_files):  # noqa: F811
    vocab, tok = tokenizer_files

    def repo(config: dict, shapes: dict, **extra: bytes) -> dict[str, bytes]:
        weights = safetensors_bytes(shapes)
        return {"config.json": json.dumps(config).encode(), **tok, WEIGHTS: weights, **extra}

    # ~600 KB of weights: big enough to cancel mid-file when throttled.
    main = repo(llama_config(vocab), {"model.embed_tokens.weight": (vocab, 4 * H), "w": (64, 2048)})
    hub.add_repo(MAIN, main, downloads=900, likes=12)
    own = {"family": "llama", "hidden_size": H, "vocab_size": vocab}  # a trained llama head
    head = {"model_type": "lookahead_mtp", "lookahead_decoder": own, "text_config": own}
    hub.add_repo(DECODER, repo(head, {"eh_proj.weight": (H, 2 * H)}), downloads=30)
    mtp = repo(llama_config(vocab), {"w": (4, 4)}, **{"mtp.safetensors": safetensors_bytes({})})
    hub.add_repo(WITH_MTP, mtp, downloads=50)
    hub.add_repo(GATED, repo(llama_config(vocab), {"w": (2, 2)}), gated="manual", downloads=10)
    return hub


def plain(text: str) -> str:
    return text.replace("\u00a0", " ")  # rows join their figures with no-break spaces


def make_page(qtbot) -> ModelsPage:
    page = ModelsPage()
    qtbot.addWidget(page)
    page.resize(1200, 800)
    signals = [page.results.sig_results, page.library.sig_snapshot]
    with qtbot.waitSignals(signals, timeout=WAIT_MS):
        page.show()
    return page


@pytest.fixture
def page(qtbot, themed, published):
    p = make_page(qtbot)
    yield p
    p.shutdown()


def test_search_shows_rows_with_badges(qtbot, page):
    rows = page.results.rows
    assert list(rows) == [MAIN, WITH_MTP, DECODER, GATED]  # by downloads
    assert rows[WITH_MTP].badge_texts() == ["MTP"]
    assert rows[DECODER].badge_texts() == ["MTP decoder"]
    assert rows[GATED].badge_texts() == ["Gated"] and rows[GATED].lock is not None
    assert rows[MAIN].badge_texts() == [] and rows[MAIN].lock is None
    meta = plain(rows[MAIN].meta.text())
    for part in ("org", "params", "fp32", "KB", "900 downloads", "12 likes"):
        assert part in meta
    assert rows[MAIN].action.state() == "download"

    page.has_mtp.setChecked(True)  # a client-side filter: no new request
    assert list(rows) == [WITH_MTP, DECODER]
    assert "2 hidden by filters" in page.results.status.text()
    page.has_mtp.setChecked(False)

    page.query.setText("gated")
    with qtbot.waitSignal(page.results.sig_results, timeout=WAIT_MS) as answer:
        page.query.returnPressed.emit()
    assert [m.id for m in answer.args[0]] == [GATED]


def test_download_shows_progress_and_lands_in_the_library(qtbot, page, published):
    published.throttle(1_500_000)
    seen: list = []
    page.manager.sig_progress.connect(lambda repo, p: seen.append(p))
    action = page.results.rows[MAIN].action
    with qtbot.waitSignal(page.sig_library_changed, timeout=WAIT_MS):
        action.download_button.click()
        assert action.state() == "running"
        qtbot.waitUntil(lambda: action.bar.maximum() == 1000, timeout=WAIT_MS)
        assert "%" in action.progress_text.text()
    assert seen and seen[-1].finished and seen[-1].fraction == 1.0
    assert any(p.rate_bps > 0 and p.eta_s is not None for p in seen)
    assert action.state() == "done"
    qtbot.waitUntil(lambda: MAIN in page.library.rows, timeout=WAIT_MS)
    assert "on disk" in plain(page.library.rows[MAIN].meta.text())
    assert [m.id for m in local_models()] == [MAIN]


def test_cancel_leaves_a_resumable_partial_which_resumes(qtbot, page, published):
    size = len(published.file(MAIN, WEIGHTS).data)
    published.throttle(200_000)  # slow enough that the cancel lands mid-file
    action = page.results.rows[MAIN].action
    action.download_button.click()
    qtbot.waitUntil(
        lambda: (
            (p := page.manager.latest(MAIN)) is not None
            and p.current_file == WEIGHTS
            and p.bytes_done > p.resumed_bytes + 20_000
        ),
        timeout=WAIT_MS,
    )
    with qtbot.waitSignal(page.manager.sig_failed, timeout=WAIT_MS) as stopped:
        action.cancel_button.click()
    failure: DownloadFailure = stopped.args[1]
    assert failure.kind == "cancelled" and failure.resumable
    assert action.state() == "resume" and "Paused" in action.message.text()
    qtbot.waitUntil(lambda: MAIN in page.library.pending_rows, timeout=WAIT_MS)
    assert MAIN not in page.library.rows  # unfinished is never a ready model
    (pending,) = pending_downloads()
    assert 0 < pending.bytes_done < pending.bytes_total

    # As after a restart: a new page offers to resume it.
    page.shutdown()
    again = make_page(qtbot)
    row = again.library.pending_rows[MAIN]
    assert row.action.state() == "resume"
    assert again.results.rows[MAIN].action.state() == "resume"
    published.throttle(None)
    with qtbot.waitSignal(again.sig_library_changed, timeout=WAIT_MS):
        row.action.download_button.click()
    qtbot.waitUntil(lambda: MAIN in again.library.rows, timeout=WAIT_MS)
    assert not again.library.pending_rows
    assert again.results.rows[MAIN].action.state() == "done"
    assert published.sent_bytes(MAIN, WEIGHTS) < 2 * size  # resumed, not fetched twice
    again.shutdown()


def test_gated_repo_shows_the_token_message(qtbot, page):
    action = page.results.rows[GATED].action
    with qtbot.waitSignal(page.manager.sig_failed, timeout=WAIT_MS) as failed:
        action.download_button.click()
    assert failed.args[1].kind == "gated"
    assert action.message.isVisibleTo(page) and "HF_TOKEN" in action.message.text()
    assert action.message.property("kind") == "error"
    assert action.state() == "retry"


def test_decoders_nest_under_their_model_and_delete_asks_first(
    qtbot, themed, published, monkeypatch
):
    download_model(MAIN)
    download_model(DECODER)
    page = make_page(qtbot)
    library = page.library
    assert list(library.rows) == [MAIN]  # the decoder pairs, so it is listed under it
    (line,) = library.rows[MAIN].decoder_rows
    assert line.match.decoder.id == DECODER and line.badge.text() == "pairs with it"
    assert "same tokenizer" in line.note.text()
    assert page.results.rows[DECODER].action.state() == "done"

    asked: list[str] = []
    monkeypatch.setattr(LocalLibrary, "confirm_delete", lambda self, what, d: asked.append(d))
    library.rows[MAIN].delete_button.click()
    assert asked and "This frees" in asked[0]
    assert MAIN in {m.id for m in local_models()}  # answered no

    monkeypatch.setattr(LocalLibrary, "confirm_delete", lambda self, what, d: True)
    with qtbot.waitSignal(page.sig_library_changed, timeout=WAIT_MS):
        line.delete_button.click()
    qtbot.waitUntil(lambda: not library.rows[MAIN].decoder_rows, timeout=WAIT_MS)
    with qtbot.waitSignal(page.sig_library_changed, timeout=WAIT_MS):
        library.rows[MAIN].delete_button.click()
    qtbot.waitUntil(lambda: not library.rows, timeout=WAIT_MS)
    assert local_models() == []
    assert page.results.rows[MAIN].action.state() == "download"
    page.shutdown()


def test_an_unreachable_hub_says_so_and_offers_a_retry(qtbot, themed, published):
    published.stop()
    page = ModelsPage()
    qtbot.addWidget(page)
    with qtbot.waitSignal(page.results.sig_search_failed, timeout=WAIT_MS) as failed:
        page.show()
    assert "reach" in failed.args[0] or "127.0.0.1" in failed.args[0]
    empty = page.results.empty
    assert empty.isVisibleTo(page) and empty.button.text() == "Try again"
    assert empty.text.text() == failed.args[0]
    with qtbot.waitSignal(page.results.sig_search_failed, timeout=WAIT_MS):
        empty.button.click()  # still down: the same message again, no crash


def test_one_download_per_repo(qtbot, page, published):
    published.throttle(200_000)
    assert page.manager.start(MAIN)
    assert not page.manager.start(MAIN)
    assert page.manager.running() == [MAIN]
    with qtbot.waitSignal(page.manager.sig_failed, timeout=WAIT_MS):
        page.manager.cancel(MAIN)
    assert page.manager.running() == []


def test_theme_switch_restyles_the_page(qtbot, page):
    from app import theme

    light = theme.apply_theme(QApplication.instance(), "light")
    assert light.surface in page.results.styleSheet()
    assert light.surface in page.library.styleSheet()
    theme.apply_theme(QApplication.instance(), "dark")
