"""New drafter kinds in the pane's decoder list and the library's badges."""

from __future__ import annotations

from dataclasses import replace

from app.chat.inference_controls import InferenceControls
from app.dev.fake_engine import FAKE_MODELS
from app.library.local_library import decoder_badge
from engine.decoder_catalog import DecoderChoice
from engine.library import LocalModel

SMOL, _ = FAKE_MODELS


def test_block_drafter_is_listed_tagged_and_picked(qtbot, themed):
    dflash = DecoderChoice(
        "z-lab/Qwen3-DFlash-b16", "Qwen3-DFlash-b16", "dflash", "library", True,
        "DFlash block drafter: hidden 64, vocab 259",
    )  # fmt: skip
    entry = replace(SMOL, decoders=(dflash, *SMOL.decoders))
    w = InferenceControls()
    qtbot.addWidget(w)
    w.set_model(entry)
    assert "DFlash block drafter" in w.decoder_combo.itemText(0)
    w.decoder_combo.setCurrentIndex(0)
    w.decoder_enabled.setChecked(True)
    w.draft_tokens.setValue(16)
    assert w.decoder_label() == "DFlash \u00b7 16 drafts"
    assert w.settings().decoder.draft_tokens == 16


def test_library_badges_each_kind(qtbot, tmp_path):
    def model(kind):
        return LocalModel(
            id=f"x/{kind}", path=tmp_path, source="hub", model_type="qwen3",
            is_decoder=True, size_bytes=1, decoder_kind=kind,
        )  # fmt: skip

    assert decoder_badge(model("dflash")).text() == "DFlash"
    assert decoder_badge(model("dspark")).text() == "DSpark"
    assert decoder_badge(model("eagle3")).text() == "EAGLE-3"
    assert decoder_badge(model("assistant")).text() == "Assistant"
