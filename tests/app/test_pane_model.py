from app.chat.pane_model import Message, PaneTranscript
from engine.events import Alternative, Finished, GenerationStats, TokenEvent


def tok(i, text, channel="answer", drafted=False):
    return TokenEvent(
        "r", i, i, text, -0.1, (Alternative(i, text, 0.9),), 0.3, channel, drafted, drafted
    )


def test_tokens_split_into_answer_and_thinking():
    t = PaneTranscript()
    t.add_user("hi")
    t.start_assistant("m", {})
    t.append_tokens([tok(0, "hmm", "thinking"), tok(1, "Hello"), tok(2, " there", drafted=True)])
    msg = t.last
    assert msg.content == "Hello there"
    assert msg.reasoning == "hmm"
    assert [r.drafted for r in msg.tokens] == [False, False, True]
    assert msg.tokens[0].top == (Alternative(0, "hmm", 0.9),)
    assert t.busy


def test_finish_sets_reason_and_final_text():
    t = PaneTranscript()
    t.add_user("hi")
    t.start_assistant("m", {})
    t.append_tokens([tok(0, " Hello ")])
    t.finish(Finished("r", "length", "Hello", "", GenerationStats(generation_tokens=1)))
    assert t.last.finish_reason == "length"
    assert t.last.content == "Hello"
    assert t.last.stats["generation_tokens"] == 1
    assert not t.busy


def test_failed_replies_are_not_sent_back_to_the_model():
    t = PaneTranscript()
    t.add_user("first")
    t.start_assistant("m", {})
    t.fail("boom")
    t.add_user("second")
    msgs = t.chat_messages("Be brief.")
    assert [(m.role, m.content) for m in msgs] == [
        ("system", "Be brief."),
        ("user", "first"),
        ("user", "second"),
    ]
    assert t.messages[1].finish_reason == "error" and t.messages[1].error == "boom"


def test_round_trip_through_plain_dicts():
    t = PaneTranscript()
    t.add_user("hi")
    t.start_assistant("m", {"thinking": "off"})
    t.append_tokens([tok(0, "Yo", drafted=True)])
    t.finish(Finished("r", "stop", "Yo", "", GenerationStats()))
    again = PaneTranscript.from_dict(t.to_dict())
    assert again.to_dict() == t.to_dict()
    assert isinstance(again.messages[1], Message)
    assert again.messages[1].tokens[0].accepted


def test_version_changes_on_every_update():
    t = PaneTranscript()
    v = t.version
    t.add_user("x")
    assert t.version > v


def test_the_models_own_thinking_markers_stay_out_of_the_text():
    """A model whose markers are not <think>/</think> (ModelLoaded.think_tags)."""
    t = PaneTranscript()
    t.think_tags = ("<|channel>thought", "<channel|>")
    t.add_user("hi")
    t.start_assistant("m", {})
    t.append_tokens(
        [
            tok(0, "<|channel>thought", "thinking"),
            tok(1, "hmm", "thinking"),
            tok(2, "<channel|>", "thinking"),
            tok(3, "Hello"),
        ]
    )
    assert t.last.reasoning == "hmm" and t.last.content == "Hello"
    assert len(t.last.tokens) == 4  # the markers are kept as records
