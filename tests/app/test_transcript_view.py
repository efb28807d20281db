from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLabel

from app.chat.message_widgets import CodeBlock
from app.chat.pane_model import PaneTranscript
from app.chat.prose_widgets import ProseLabel, StreamingProse
from app.chat.transcript_view import TranscriptView
from engine.events import Alternative, Finished, GenerationStats, TokenEvent


def tok(i, text, channel="answer", drafted=False):
    return TokenEvent(
        "r", i, i, text, -0.1, (Alternative(i, text, 0.9),), 0.3, channel, drafted, drafted
    )


def sync(view, t, **kw):
    view.sync(t, **kw)
    QApplication.processEvents()  # widgets added to a shown layout appear on the next turn


def streaming_transcript():
    t = PaneTranscript()
    t.add_user("Show me code")
    t.start_assistant("m", {})
    return t


def test_empty_state_then_messages(qtbot, themed):
    view = TranscriptView()
    qtbot.addWidget(view)
    view.resize(600, 500)
    view.show()
    t = PaneTranscript()
    sync(view, t)
    assert view.empty.isVisible()
    t.add_user("hello")
    sync(view, t)
    assert not view.empty.isVisible()
    assert len(view.message_widgets) == 1
    assert view.message_widgets[0].user_text.text() == "hello"


def test_code_block_thinking_and_finish_tag(qtbot, themed):
    view = TranscriptView()
    qtbot.addWidget(view)
    view.resize(600, 500)
    view.show()
    t = streaming_transcript()
    t.append_tokens([tok(0, "Let me think", "thinking")])
    sync(view, t, status="")
    reply = view.message_widgets[-1]
    assert reply.thinking.isVisible() and reply.thinking.expanded  # open while thinking
    t.append_tokens([tok(1, "Here:\n```py\nx = 1\n"), tok(2, "```\nDone")])
    sync(view, t)
    assert not reply.thinking.expanded  # folds once the answer starts
    codes = reply.findChildren(CodeBlock)
    assert len(codes) == 1 and codes[0].text.toPlainText() == "x = 1"
    assert not reply.footer.isVisible()
    t.finish(
        Finished(
            "r",
            "loop",
            t.last.content,
            "Let me think",
            GenerationStats(generation_tokens=3, generation_tps=12.5),
        )
    )
    sync(view, t)
    assert reply.footer.isVisible()
    assert reply.tag.text() == "loop stopped"
    assert "12.5 tok/s" in reply.meta.text()


def test_user_can_reopen_thinking(qtbot, themed):
    view = TranscriptView()
    qtbot.addWidget(view)
    view.show()
    t = streaming_transcript()
    t.append_tokens([tok(0, "hmm", "thinking"), tok(1, "Answer")])
    sync(view, t)
    block = view.message_widgets[-1].thinking
    assert not block.expanded
    qtbot.mouseClick(block.toggle, Qt.MouseButton.LeftButton)
    assert block.expanded
    t.append_tokens([tok(2, " more")])
    sync(view, t)
    assert block.expanded  # the user's choice sticks


def test_highlight_marks_accepted_draft_tokens(qtbot, themed):
    view = TranscriptView()
    qtbot.addWidget(view)
    view.show()
    t = streaming_transcript()
    t.append_tokens([tok(0, "Plain "), tok(1, "drafted", drafted=True)])
    sync(view, t, highlight=False)
    prose = view.message_widgets[-1]._blocks[0]
    assert prose.textFormat() == Qt.TextFormat.MarkdownText
    sync(view, t, highlight=True)
    assert prose.textFormat() == Qt.TextFormat.RichText
    assert "background-color" in prose.text()


def test_error_is_shown(qtbot, themed):
    view = TranscriptView()
    qtbot.addWidget(view)
    view.show()
    t = streaming_transcript()
    t.fail("model not found")
    sync(view, t)
    reply = view.message_widgets[-1]
    assert reply.error.isVisible() and "model not found" in reply.error_text.text()
    assert reply.tag.text() == "error"


def test_clear_removes_widgets(qtbot, themed):
    view = TranscriptView()
    qtbot.addWidget(view)
    t = streaming_transcript()
    sync(view, t)
    t.clear()
    sync(view, t)
    assert view.message_widgets == []


def test_streaming_paragraph_alone_changes_and_finished_ones_settle(qtbot, themed):
    view = TranscriptView()
    qtbot.addWidget(view)
    view.resize(480, 600)
    view.show()
    t = streaming_transcript()
    t.append_tokens([tok(0, "First paragraph, long enough to wrap " * 8 + "\n\n")])
    t.append_tokens([tok(1, "Second one is")])
    sync(view, t)
    reply = view.message_widgets[-1]
    first, second = reply._blocks
    assert isinstance(first, ProseLabel) and first.settled
    assert isinstance(second, StreamingProse) and second.text().startswith("Second one is")
    # A settled paragraph holds the height its text needs at its width.
    assert first.height() > 2 * first.fontMetrics().height()
    line = second.height()
    t.append_tokens([tok(2, " still")])
    sync(view, t)
    assert reply._blocks[0] is first and reply._blocks[1] is second  # nothing rebuilt
    assert second.height() == line  # same line count: no new layout asked for
    t.append_tokens([tok(3, " going on and on" * 12)])
    sync(view, t)
    assert second.height() > line  # it grew by lines
    t.finish(Finished("r", "stop", t.last.content, "", GenerationStats(generation_tokens=4)))
    sync(view, t)
    assert all(isinstance(b, ProseLabel) and b.settled for b in reply._blocks)
    assert "\u258d" not in reply._blocks[-1].text()  # no cursor once done
    wide = first.height()
    view.resize(300, 600)  # narrower: settled paragraphs take more lines
    QApplication.processEvents()
    probe = QLabel()
    probe.setWordWrap(True)
    probe.setTextFormat(first.textFormat())
    probe.setText(first.text())
    assert first.height() == probe.heightForWidth(first.width()) > wide
