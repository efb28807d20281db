from PySide6.QtCore import Qt

from app.chat.prompt_box import PromptBox


def make(qtbot, panes=2):
    box = PromptBox()
    qtbot.addWidget(box)
    box.set_panes(panes, "Pane 1")
    box.show()
    return box


def test_enter_sends_to_all_in_compare_mode(qtbot, themed):
    box = make(qtbot)
    qtbot.keyClicks(box.edit, "hello")
    with qtbot.waitSignal(box.sig_send) as blocker:
        qtbot.keyClick(box.edit, Qt.Key.Key_Return)
    assert blocker.args == ["hello", True]
    assert box.text() == ""
    assert box.send_button.text() == "Send to all"


def test_enter_sends_to_focused_pane_when_compare_is_off(qtbot, themed):
    box = make(qtbot)
    box.compare.setChecked(False)
    assert box.send_button.text() == "Send"
    assert "Pane 1" in box.target.text()
    qtbot.keyClicks(box.edit, "one")
    with qtbot.waitSignal(box.sig_send) as blocker:
        qtbot.keyClick(box.edit, Qt.Key.Key_Return)
    assert blocker.args == ["one", False]
    qtbot.keyClicks(box.edit, "two")
    with qtbot.waitSignal(box.sig_send) as blocker:
        qtbot.keyClick(box.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert blocker.args == ["two", True]


def test_shift_enter_adds_a_line_and_empty_text_is_not_sent(qtbot, themed):
    box = make(qtbot)
    sent = []
    box.sig_send.connect(lambda *a: sent.append(a))
    qtbot.keyClick(box.edit, Qt.Key.Key_Return)
    qtbot.keyClicks(box.edit, "a")
    qtbot.keyClick(box.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(box.edit, "b")
    assert box.text() == "a\nb"
    assert sent == []
    assert not box.send_button.isEnabled() or box.text()


def test_single_pane_hides_compare_and_stop_follows_busy(qtbot, themed):
    box = make(qtbot, panes=1)
    assert not box.compare.isVisible()
    assert not box.compare_mode
    box.set_busy(True)
    assert box.stop_button.isVisible()
    with qtbot.waitSignal(box.sig_stop):
        box.stop_button.click()
    box.set_busy(False)
    assert not box.stop_button.isVisible()
