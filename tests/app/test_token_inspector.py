"""The token inspector and what it leads to: inspect, replay from an alternative as a
new version, versions ‹ 2/2 ›, edit then continue, and replay on the real engine."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from app.chat.token_inspector import TokenInspector, as_record
from app.chat.token_text import describe
from app.dev.fake_script import ANSWER, THINK_CLOSE
from app.main_window import MainWindow
from engine.events import Alternative, TokenEvent
from engine.storage import TokenRecord as StoredToken


def make_window(qtbot, bridge, catalog, panes: int = 1) -> MainWindow:
    win = MainWindow(bridge, catalog, panes=panes)
    qtbot.addWidget(win)
    win.resize(1300, 860)
    win.show()
    qtbot.waitUntil(lambda: win.ready)
    return win


def answered(qtbot, win: MainWindow, prompt: str = "fizzbuzz please", thinking: bool = False):
    pane = win.panes[0]
    if thinking:
        pane.model_picker.setCurrentIndex(1)
        pane.controls.thinking_buttons["on"].click()
    pane.send(prompt)
    qtbot.waitUntil(lambda: not pane.busy, timeout=15000)
    return pane, pane.transcript.last


def click_token(pane, message, index: int) -> None:
    """Show the reply as tokens and click one (the label's own link signal)."""
    widget = pane.view.widget_for(message)
    widget.toolbar.tokens_button.click()
    assert widget.token_text.isVisibleTo(widget) and not widget.body_box.isVisibleTo(widget)
    widget.token_text.linkActivated.emit(f"t:{index}")


def test_clicking_a_token_shows_ten_alternatives_and_draft_marks(qtbot, bridge, catalog):
    win = make_window(qtbot, bridge, catalog)
    win.panes[0].controls.decoder_enabled.setChecked(True)
    pane, reply = answered(qtbot, win)
    drafted = next(i for i, t in enumerate(reply.tokens) if t.drafted)
    plain = next(i for i, t in enumerate(reply.tokens) if not t.drafted)
    click_token(pane, reply, drafted)
    inspector = pane.inspector
    assert inspector.isVisible() and not pane.controls.isVisible()
    token = reply.tokens[drafted]
    assert inspector.title.text() == f"Token {drafted + 1} of {len(reply.tokens)}"
    assert inspector.prob.text() == f"{token.prob:.1%}"
    assert inspector.entropy.text() == f"{token.entropy:.2f} nats"
    assert inspector.draft.text() == "drafted \u00b7 accepted"
    rows = [r for r in inspector.rows if not r.isHidden()]
    assert len(rows) == 10
    probs = [r.bar.value() for r in rows]
    assert probs == sorted(probs, reverse=True)
    assert all(r.figure.text().endswith("%") for r in rows)
    chosen = [r for r in rows if r.property("chosen")]
    assert len(chosen) == 1 and chosen[0].token_id == token.id
    assert pane.view.widget_for(reply).selected_token == drafted
    inspector.prev_button.click()
    assert inspector.index == drafted - 1
    pane.view.widget_for(reply).token_text.linkActivated.emit(f"t:{plain}")
    assert inspector.draft.text() == "from the target (not drafted)"
    # Opening the controls closes the inspector (one drawer at a time).
    pane.settings_button.click()
    assert not inspector.isVisible() and pane.controls.isVisible()


def test_the_inspector_follows_a_streaming_reply(qtbot, bridge, catalog, fake_service):
    fake_service.tokens_per_second = 40
    win = make_window(qtbot, bridge, catalog)
    pane = win.panes[0]
    pane.send("stream")
    reply = pane.transcript.last
    qtbot.waitUntil(lambda: len(reply.tokens) >= 3, timeout=10000)
    pane.inspect(reply, 0)  # from live TokenEvents
    inspector = pane.inspector
    assert not inspector.rows[0].replay.isEnabled()  # not while it streams
    assert "once the reply" in inspector.note.text()
    seen = inspector.title.text()
    qtbot.waitUntil(lambda: inspector.title.text() != seen, timeout=5000)
    pane.stop()
    qtbot.waitUntil(lambda: not pane.busy, timeout=5000)
    assert inspector.rows[0].replay.isEnabled()


def test_any_token_shape_can_be_inspected(qtbot, themed):
    top = (Alternative(5, " yes", 0.8), Alternative(6, " no", 0.2))
    event = TokenEvent("r", 0, 5, " yes", -0.22, top, 0.5, "answer", True, True)
    stored = StoredToken(0, 5, " yes", -0.22, 0.5, "answer", True, True, top)
    assert as_record(event) == as_record(stored) == as_record(as_record(event))
    inspector = TokenInspector()
    qtbot.addWidget(inspector)
    from app.chat.pane_model import Message

    inspector.show_token(Message("assistant", " yes", tokens=[as_record(event)]), 0)
    assert [r.isHidden() for r in inspector.rows[:3]] == [False, False, True]
    assert inspector.chip.text() == "\u00b7yes"
    tip = describe(as_record(event))
    assert "80.3%" in tip and "drafted, accepted" in tip and "\u00b7no 20%" in tip


def test_replay_from_an_alternative_makes_a_version(qtbot, bridge, catalog, fake_service):
    win = make_window(qtbot, bridge, catalog)
    pane, reply = answered(qtbot, win)
    original = reply.content
    i = 6
    alt = reply.tokens[i].top[1]  # the runner-up
    assert alt.id != reply.tokens[i].id
    click_token(pane, reply, i)
    row = next(r for r in pane.inspector.rows if r.token_id == alt.id)
    row.replay.click()
    assert pane.busy
    new = pane.transcript.last
    assert new is not reply and new.branch == (1, 2)
    qtbot.waitUntil(lambda: not pane.busy, timeout=15000)
    command = fake_service.submitted[-1]
    stored = win.store.get_message(reply.id)
    expected = stored.prompt_token_ids + tuple(t.id for t in reply.tokens[:i]) + (alt.id,)
    assert command.prompt_tokens == expected
    prefix = "".join(t.text for t in reply.tokens[:i]) + alt.text
    assert new.content.startswith(prefix) and new.finish_reason == "stop"
    assert [t.id for t in new.tokens[: i + 1]] == [t.id for t in reply.tokens[:i]] + [alt.id]
    # Only the suffix was computed: the prefix came from the prompt cache.
    cached = new.stats["cached_prompt_tokens"]
    assert cached >= len(stored.prompt_token_ids) + i - 1
    widget = pane.view.widget_for(new)
    assert f"reused {cached} cached tokens" in widget.meta.text()
    assert widget.toolbar.branch_label.text() == "2/2"
    # ‹ shows the original again, › the replay.
    widget.toolbar.prev_button.click()
    back = pane.transcript.last
    assert back.content == original and back.branch == (0, 2)
    assert [t.id for t in back.tokens] == [t.id for t in reply.tokens]
    pane.view.widget_for(back).toolbar.next_button.click()
    assert pane.transcript.last.content == new.content
    # Versions survive a reload.
    assert win.store.active_path(win.controller.current, pane.key)[-1].id == new.id


def test_replaying_the_closing_think_tag_ends_the_thinking(qtbot, bridge, catalog):
    """The steering move: at a thinking token, replay from the ``</think>`` alternative."""
    win = make_window(qtbot, bridge, catalog)
    pane, reply = answered(qtbot, win, thinking=True)
    i = 5
    assert reply.tokens[i].channel == "thinking"
    close = next(a for a in reply.tokens[i].top if a.text == THINK_CLOSE)
    pane.inspect(reply, i)
    next(r for r in pane.inspector.rows if r.token_id == close.id).replay.click()
    qtbot.waitUntil(lambda: not pane.busy, timeout=15000)
    new = pane.transcript.last
    kept = "".join(t.text for t in reply.tokens[:i])
    assert new.reasoning == kept and THINK_CLOSE not in new.reasoning
    assert new.content == ANSWER and new.finish_reason == "stop"
    assert win.store.get_message(new.id).reasoning == kept  # saved without the tag too
    widget = pane.view.widget_for(new)
    assert widget.thinking.toggle.text() == f"Thought for {i + 1} tokens"


def test_edit_a_runaway_thinking_and_continue(qtbot, bridge, catalog, fake_service):
    win = make_window(qtbot, bridge, catalog)
    pane, reply = answered(qtbot, win, thinking=True)
    widget = pane.view.widget_for(reply)
    widget.toolbar.edit_button.click()
    editor = widget.editor
    assert editor is not None and editor.reasoning is not None
    editor.reasoning.setPlainText("The user wants a short answer.")
    editor.content.setPlainText("")
    editor.end_thinking.setChecked(True)
    editor.run_button.click()
    assert widget.editor is None
    qtbot.waitUntil(lambda: not pane.busy, timeout=15000)
    new = pane.transcript.last
    command = fake_service.submitted[-1]
    assert command.continue_final
    assert command.messages[-1].reasoning == "The user wants a short answer." + THINK_CLOSE
    assert command.messages[-1].content == ""
    assert new.reasoning == "The user wants a short answer."
    assert new.content == ANSWER and new.finish_reason == "stop" and new.branch == (1, 2)
    # The edit and its continuation are saved; the original is a version away.
    stored = win.store.get_message(new.id)
    assert stored.content == ANSWER and stored.reasoning == new.reasoning
    pane.view.widget_for(new).toolbar.prev_button.click()
    assert pane.transcript.last.content == reply.content


def test_edit_an_answer_save_then_continue_later(qtbot, bridge, catalog, fake_service):
    win = make_window(qtbot, bridge, catalog)
    pane, reply = answered(qtbot, win)
    widget = pane.view.widget_for(reply)
    widget.toolbar.edit_button.click()
    widget.editor.content.setPlainText("Here is a")
    widget.editor.save_button.click()
    saved = pane.transcript.last
    assert saved.content == "Here is a" and saved.finish_reason == "edited"
    assert saved.branch == (1, 2) and not pane.busy
    edited = pane.view.widget_for(saved)
    assert edited.tag.text() == "edited"
    edited.toolbar.continue_button.click()
    qtbot.waitUntil(lambda: not pane.busy, timeout=15000)
    assert saved.content == ANSWER and saved.finish_reason == "stop"
    assert fake_service.submitted[-1].messages[-1].content == "Here is a"


def test_edit_a_prompt_and_send_makes_a_new_version(qtbot, bridge, catalog, fake_service):
    win = make_window(qtbot, bridge, catalog)
    pane, _reply = answered(qtbot, win, "first wording")
    user = pane.transcript.messages[0]
    widget = pane.view.widget_for(user)
    widget.toolbar.edit_button.click()
    qtbot.keyClick(widget.editor.content, Qt.Key.Key_Escape)  # cancels, changes nothing
    assert widget.editor is None and widget.bubble.isVisibleTo(widget)
    widget.toolbar.edit_button.click()
    widget.editor.content.setPlainText("second wording")
    widget.editor.run_button.click()
    qtbot.waitUntil(lambda: not pane.busy, timeout=15000)
    assert [m.content for m in pane.transcript.messages][0] == "second wording"
    assert pane.transcript.messages[0].branch == (1, 2)
    assert fake_service.submitted[-1].messages[-1].content == "second wording"
    pane.view.widget_for(pane.transcript.messages[0]).toolbar.prev_button.click()
    assert pane.transcript.messages[0].content == "first wording"
    assert len(pane.transcript.messages) == 2 and pane.transcript.last.content


@pytest.mark.starter
def test_replay_on_the_real_engine_continues_from_the_alternative(
    qtbot, themed, monkeypatch, starter_gguf
):
    """Greedy reply on the starter model, then replay from the runner-up at token 3:
    the new version starts with the kept tokens and that alternative, and the engine
    reports the prefix as cached prompt tokens."""
    from app.bridge import EngineBridge
    from app.library.catalog import ModelCatalog
    from engine.service import EngineService
    from engine.starter import ensure_starter_model

    ensure_starter_model()
    bridge = EngineBridge(EngineService().start())
    try:
        win = MainWindow(bridge, ModelCatalog(), panes=1)
        qtbot.addWidget(win)
        win.show()
        qtbot.waitUntil(lambda: win.ready, timeout=60_000)
        pane = win.panes[0]
        pane.controls.max_tokens.setValue(24)
        assert pane.send("Name three colours.")
        qtbot.waitUntil(lambda: not pane.busy, timeout=300_000)
        reply = pane.transcript.last
        assert reply.finish_reason in ("stop", "length"), reply.error
        i = 3
        alt = reply.tokens[i].top[1]
        pane.inspect(reply, i)
        next(r for r in pane.inspector.rows if r.token_id == alt.id).replay.click()
        qtbot.waitUntil(lambda: not pane.busy, timeout=300_000)
        new = pane.transcript.last
        assert new.finish_reason in ("stop", "length"), new.error
        assert [t.id for t in new.tokens[: i + 1]] == [t.id for t in reply.tokens[:i]] + [alt.id]
        stored = win.store.get_message(reply.id)
        assert new.stats["cached_prompt_tokens"] >= len(stored.prompt_token_ids) + i - 1
        assert new.branch == (1, 2)
    finally:
        bridge.close()
