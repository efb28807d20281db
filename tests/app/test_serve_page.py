"""The Serve page runs the real ApiServer in-process on the app's (fake) engine."""

from __future__ import annotations

import socket

import httpx
import pytest

from app.dev.fake_engine import fake_api_catalog
from app.serve.page import ServePage
from app.serve.runner import friendly_error, is_loopback
from app.settings.app_settings import AppSettings

START_TIMEOUT_MS = 30000
CHAT = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 20}


@pytest.fixture
def settings(themed):
    s = AppSettings()
    s.set_serve(port=0)  # any free port: tests run side by side
    return s


def make_page(qtbot, bridge, settings) -> ServePage:
    page = ServePage(bridge, settings, api_catalog=fake_api_catalog())
    qtbot.addWidget(page)
    page.show()
    return page


@pytest.fixture
def page(qtbot, bridge, settings):
    page = make_page(qtbot, bridge, settings)
    yield page
    page.shutdown()


def start(qtbot, page: ServePage) -> str:
    page.start()
    qtbot.waitUntil(lambda: page.state in ("running", "error"), timeout=START_TIMEOUT_MS)
    assert page.state == "running", page.error
    return page.url


def test_start_serves_the_models_and_logs_the_request(qtbot, page):
    url = start(qtbot, page)
    assert page.status.text.text() == f"Running at {url}"
    assert page.start_button.text() == "Stop serving"
    assert page.connect_panel.openai_url.value.full_text() == f"{url}/v1"
    reply = httpx.get(f"{url}/v1/models", timeout=10)
    assert reply.status_code == 200
    ids = {m["id"] for m in reply.json()["data"]}
    assert {"SmolLM2-135M-Instruct", "Qwen3-0.6B<decoder>lookup"} <= ids
    qtbot.waitUntil(lambda: any(r.request == "GET /v1/models" for r in page.log.rows))
    row = next(r for r in page.log.rows if r.request == "GET /v1/models")
    assert row.status == "200" and row.level == "ok"
    assert page.log_view.table.rowCount() >= 1
    assert page.log.summary().startswith("1 request")
    # The same ids are listed with copy buttons, decoder tags included.
    qtbot.waitUntil(lambda: "Qwen3-0.6B<decoder>lookup" in page.model_ids.ids, timeout=10000)


def test_requests_without_the_api_key_are_refused(qtbot, page):
    page.generate_key.click()
    key = page.key.text()
    assert key.startswith("la-") and len(key) > 20
    assert page.show_key.isChecked()  # a new key is shown so it can be copied
    url = start(qtbot, page)
    assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401
    ok = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert ok.status_code == 200
    assert key in page.connect_panel.snippet(masked=False)
    qtbot.waitUntil(lambda: page.log.errors == 1)
    assert [r.status for r in page.log.rows if r.kind == "http"] == ["401", "200"]


def test_override_answers_with_the_focused_panes_model(qtbot, page, fake_service):
    page.set_focused_model("Qwen3-0.6B", "none", "Pane 2")
    page.override.setChecked(True)
    assert "Qwen3-0.6B (Pane 2)" in page.override_note.text()
    url = start(qtbot, page)
    body = {"model": "SmolLM2-135M-Instruct", **CHAT}
    reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "Qwen3-0.6B"
    assert fake_service.submitted[-1].model == "Qwen3-0.6B"
    qtbot.waitUntil(lambda: any(r.kind == "generation" for r in page.log.rows), timeout=10000)
    gen = next(r for r in page.log.rows if r.kind == "generation")
    assert gen.model == "Qwen3-0.6B" and "\u2192" in gen.tokens and gen.duration
    # Off again: the client's choice counts, from the very next request.
    page.override.setChecked(False)
    reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert reply.json()["model"] == "SmolLM2-135M-Instruct"


def test_override_carries_the_panes_decoder(qtbot, page, fake_service):
    page.set_focused_model("SmolLM2-135M-Instruct", "lookup", "Pane 1")
    page.override.setChecked(True)
    url = start(qtbot, page)
    reply = httpx.post(f"{url}/api/chat", json={"model": "anything", **CHAT, "stream": False})
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "SmolLM2-135M-Instruct<decoder>lookup"
    assert fake_service.submitted[-1].decoder.decoder == "lookup"


def test_port_in_use_is_a_clear_error_and_the_page_recovers(qtbot, page):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        page.port.setValue(port)
        page.start()
        qtbot.waitUntil(lambda: page.state == "error", timeout=START_TIMEOUT_MS)
        text = page.status.text.text()
        assert f"Port {port} is already in use" in text
        assert "\n" not in text
        assert page.server is None and page.start_button.isEnabled()
    page.port.setValue(0)
    start(qtbot, page)


def test_stop_releases_the_port(qtbot, page):
    url = start(qtbot, page)
    page.stop()
    qtbot.waitUntil(lambda: page.state == "stopped", timeout=START_TIMEOUT_MS)
    assert page.status.text.text() == "Stopped"
    assert page.start_button.text() == "Start serving"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v1/models", timeout=5)


def test_changed_address_offers_a_restart(qtbot, page):
    start(qtbot, page)
    page.key.setText("new-key")
    assert page.restart_button.isVisibleTo(page)
    assert "restart to use the changes" in page.status.text.text()
    page.restart()
    qtbot.waitUntil(
        lambda: page.state == "running" and not page.restart_button.isVisibleTo(page),
        timeout=START_TIMEOUT_MS,
    )
    assert httpx.get(f"{page.url}/v1/models", timeout=10).status_code == 401


def test_binding_beyond_loopback_warns(qtbot, page):
    assert page.banner.isHidden()
    page.host.setEditText("0.0.0.0")
    assert page.banner.isVisibleTo(page)
    assert "no API key" in page.banner.text.text()
    assert page.banner.property("kind") == "danger"
    page.key.setText("k")
    assert page.banner.property("kind") == "warning"
    assert "Only clients with the API key" in page.banner.text.text()
    page.host.setEditText("127.0.0.1")
    assert page.banner.isHidden()


def test_settings_persist_across_a_new_page(qtbot, bridge, settings):
    first = make_page(qtbot, bridge, settings)
    first.host.setEditText("0.0.0.0")
    first.port.setValue(12345)
    first.key.setText("secret")
    first.override.setChecked(True)
    first.cache.setChecked(True)
    first.autostart.setChecked(False)
    first.close()
    first.deleteLater()
    second = make_page(qtbot, bridge, AppSettings())  # read back from the file
    assert second.config() == ("0.0.0.0", 12345, "secret")
    assert second.override.isChecked() and second.cache.isChecked()
    assert not second.autostart.isChecked()
    assert bridge.service.cache_prompts is True  # the engine switch follows the setting
    second.shutdown()


def test_start_on_launch(qtbot, bridge, settings):
    settings.set_serve(start_on_launch=True)
    page = make_page(qtbot, bridge, AppSettings())
    try:
        qtbot.waitUntil(lambda: page.state == "running", timeout=START_TIMEOUT_MS)
        assert httpx.get(f"{page.url}/", timeout=10).text == "Lookahead is running"
    finally:
        page.shutdown()
    assert not page.running


def test_cache_prompts_switches_the_real_engine(qtbot, themed, settings):
    from app.bridge import EngineBridge
    from engine.service import EngineService

    service = EngineService(cache_prompts=False)  # not started: no model, no MLX work
    bridge = EngineBridge(service)
    try:
        page = make_page(qtbot, bridge, settings)
        page.cache.setChecked(True)
        assert service.cache_prompts is True
        assert str(service.prompt_cache_disk.folder) in page.cache_note.text()
        page.cache.setChecked(False)
        assert service.cache_prompts is False
        assert AppSettings().serve.cache_prompts is False
    finally:
        bridge.close()


def test_main_window_serve_section_follows_the_focused_pane(qtbot, bridge, catalog):
    from app.main_window import MainWindow

    settings = AppSettings()
    settings.set_serve(port=0)
    win = MainWindow(bridge, catalog, settings=settings, api_catalog=fake_api_catalog())
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.ready)
    win.sidebar.section_button("serve").click()
    assert win.stack.currentWidget() is win.sections["serve"]
    assert not win.add_pane_button.isVisible()
    a, b = win.panes
    win.set_focused(a)
    assert win.serve_page.served_model() == "SmolLM2-135M-Instruct"
    b.model_picker.setCurrentIndex(1)  # Qwen3-0.6B; the second pane drafts with lookup
    win.set_focused(b)
    assert win.serve_page.served_model() == "Qwen3-0.6B<decoder>lookup"
    b.controls.decoder_enabled.setChecked(False)
    assert win.serve_page.served_model() == "Qwen3-0.6B"
    win.sidebar.section_button("settings").click()
    assert win.stack.currentWidget() is win.sections["settings"]
    win.serve_page.start()
    qtbot.waitUntil(lambda: win.serve_page.running, timeout=START_TIMEOUT_MS)
    url = win.serve_page.url
    win.close()  # quitting stops the server
    assert not win.serve_page.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/", timeout=5)


def test_friendly_errors():
    assert friendly_error(
        "the API server could not start: cannot listen on 127.0.0.1:8080: Address already in use",
        "127.0.0.1",
        8080,
    ).startswith("Port 8080 is already in use")
    assert "not an address of this computer" in friendly_error(
        "cannot listen on 10.9.9.9:1: Cannot assign requested address", "10.9.9.9", 1
    )
    assert "administrator" in friendly_error("Permission denied", "127.0.0.1", 80)
    assert friendly_error("odd", "h", 1) == "Could not start: odd"
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_defaults_match_the_engine_server():
    from app.serve import runner as serve_runner
    from app.settings import app_settings
    from engine import server

    assert app_settings.DEFAULT_HOST == server.DEFAULT_HOST
    assert app_settings.DEFAULT_PORT == server.DEFAULT_PORT
    assert serve_runner.DECODER_TAG == server.DECODER_TAG
