from app.chat.markdown_blocks import hard_breaks, highlighted_html, split_blocks


def test_prose_and_code_blocks_with_offsets():
    src = "Intro\n\n```python\nprint(1)\n```\n\nOutro"
    blocks = split_blocks(src)
    assert [(b.kind, b.lang, b.text) for b in blocks] == [
        ("prose", "", "Intro"),
        ("code", "python", "print(1)"),
        ("prose", "", "Outro"),
    ]
    for b in blocks:
        assert src[b.start : b.start + len(b.text)] == b.text


def test_unclosed_fence_streams_as_open_code_block():
    blocks = split_blocks("Look:\n```js\nlet a = 1;\nlet b")
    assert blocks[-1].kind == "code" and not blocks[-1].closed
    assert blocks[-1].text == "let a = 1;\nlet b"


def test_empty_source_has_no_blocks():
    assert split_blocks("") == []


def test_single_newlines_become_line_breaks_with_marks_kept():
    text, marks = hard_breaks("a\nb\n\nc", [True, False, True, False, False, False])
    assert text == "a  \nb\n\nc"
    assert marks[0] is True and marks[1] is False and marks[4] is True


def test_highlighted_html_wraps_marked_runs():
    html = highlighted_html("ab<c", [False, True, True, False], 0, "red")
    assert html == 'a<span style="background-color:red;">b&lt;</span>c'


def test_prose_is_split_into_paragraphs_with_offsets():
    src = "One\nline two\n\n\nTwo\n\n1. item\n\n    continued\n\n```py\na\n\nb\n```\nEnd  "
    blocks = split_blocks(src)
    assert [(b.kind, b.text) for b in blocks] == [
        ("prose", "One\nline two"),
        ("prose", "Two"),
        ("prose", "1. item\n\n    continued"),  # an indented paragraph stays with its item
        ("code", "a\n\nb"),  # blank lines inside a fence never split it
        ("prose", "End"),
    ]
    for b in blocks:
        assert src[b.start : b.start + len(b.text)] == b.text
