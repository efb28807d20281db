from app.chat.pane import ChatPane
from engine.events import Generate


def make(qtbot, bridge, catalog):
    pane = ChatPane(bridge, "Pane 1")
    qtbot.addWidget(pane)
    pane.set_models(catalog.models())
    pane.resize(700, 700)
    pane.show()
    return pane


def test_send_streams_and_finishes(qtbot, bridge, catalog, fake_service):
    pane = make(qtbot, bridge, catalog)
    with qtbot.waitSignal(pane.sig_busy_changed) as started:
        assert pane.send("Write fizzbuzz")
    assert started.args == [True]
    assert not pane.send("again")  # one request at a time
    qtbot.waitUntil(lambda: not pane.busy, timeout=10000)
    reply = pane.transcript.last
    assert reply.finish_reason == "stop"
    assert "fizzbuzz" in reply.content and reply.tokens
    assert pane.metrics.tokens.value.text() == str(reply.stats["generation_tokens"])
    widget = pane.view.message_widgets[-1]
    assert widget.tag.text() == "stop"
    command = fake_service.submitted[-1]
    assert isinstance(command, Generate) and command.model == "SmolLM2-135M-Instruct"
    assert command.messages[-1].content == "Write fizzbuzz"


def test_header_shows_the_context_used_against_the_window(qtbot, bridge, catalog):
    from app.dev.fake_engine import CONTEXT_LENGTH

    pane = make(qtbot, bridge, catalog)
    assert pane.context_meter.text() == ""
    pane.send("Write fizzbuzz")
    qtbot.waitUntil(lambda: not pane.busy, timeout=10000)
    stats = pane.transcript.last.stats
    used = stats["prompt_tokens"] + stats["generation_tokens"]
    assert used > 0
    assert pane.context_meter.text() == f"{used:,} / {CONTEXT_LENGTH:,} ctx"
    assert "window" in pane.context_meter.toolTip()
    assert pane.context_meter.property("warn") is False


def test_decoder_on_sends_decoder_settings_and_shows_acceptance(
    qtbot, bridge, catalog, fake_service
):
    pane = make(qtbot, bridge, catalog)
    pane.controls.decoder_enabled.setChecked(True)
    assert pane.decoder_chip.text().startswith("MTP")
    assert pane.highlight_button.isVisible()
    pane.send("hi")
    qtbot.waitUntil(lambda: not pane.busy, timeout=10000)
    assert fake_service.submitted[-1].decoder.decoder == "SmolLM2-135M-MTP"
    assert pane.transcript.last.stats["drafted"] > 0
    assert pane.metrics.acceptance.value.text().endswith("/step")


def test_stop_cancels(qtbot, bridge, catalog, fake_service):
    fake_service.tokens_per_second = 20
    pane = make(qtbot, bridge, catalog)
    pane.send("slow please")
    qtbot.waitUntil(lambda: bool(pane.transcript.last.tokens), timeout=5000)
    pane.stop()
    qtbot.waitUntil(lambda: not pane.busy, timeout=5000)
    assert pane.transcript.last.finish_reason == "cancelled"


def test_failure_is_shown_and_pane_recovers(qtbot, bridge, catalog):
    pane = make(qtbot, bridge, catalog)
    pane.send("/fail")
    qtbot.waitUntil(lambda: not pane.busy, timeout=5000)
    assert pane.transcript.last.finish_reason == "error"
    assert "scripted failure" in pane.transcript.last.error
    assert pane.send("now work")
    qtbot.waitUntil(lambda: not pane.busy, timeout=10000)
    assert pane.transcript.last.finish_reason == "stop"
    # The failed turn is not sent back to the model.
    assert [m.role for m in bridge.service.submitted[-1].messages] == ["user", "user"]


def test_invalid_settings_fail_without_reaching_the_engine(
    qtbot, bridge, catalog, fake_service, monkeypatch
):
    pane = make(qtbot, bridge, catalog)
    from app.chat.inference_controls import PaneSettings
    from engine.settings import SamplingSettings

    monkeypatch.setattr(
        pane.controls, "settings", lambda: PaneSettings(SamplingSettings(top_p=0.0))
    )
    before = len(fake_service.submitted)
    assert not pane.send("hi")
    assert len(fake_service.submitted) == before
    assert "top_p" in pane.transcript.last.error


def test_thinking_model_and_clear(qtbot, bridge, catalog, fake_service):
    pane = make(qtbot, bridge, catalog)
    pane.model_picker.setCurrentIndex(1)
    assert pane.model_id() == "Qwen3-0.6B"
    pane.controls.thinking_buttons["on"].click()
    pane.send("think first")
    qtbot.waitUntil(lambda: not pane.busy, timeout=10000)
    assert fake_service.submitted[-1].thinking == "on"
    assert pane.transcript.last.reasoning
    pane.clear()
    assert pane.transcript.messages == []


def test_drawer_and_close_request(qtbot, bridge, catalog):
    pane = make(qtbot, bridge, catalog)
    assert not pane.controls.isVisible()
    pane.decoder_chip.click()
    assert pane.controls.isVisible() and pane.settings_button.isChecked()
    pane.settings_button.click()
    assert not pane.controls.isVisible()
    with qtbot.waitSignal(pane.sig_close_requested):
        pane.close_button.click()
