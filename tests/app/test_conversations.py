"""Conversations in the sidebar: new, rename, delete, clone, search; saved as they
stream; restored after a restart with their panes and token records."""

from __future__ import annotations

import json

from app.conversations.conversation_list import SUBTITLE_ROLE
from app.dev.fake_script import ANSWER, render_prompt
from app.main_window import MainWindow
from engine.paths import database_path
from engine.storage import ConversationStore


def make_window(qtbot, bridge, catalog, panes: int = 2) -> MainWindow:
    win = MainWindow(bridge, catalog, panes=panes)
    qtbot.addWidget(win)
    win.resize(1400, 860)
    win.show()
    qtbot.waitUntil(lambda: win.ready)
    return win


def wait_idle(qtbot, win: MainWindow, timeout: int = 15000) -> None:
    qtbot.waitUntil(lambda: not any(p.busy for p in win.panes), timeout=timeout)


def titles(win: MainWindow) -> list[str]:
    chats = win.sidebar.conversations
    return [chats.list.item(i).text() for i in range(chats.list.count())]


def test_new_rename_search_clone_and_delete(qtbot, bridge, catalog):
    win = make_window(qtbot, bridge, catalog)
    chats = win.sidebar.conversations
    assert chats.empty.isVisible() and "No chats yet" in chats.empty.text()
    win.send("Tell me about fizzbuzz", to_all=True)
    wait_idle(qtbot, win)
    assert titles(win) == ["Tell me about fizzbuzz"]
    first = win.controller.current
    assert chats.selected_id() == first
    assert win.windowTitle().startswith("Tell me about fizzbuzz")

    # New chat: empty panes, nothing saved until the first prompt.
    chats.new_button.click()
    assert win.controller.current is None
    assert all(p.transcript.messages == [] for p in win.panes)
    assert chats.selected_id() is None
    win.send("Another question", to_all=False)
    wait_idle(qtbot, win)
    assert titles(win) == ["Another question", "Tell me about fizzbuzz"]  # newest first

    # Rename in place (what the inline editor does when the user presses Enter).
    item = chats.item_for(first)
    chats.list.setCurrentItem(item)
    item.setText("Fizzbuzz notes")
    assert win.store.get_conversation(first).title == "Fizzbuzz notes"
    assert "Fizzbuzz notes" in titles(win)

    # Search: titles and message text, every word.
    chats.search.setText("another QUESTION")
    qtbot.waitUntil(lambda: titles(win) == ["Another question"])
    chats.search.setText("compact")  # only in the fake model's answers
    qtbot.waitUntil(lambda: len(titles(win)) == 2)
    assert "compact" in chats.list.item(0).data(SUBTITLE_ROLE)  # where it matched
    chats.search.setText("no such words")
    qtbot.waitUntil(lambda: chats.empty.isVisible())
    assert "No chats match" in chats.empty.text()
    chats.search.clear()
    qtbot.waitUntil(lambda: len(titles(win)) == 2)

    # Clone: a copy with every message, opened in the panes.
    chats.list.setCurrentItem(chats.item_for(first))
    chats.clone_button.click()
    assert titles(win)[0] == "Fizzbuzz notes (copy)"
    clone = win.controller.current
    assert clone not in (first, None)
    assert [m.content for m in win.panes[0].transcript.messages][0] == "Tell me about fizzbuzz"
    assert win.panes[1].transcript.last.tokens  # token records came along
    assert len(win.store.messages(clone)) == len(win.store.messages(first))

    # Delete asks inline first; deleting the open chat empties the panes.
    chats.delete_button.click()
    assert chats.confirm.isVisible() and "Fizzbuzz notes (copy)" in chats.confirm_text.text()
    chats.confirm_cancel.click()
    assert len(titles(win)) == 3
    chats.delete_button.click()
    chats.confirm_delete.click()
    qtbot.waitUntil(lambda: titles(win) == ["Another question", "Fizzbuzz notes"])
    assert win.controller.current is None
    assert all(p.transcript.messages == [] for p in win.panes)

    # Opening a chat from the list shows it.
    chats._on_list_item_clicked(chats.item_for(first))
    assert win.controller.current == first
    assert win.panes[0].transcript.messages[0].content == "Tell me about fizzbuzz"


def test_restart_restores_panes_transcripts_and_token_records(qtbot, bridge, catalog):
    win = make_window(qtbot, bridge, catalog)
    a, b = win.panes
    a.model_picker.setCurrentIndex(1)  # the thinking model
    a.controls.thinking_buttons["on"].click()
    a.controls.temperature.setValue(0.7)
    assert b.controls.settings().decoder.enabled
    win.send("Write fizzbuzz", to_all=True)
    wait_idle(qtbot, win)
    # As JSON: stored tuples come back as lists.
    before = [json.loads(json.dumps(p.transcript.to_dict()["messages"])) for p in win.panes]
    settings = [p.controls.settings() for p in win.panes]
    win.close()
    win.store.close()

    again = make_window(qtbot, bridge, catalog)
    assert len(again.panes) == 2
    assert [p.model_id() for p in again.panes] == ["Qwen3-0.6B", "SmolLM2-135M-Instruct"]
    assert [p.controls.settings() for p in again.panes] == settings
    for pane, old in zip(again.panes, before, strict=True):
        new = json.loads(json.dumps(pane.transcript.to_dict()["messages"]))
        for key in ("role", "content", "reasoning", "finish_reason", "stats", "model"):
            assert [m[key] for m in new] == [m[key] for m in old], key
        assert [m["tokens"] for m in new] == [m["tokens"] for m in old]
    reply = again.panes[0].transcript.last
    widget = again.panes[0].view.widget_for(reply)
    assert widget.thinking.isVisibleTo(widget) and widget.tag.text() == "stop"
    # The inspector works on the reloaded records.
    again.panes[1].inspect(again.panes[1].transcript.last, 4)
    inspector = again.panes[1].inspector
    assert inspector.isVisible()
    assert sum(not r.isHidden() for r in inspector.rows) == 10
    assert inspector.rows[0].replay.isEnabled()


def test_streaming_reply_is_saved_as_it_arrives_and_shows_interrupted(
    qtbot, bridge, catalog, fake_service
):
    fake_service.tokens_per_second = 40
    win = make_window(qtbot, bridge, catalog, panes=1)
    pane = win.panes[0]
    pane.send("Stream slowly")
    reply = pane.transcript.last
    other = ConversationStore(database_path())  # another process's view of the file
    qtbot.waitUntil(lambda: other.get_message(reply.id).token_count >= 5, timeout=10000)
    saved = other.get_message(reply.id)
    assert saved.finish_reason is None and saved.content  # text streams to disk too
    # "Crash": the app goes away without closing the reply.
    win.controller._writers.clear()
    pane.stop()
    wait_idle(qtbot, win)
    win.close()
    win.store.close()

    again = make_window(qtbot, bridge, catalog, panes=1)
    restored = again.panes[0].transcript.last
    assert restored.finish_reason == "interrupted"
    assert len(restored.tokens) >= 5
    widget = again.panes[0].view.widget_for(restored)
    assert widget.tag.text() == "interrupted"
    assert widget.toolbar.continue_button.isVisibleTo(widget)
    # Continue carries on from the saved text (its prompt was not saved yet, so the
    # chat template renders it), and the saved prompt is fixed up to stay replayable.
    fake_service.tokens_per_second = 800
    n = len(restored.tokens)
    partial = restored.content
    widget.toolbar.continue_button.click()
    wait_idle(qtbot, again)
    command = fake_service.submitted[-1]
    assert command.continue_final and command.messages[-1].content == partial
    assert restored.finish_reason == "stop" and restored.content == ANSWER
    stored = other.get_message(restored.id)
    assert stored.finish_reason == "stop" and stored.token_count == len(restored.tokens) > n
    replay = other.replay_prompt(restored.id, n)
    assert replay[: len(stored.prompt_token_ids)] == stored.prompt_token_ids
    old_ids = tuple(t.id for t in restored.tokens[:n])
    assert other.replay_prompt(restored.id, 0) + old_ids == tuple(render_prompt(command))
    other.close()


def test_quitting_mid_reply_saves_it_as_cancelled(qtbot, bridge, catalog, fake_service):
    fake_service.tokens_per_second = 30
    win = make_window(qtbot, bridge, catalog, panes=1)
    win.panes[0].send("Slow")
    reply = win.panes[0].transcript.last
    qtbot.waitUntil(lambda: len(reply.tokens) >= 2, timeout=10000)
    win.close()
    assert win.store.get_message(reply.id).finish_reason == "cancelled"


def test_a_damaged_database_is_reported_once_without_blocking(qtbot, bridge, catalog):
    path = database_path()
    path.write_bytes(b"this is not a database" * 200)
    win = make_window(qtbot, bridge, catalog)
    notice = win.sidebar.notice
    assert notice.isVisible() and "damaged" in win.sidebar.notice_text.text()
    assert win.store.recovery is not None and win.store.recovery.moved_to.exists()
    win.send("still works", to_all=False)
    wait_idle(qtbot, win)
    assert titles(win) == ["still works"]
    win.sidebar.notice_close.click()
    assert not notice.isVisible()
    win.close()
    win.store.close()
    again = make_window(qtbot, bridge, catalog)
    assert not again.sidebar.notice.isVisible()  # once: the new file is healthy


def test_clone_into_a_new_pane_copies_thread_and_settings(qtbot, bridge, catalog):
    win = make_window(qtbot, bridge, catalog, panes=1)
    pane = win.panes[0]
    pane.controls.temperature.setValue(0.3)
    pane.send("Clone me")
    wait_idle(qtbot, win)
    reply = pane.transcript.last
    widget = pane.view.widget_for(reply)
    widget.toolbar.clone_button.click()
    assert len(win.panes) == 2
    copy = win.panes[1]
    assert copy.key != pane.key
    assert copy.controls.settings() == pane.controls.settings()
    assert copy.model_id() == pane.model_id()
    assert [m.content for m in copy.transcript.messages] == ["Clone me", reply.content]
    assert [t.id for t in copy.transcript.last.tokens] == [t.id for t in reply.tokens]
    assert copy.transcript.last.id != reply.id
    # Each pane has its own versions: no ‹ 1/2 › on the first message of either.
    assert [m.branch for m in copy.transcript.messages] == [(0, 1), (0, 1)]
    assert pane.transcript.messages[0].branch == (0, 1)
    # Rerun it in the clone with the decoder on: a new version there only.
    copy.controls.decoder_enabled.setChecked(True)
    copy.view.widget_for(copy.transcript.last).toolbar.retry_button.click()
    wait_idle(qtbot, win)
    assert copy.transcript.last.branch == (1, 2)
    assert copy.transcript.last.stats["drafted"] > 0
    assert pane.transcript.last.branch == (0, 1)

    # The panes and their settings are saved with the conversation (after a pause).
    def layout():
        return win.store.get_setting(win.controller.current, "panes")

    qtbot.waitUntil(lambda: layout()[1]["settings"]["decoder"]["decoder"] != "none")
    assert [p["key"] for p in layout()] == [pane.key, copy.key]


def test_models_section_switches_pages_and_refreshes_pickers(qtbot, bridge, catalog, monkeypatch):
    from app.library.models_page import ModelsPage

    monkeypatch.setattr(ModelsPage, "start", lambda self: None)  # no hub traffic in tests
    win = make_window(qtbot, bridge, catalog)
    models_button = win.sidebar.section_button("models")
    assert models_button.isVisibleTo(win)
    models_button.click()
    assert win.stack.currentWidget() is win.sections["models"]
    assert win.models_page.isVisible() and not win.add_pane_button.isVisible()
    assert win.minimumSizeHint().width() < 1100  # the page scrolls rather than widens
    # A download finished: the pickers learn the new model, the page stays.
    from app.library.catalog import ModelEntry

    catalog.entries.append(ModelEntry("new-model", "New model", "fake/new-model"))
    win.models_page.sig_library_changed.emit()
    assert win.stack.currentWidget() is win.sections["models"]
    picker = win.panes[0].model_picker
    assert [picker.itemText(i) for i in range(picker.count())][-1] == "New model"
    # Opening a chat (or the Chats button) brings the panes back.
    win.sidebar.section_button("chats").click()
    assert win.stack.currentWidget() is win.chat_page
