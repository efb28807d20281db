from app.chat.inference_controls import InferenceControls, PaneSettings
from app.dev.fake_engine import FAKE_MODELS
from engine.settings import SamplingSettings

SMOL, QWEN = FAKE_MODELS


def make(qtbot):
    w = InferenceControls()
    qtbot.addWidget(w)
    w.show()
    return w


def test_defaults_match_engine_defaults(qtbot, themed):
    w = make(qtbot)
    s = w.settings()
    assert s.sampling == SamplingSettings()
    assert s.decoder.decoder == "none"
    assert s.thinking == "off"
    assert w.decoder_label() == "Decoder off"


def test_thinking_shown_only_when_the_model_supports_it(qtbot, themed):
    w = make(qtbot)
    w.set_model(SMOL)
    assert not w.thinking_section.isVisible()
    w.set_model(QWEN)
    assert w.thinking_section.isVisible()
    assert all(w.thinking_buttons[m].isVisible() for m in ("off", "on", "max"))
    w.thinking_buttons["max"].click()
    assert w.settings().thinking == "max"
    w.set_model(SMOL)
    assert w.settings().thinking == "off"


def test_decoder_choices_and_why_not(qtbot, themed):
    w = make(qtbot)
    w.set_model(SMOL)
    values = [w.decoder_combo.itemData(i).value for i in range(w.decoder_combo.count())]
    assert values == ["SmolLM2-135M-MTP", "lookup"]  # best first, as the engine orders them
    assert w.decoder_combo.currentData().value == "SmolLM2-135M-MTP"  # what auto would run
    assert "Shipped with Lookahead" in w.decoder_note.text()
    w.decoder_enabled.setChecked(True)
    w.draft_tokens.setValue(4)
    s = w.settings()
    assert (s.decoder.decoder, s.decoder.draft_tokens, s.decoder.adaptive) == (
        "SmolLM2-135M-MTP",
        4,
        False,
    )
    assert w.decoder_label() == "MTP \u00b7 4 drafts"
    w.set_model(QWEN)
    assert "vocabularies differ" in w.decoder_note.text()
    assert w.settings().decoder.decoder == "lookup"


def test_set_settings_round_trip_and_reset(qtbot, themed):
    w = make(qtbot)
    w.set_model(QWEN)
    wanted = PaneSettings(
        SamplingSettings(
            temperature=0.7,
            top_p=0.9,
            top_k=40,
            min_p=0.05,
            repetition_penalty=1.1,
            seed=42,
            max_tokens=256,
            max_loop_count=3,
        ),
        thinking="on",
        system_prompt="Be brief.",
    )
    with qtbot.waitSignal(w.sig_changed):
        w.set_settings(wanted)
    assert w.settings() == wanted
    w.reset()
    assert w.settings().sampling == SamplingSettings()


def test_close_button_asks_to_close(qtbot, themed):
    from app.widgets import IconButton

    w = make(qtbot)
    close = [b for b in w.findChildren(IconButton) if b.toolTip().startswith("Hide")][0]
    with qtbot.waitSignal(w.sig_close_requested):
        close.click()
