"""Tools in a chat pane: the model calls an MCP tool, the user allows or denies it, the
result is shown and fed back, the model carries on; all of it saved and reloaded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from app.conversations import history
from app.main_window import MainWindow
from engine.mcp import ServerConfig

pytestmark = pytest.mark.timeout(120)
SERVER = str(Path(__file__).resolve().parents[1] / "mcp_server.py")


@pytest.fixture
def window(qtbot, bridge, catalog):
    win = MainWindow(bridge, catalog)
    qtbot.addWidget(win)
    win.resize(1500, 900)
    win.show()
    qtbot.waitUntil(lambda: win.ready)
    assert win.tool_servers.add(ServerConfig.stdio("calc", sys.executable, [SERVER])) == ""
    qtbot.waitUntil(lambda: bool(win.tool_servers.tool_definitions()), timeout=30000)
    for pane in win.panes:
        pane.tools_button.setChecked(True)
    yield win
    win.close()


def pending(pane):
    last = pane.transcript.last
    calls = last.settings.get("tool_calls") if last is not None else None
    return bool(calls) and calls[0]["state"] == "pending" and not pane.busy


def rows(pane):
    widget = pane.view.widget_for(pane.transcript.last)
    return widget.calls._rows


def first_pane(window):
    """The first pane, alone: compare off, it takes the prompts."""
    window.prompt.compare.setChecked(False)
    pane = window.panes[0]
    window.set_focused(pane)
    return pane


def allowed_round(qtbot, window, prompt="What is 2 + 3? /tool"):
    """Send ``prompt`` to the first pane, allow its call once, wait for the answer."""
    pane = first_pane(window)
    window.send(prompt, to_all=False)
    qtbot.waitUntil(lambda: pending(pane), timeout=20000)
    rows(pane)[0].once.click()
    qtbot.waitUntil(lambda: len(pane.transcript.messages) == 4 and not pane.busy, timeout=30000)
    return pane


def test_both_panes_call_the_tool_once_allowed_and_carry_on(qtbot, window):
    window.send("What is 2 + 3? /tool", to_all=True)
    a, b = window.panes
    qtbot.waitUntil(lambda: pending(a) and pending(b), timeout=20000)
    call = a.transcript.last.settings["tool_calls"][0]
    assert (call["name"], call["server"], call["arguments"]) == ("add", "calc", {"a": 2, "b": 3})
    assert "<tool_call>" not in a.transcript.last.content  # the call is a block, not text
    row = rows(a)[0]
    assert row.buttons.isVisibleTo(window) and row.always.text() == "Always allow calc"
    row.once.click()
    rows(b)[0].always.click()
    for pane in (a, b):
        qtbot.waitUntil(
            lambda p=pane: p.transcript.last.content == "The tool says 5.", timeout=20000
        )
        qtbot.waitUntil(lambda p=pane: not p.busy, timeout=10000)
        roles = [m.role for m in pane.transcript.messages]
        assert roles == ["user", "assistant", "tool", "assistant"]
        result = pane.transcript.messages[2]
        assert result.content == "5" and result.settings["tool"]["name"] == "add"
        assert pane.transcript.messages[1].settings["tool_calls"][0]["state"] == "done"
    assert window.tool_servers.always_allowed == {"calc"}
    # Saved: the conversation reopens with the call, its result and the answer.
    store, cid = window.controller.store, window.controller.current
    for pane in (a, b):
        saved = history.load_pane(store, cid, pane.key)
        assert [m.role for m in saved] == ["user", "assistant", "tool", "assistant"]
        assert saved[1].settings["tool_calls"][0]["state"] == "done"
        assert saved[2].content == "5" and saved[3].content == "The tool says 5."
    # The comparison still compares the final answers of the same prompt.
    window.compare_bar.refresh()
    (row,) = window.compare_bar.comparison.rows
    assert len(row.part_speedups) == 2  # the tool-call stretch and the answer after it
    assert "tool call" in window.compare_bar._rows[0].detail.full_text()


def test_a_denied_call_is_fed_back_as_refused(qtbot, window):
    pane = first_pane(window)
    window.send("What is 2 + 3? /tool", to_all=False)
    qtbot.waitUntil(lambda: pending(pane), timeout=20000)
    rows(pane)[0].deny.click()
    qtbot.waitUntil(
        lambda: pane.transcript.last.role == "assistant" and not pane.busy, timeout=20000
    )
    result = pane.transcript.messages[2]
    assert result.role == "tool" and result.settings["tool"]["is_error"]
    assert "did not allow" in result.content
    assert pane.transcript.messages[1].settings["tool_calls"][0]["state"] == "denied"


def test_tools_off_means_no_tools_offered(qtbot, window, fake_service):
    pane = first_pane(window)
    pane.tools_button.setChecked(False)
    window.send("What is 2 + 3? /tool", to_all=False)
    qtbot.waitUntil(lambda: not pane.busy, timeout=20000)
    assert not pane.transcript.last.settings.get("tool_calls")
    assert not any("<tool_call>" in m.content for m in fake_service.submitted[-1].messages)


def test_a_tool_that_crashes_gives_an_error_result_and_the_chat_goes_on(qtbot, window):
    pane = allowed_round(qtbot, window, "Try it /tool crash")
    result = pane.transcript.messages[2]
    assert result.settings["tool"]["is_error"] and result.content
    assert pane.transcript.last.content.startswith("The tool says")
    assert window.tool_servers.status("calc").state == "failed"  # and the app lives on
    block = pane.view.widget_for(result).result
    assert block.toggle.text().startswith("Error from crash")


def test_clone_and_reopen_keep_the_tool_round(qtbot, window):
    allowed_round(qtbot, window)
    controller = window.controller
    cid = controller.current
    controller.save_layout()
    copy = controller.clone(cid)
    assert copy is not None and controller.current == copy
    reopened = window.panes[0]
    assert [m.role for m in reopened.transcript.messages] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert reopened.tools_on  # the pane's Tools switch is part of the conversation
    widget = reopened.view.widget_for(reopened.transcript.messages[1])
    assert widget.calls._rows[0].state.text() == "ran"


def test_the_tools_menu_leaves_a_server_out(qtbot, window, fake_service):
    pane = first_pane(window)
    pane._fill_tools_menu()
    (action,) = pane.tools_menu.actions()
    assert action.text().startswith("calc") and "8 tools" in action.text()
    assert action.isChecked()
    action.setChecked(False)
    assert pane.servers_off == {"calc"}
    window.send("What is 2 + 3? /tool", to_all=False)
    qtbot.waitUntil(lambda: not pane.busy, timeout=20000)
    assert not pane.transcript.last.settings.get("tool_calls")  # nothing was offered
    window.controller.save_layout()
    layout = window.controller.store.get_setting(window.controller.current, history.LAYOUT_KEY)
    assert layout[0]["servers_off"] == ["calc"] and layout[0]["tools"] is True


def test_replaying_the_answer_after_a_tool_round_keeps_the_round(qtbot, window):
    pane = allowed_round(qtbot, window)
    answer = pane.transcript.last
    other = next(a for a in answer.tokens[1].top if a.id != answer.tokens[1].id)
    window.controller.replay(pane, answer, 1, other.id)
    qtbot.waitUntil(lambda: not pane.busy, timeout=20000)
    roles = [m.role for m in pane.transcript.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    replayed = pane.transcript.last
    assert replayed is not answer and replayed.branch == (1, 2)  # a new version
    assert replayed.tokens[1].id == other.id
    saved = history.load_pane(window.controller.store, window.controller.current, pane.key)
    assert [m.role for m in saved] == roles and saved[2].content == "5"


def test_a_result_arriving_after_a_new_chat_goes_nowhere(qtbot, window):
    pane = first_pane(window)
    window.send("Wait for it /tool slow", to_all=False)
    qtbot.waitUntil(lambda: pending(pane), timeout=20000)
    message = pane.transcript.last
    message.settings["tool_calls"][0]["arguments"] = {"seconds": 1.0}
    rows(pane)[0].once.click()
    assert pane.busy  # the tool is running
    window.new_chat()
    qtbot.waitUntil(lambda: not pane.busy, timeout=20000)
    assert pane.transcript.messages == []  # the late result did not land in the new chat
