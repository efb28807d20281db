"""Split a (possibly half-streamed) markdown reply into prose and fenced code blocks.

Prose is split further into paragraphs (at blank lines), so while a reply streams only
its last paragraph changes and needs laying out again. A paragraph indented by four
spaces or a tab (a list item's continuation, indented code) stays with the one before.
Plain Python. Offsets point into the original text so token highlighting can map
characters back to the tokens that produced them.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^\n]*$")
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n)+")


@dataclass(frozen=True)
class Block:
    kind: str  # "prose" | "code"
    text: str
    start: int  # offset of ``text`` in the source
    lang: str = ""
    closed: bool = True  # False for a code block still streaming


def split_blocks(source: str) -> list[Block]:
    """Prose and code blocks in order; an unclosed fence makes a code block to the end."""
    blocks: list[Block] = []
    pos = 0
    prose_start = 0
    fence: tuple[str, str, int] | None = None  # (marker, lang, content start)
    for line in source.splitlines(keepends=True):
        stripped = line.rstrip("\n")
        m = _FENCE.match(stripped)
        if fence is None and m:
            _add_prose(blocks, source, prose_start, pos)
            fence = (m.group(1), m.group(2), pos + len(line))
        elif fence is not None and m and stripped.strip().startswith(fence[0]) and not m.group(2):
            start = fence[2]
            blocks.append(Block("code", source[start:pos].rstrip("\n"), start, fence[1]))
            fence = None
            prose_start = pos + len(line)
        pos += len(line)
    if fence is not None:
        start = min(fence[2], len(source))
        blocks.append(Block("code", source[start:].rstrip("\n"), start, fence[1], closed=False))
    else:
        _add_prose(blocks, source, prose_start, len(source))
    return blocks


def _add_prose(blocks: list[Block], source: str, start: int, end: int) -> None:
    """One prose block per paragraph of source[start:end]."""
    cuts = [start]
    for m in _BLANK_LINES.finditer(source, start, end):
        if not source.startswith(("    ", "\t"), m.end()):
            cuts.append(m.end())
    cuts.append(end)
    for a, b in zip(cuts, cuts[1:], strict=False):
        text = source[a:b]
        if text.strip():
            lead = len(text) - len(text.lstrip("\n"))
            blocks.append(Block("prose", text.strip("\n").rstrip(), a + lead))


def hard_breaks(text: str, marks: list[bool] | None = None) -> tuple[str, list[bool]]:
    """Make single newlines line breaks, as chat replies mean them (poems, addresses).

    Markdown would join such lines into one paragraph. ``marks`` (one per character)
    are carried along so highlights stay on their characters.
    """
    marks = list(marks) if marks is not None else [False] * len(text)
    out: list[str] = []
    out_marks: list[bool] = []
    for i, ch in enumerate(text):
        inner = 0 < i < len(text) - 1 and text[i - 1] != "\n" and text[i + 1] != "\n"
        if ch == "\n" and inner and text[max(0, i - 2) : i] != "  ":
            out.append("  ")
            out_marks.extend([False, False])
        out.append(ch)
        out_marks.append(marks[i] if i < len(marks) else False)
    return "".join(out), out_marks


def highlighted_html(text: str, flags: list[bool], start: int, colour: str) -> str:
    """``text`` as HTML, with characters whose flag is set on a ``colour`` background.

    ``flags[i]`` belongs to source character ``i``; ``text`` begins at ``start``.
    """
    out: list[str] = []
    run: list[str] = []
    run_flag = False

    def close_run() -> None:
        if not run:
            return
        chunk = html.escape("".join(run)).replace("\n", "<br>")
        out.append(
            f'<span style="background-color:{colour};">{chunk}</span>' if run_flag else chunk
        )
        run.clear()

    for i, ch in enumerate(text):
        flag = flags[start + i] if start + i < len(flags) else False
        if flag != run_flag:
            close_run()
            run_flag = flag
        run.append(ch)
    close_run()
    return "".join(out)
