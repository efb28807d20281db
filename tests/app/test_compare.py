"""Compare mode's verdict: the speed-up, the memory, and same answer or why not."""

from __future__ import annotations

import json
import math

import pytest

from app.chat.pane_model import Message
from app.compare.verdict import Run, compare, export_json, markdown_table, sameness
from app.dev.fake_script import DIVERGE_AT
from app.main_window import MainWindow
from engine.events import Alternative, TokenRecord


def reply(ids, *, tps=20.0, decoder=None, temperature=0.0, finish="stop", model="m", **stats):
    tokens = [
        TokenRecord(
            i,
            t,
            f"w{t}",
            math.log(0.51),
            0.5,
            top=(Alternative(t, f"w{t}", 0.51), Alternative(9, "w9", 0.49)),
        )
        for i, t in enumerate(ids)
    ]
    figures = {
        "generation_tps": tps,
        "elapsed_s": len(ids) / tps,
        "ttft_s": 0.1,
        "dtype": "bfloat16",
        "decoder": decoder,
        **stats,
    }
    settings = {"sampling": {"temperature": temperature, "top_p": 1.0}, "thinking": "off"}
    return Message(
        "assistant",
        "text",
        tokens=tokens,
        model=model,
        finish_reason=finish,
        stats=figures,
        settings=settings,
    )


def run(pane, message, prompt="hi"):
    return Run.of(pane, [Message("user", prompt), message])


def test_identical_answers_with_the_speedup_and_the_decoder_cost():
    base = run("Pane 1", reply([1, 2, 3, 4], tps=20.0))
    mtp = run(
        "Pane 2",
        reply(
            [1, 2, 3, 4],
            tps=30.0,
            decoder="SmolLM2-135M-Instruct-MTP",
            decoder_memory_gb=0.0084,
            acceptance_rate=0.56,
            mean_accepted_length=1.6,
            drafted=10,
        ),
    )
    c = compare([mtp, base])  # the decoder-off pane is the baseline wherever it sits
    assert c.baseline.pane == "Pane 1"
    (r,) = c.rows
    assert r.speedup == pytest.approx(1.5)
    assert r.time_ratio == pytest.approx(1.5)
    assert r.memory_added_gb == pytest.approx(0.0084)
    assert r.same.identical and r.same.summary == "Identical, 4 tokens"
    table = markdown_table(c)
    assert "| Pane 2 | m | SmolLM2-135M-Instruct-MTP | 30.0 | 1.50x |" in table
    assert "+8.4 MB" in table and "56%" in table and "Identical, 4 tokens" in table
    data = export_json(c)
    assert [x["pane"] for x in data["runs"]] == ["Pane 1", "Pane 2"]
    assert data["comparisons"][0]["identical"] is True
    json.dumps(data)  # plain JSON


def test_difference_at_temperature_zero_is_named_numerical_with_the_near_tie():
    a = run("Pane 1", reply([1, 2, 3, 4]))
    b = run("Pane 2", reply([1, 2, 9, 4], decoder="mtp"))
    same = sameness(a, b)
    assert not same.identical
    assert same.first_difference == 2 and same.cause == "numerical"
    assert same.summary == "Differ from token 3: a numerical difference"
    assert "p = 0.510" in same.explanation and "p = 0.490" in same.explanation


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"temperature": 0.7}, "sampling"),
        ({"model": "other"}, "model"),
        ({"dtype": "float32"}, "dtype"),
    ],
)
def test_causes_are_named_in_order(change, cause):
    t = change.get("temperature", 0.0)
    a = reply([1, 2, 3], temperature=t)
    b = reply(
        [1, 5, 3],
        temperature=t,
        decoder="mtp",
        model=change.get("model", "m"),
        **({"dtype": change["dtype"]} if "dtype" in change else {}),
    )
    assert sameness(run("A", a), run("B", b)).cause == cause


def test_different_settings_and_conversations_are_told_apart():
    a, b = reply([1, 2]), reply([1, 3], decoder="mtp")
    b.settings["sampling"]["top_p"] = 0.9
    same = sameness(run("A", a), run("B", b))
    assert same.cause == "settings" and "top p 1 vs 0.9" in same.summary
    earlier = Run.of(
        "B",
        [
            Message("user", "x"),
            Message("assistant", "y"),
            Message("user", "hi"),
            reply([1, 3], decoder="mtp"),
        ],
    )
    assert compare([run("A", a), earlier]) is not None  # same prompt: compared
    assert sameness(run("A", a), earlier).cause == "prompt"


def test_streaming_stopped_and_unrelated_prompts():
    done = run("A", reply([1, 2, 3]))
    live = run("B", reply([1, 2], finish=None, decoder="mtp"))
    same = sameness(done, live)
    assert same.cause == "streaming" and same.summary == "Same so far, 2 tokens"
    stopped = run("B", reply([1, 2], finish="cancelled", decoder="mtp"))
    assert sameness(done, stopped).summary == "Same for 2 tokens, then B was stopped"
    assert compare([done, run("B", reply([1]), prompt="other")]) is None
    assert compare([done]) is None


# ------------------------------------------------------------ in the window


@pytest.fixture
def window(qtbot, bridge, catalog):
    win = MainWindow(bridge, catalog)
    qtbot.addWidget(win)
    win.resize(1500, 900)
    win.show()
    qtbot.waitUntil(lambda: win.ready)
    return win


def finish(qtbot, win):
    qtbot.waitUntil(lambda: not any(p.busy for p in win.panes), timeout=20000)
    win.compare_bar.refresh()


def test_bar_shows_speedup_memory_and_identical(qtbot, window):
    bar = window.compare_bar
    assert bar.isHidden()  # nothing compared yet
    window.send("Show me fizzbuzz", to_all=True)
    qtbot.waitUntil(lambda: bar.isVisible(), timeout=10000)
    finish(qtbot, window)
    (row,) = bar._rows
    assert row.who.text() == "Pane 2 (SmolLM2-135M-MTP)  vs  Pane 1"
    assert row.who.toolTip().endswith("Pane 1 (decoder off)")
    assert "\u00d7" in row.speed.text()
    assert "+50.0 MB for the decoder" in row.detail.full_text()
    assert "accepted" in row.detail.full_text()
    n = len(window.panes[0].transcript.last.tokens)
    assert row.same.text() == f"\u2713 Identical, {n:,} tokens"
    assert row.show_button.isHidden()
    assert "Identical" in bar.markdown()


def test_bar_names_sampling_as_the_cause(qtbot, window):
    for seed, pane in enumerate(window.panes, 1):  # seeds that draw differently
        pane.controls.temperature.setValue(0.8)
        pane.controls.seed.setValue(seed)
    window.send("Show me fizzbuzz", to_all=True)
    finish(qtbot, window)
    (row,) = window.compare_bar._rows
    assert "sampling (temperature 0.8)" in row.same.text()
    assert "same distribution" in row.same.toolTip()


def test_bar_jumps_to_the_first_differing_token_in_both_panes(qtbot, window, tmp_path):
    window.send("Show me fizzbuzz /diverge", to_all=True)
    finish(qtbot, window)
    bar = window.compare_bar
    (row,) = bar._rows
    assert row.row.same.first_difference == DIVERGE_AT
    assert f"Differ from token {DIVERGE_AT + 1}: a numerical difference" in row.same.text()
    assert row.show_button.isVisibleTo(window)
    row.show_button.click()
    for pane in window.panes:
        assert pane.inspector.isVisibleTo(window)
        assert pane.inspector.index == DIVERGE_AT
    path = tmp_path / "cmp.json"
    bar.save_json(path)
    data = json.loads(path.read_text())
    assert data["comparisons"][0]["first_difference"] == DIVERGE_AT
    assert len(data["runs"]) == 2 and all(r["answer"] for r in data["runs"])


def test_bar_says_a_pane_waits_its_turn(qtbot, window, fake_service):
    fake_service.tokens_per_second = 40
    window.send("Show me fizzbuzz", to_all=True)
    qtbot.waitUntil(lambda: "waits for its turn" in window.compare_bar.note.text(), timeout=10000)
    assert window.compare_bar.note.text().startswith("Pane 2 waits")
    window.stop_all()
    finish(qtbot, window)


def test_interleave_streams_both_panes_at_once(qtbot, window, fake_service):
    fake_service.tokens_per_second = 60
    bar = window.compare_bar
    bar.interleave.setChecked(True)
    assert window.settings.values.interleave  # remembered for the next start
    window.send("Show me fizzbuzz", to_all=True)
    a, b = window.panes
    sent = fake_service.submitted[-2:]
    assert sent[0].interleave and sent[0].interleave == sent[1].interleave
    qtbot.waitUntil(lambda: len(b.transcript.last.tokens) > 3, timeout=10000)
    assert a.busy  # pane 1 is still answering: both stream at once
    bar.refresh()  # as the bar's next poll would
    assert bar.note.text().startswith("Interleaved")
    finish(qtbot, window)
    (row,) = bar._rows
    assert row.same.text().startswith("\u2713 Identical")
    assert row.row.speedup is not None and row.row.speedup > 1.2  # each timed on its own
    window.send("again", to_all=False)
    assert fake_service.submitted[-1].interleave == ""  # one pane: nothing to alternate
    window.stop_all()
    finish(qtbot, window)


def test_a_failed_reply_is_said_plainly():
    failed = run("B", reply([], finish="error", decoder="mtp"))
    assert sameness(run("A", reply([1, 2])), failed).summary == "B failed"
