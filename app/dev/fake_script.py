"""The fake engine's script and tokenizer: what the scripted model says, as token ids.

A tiny deterministic vocabulary (``fake_token_id``: the same ids in every process, so a
stored reply replays after a restart), a chat template (``render_prompt``) that renders
``continue_final`` like engine.chat, ``script_after``: where the script carries on
after a reply's first tokens, and how a request changes it (``vary`` for sampling and
"/diverge", ``tool_script`` for tool calls). Plain Python; any thread.
"""

from __future__ import annotations

import random
import re
import zlib

from engine.events import ChatMessage, Generate

THINKING = (
    "The user wants a short, practical answer. I should show a small example, "
    "keep it idiomatic, and mention the edge case people usually trip over. "
    "A code block will make it concrete."
)

ANSWER = """Here is a **compact** way to do it in Python:

```python
def fizzbuzz(n: int) -> list[str]:
    out = []
    for i in range(1, n + 1):
        word = ("Fizz" if i % 3 == 0 else "") + ("Buzz" if i % 5 == 0 else "")
        out.append(word or str(i))
    return out
```

A few notes:

- Building the word by concatenation avoids a separate `% 15` check.
- `word or str(i)` falls back to the number when neither rule matched.
- For large `n`, yield the items instead of building a list.

That keeps it *readable* and easy to test."""

VOCAB = ("the", " a", " it", " and", " to", " of", " in", ",", ".", " is", " for", "\n", " you")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ROLE_MARKS = {role: f"<|{role}|>" for role in ("system", "user", "assistant", "tool")}
END_MARK = "<|end|>"
_TEXTS: dict[int, str] = {}  # fake vocabulary: id -> text


def _split_tokens(text: str) -> list[str]:
    # Word pieces with their leading space, like a BPE tokenizer's output.
    return re.findall(r"\s*[A-Za-z]+|\s*\d|\s*[^\sA-Za-z\d]|\s+", text)


def fake_token_id(text: str) -> int:
    """A stable id for a piece of text (the same in every process), kept for decoding."""
    tid = zlib.crc32(text.encode()) & 0x7FFFFFFF
    _TEXTS.setdefault(tid, text)
    return tid


def fake_encode(text: str) -> list[int]:
    return [fake_token_id(t) for t in _split_tokens(text)]


def fake_decode(ids) -> str:
    return "".join(_TEXTS.get(i, "") for i in ids)


# The script's pieces decode in any process, so stored replies replay after a restart.
for _piece in (
    *ROLE_MARKS.values(),
    END_MARK,
    THINK_OPEN,
    THINK_CLOSE,
    *VOCAB,
    *_split_tokens(THINKING),
    *_split_tokens(ANSWER),
    *_split_tokens(" and again"),
):
    fake_token_id(_piece)


def render_prompt(cmd: Generate) -> list[int]:
    """The fake chat template: role marks, content, and an open reply to continue."""
    if cmd.prompt_tokens is not None:
        return [int(t) for t in cmd.prompt_tokens]
    if cmd.prompt is not None:
        return fake_encode(cmd.prompt)
    messages = list(cmd.messages)
    final = messages.pop() if cmd.continue_final else None
    ids: list[int] = []
    for m in messages:
        ids += [fake_token_id(ROLE_MARKS.get(m.role, ROLE_MARKS["user"])), *fake_encode(m.content)]
        ids.append(fake_token_id(END_MARK))
    ids.append(fake_token_id(ROLE_MARKS["assistant"]))
    if final is not None:
        ids += _reply_prefix_ids(final)
    elif cmd.thinking != "off":
        ids.append(fake_token_id(THINK_OPEN))
    return ids


def _reply_prefix_ids(m: ChatMessage) -> list[int]:
    # As engine.chat.ChatFormat._continue_prefix: thinking stays open unless an answer follows.
    if not m.reasoning:
        return fake_encode(m.content)
    ids = [fake_token_id(THINK_OPEN), *fake_encode(m.reasoning)]
    if m.content:
        ids += [fake_token_id(THINK_CLOSE), *fake_encode(m.content)]
    return ids


def after_last(ids: list[int], mark: str) -> list[int] | None:
    tid = fake_token_id(mark)
    for i in range(len(ids) - 1, -1, -1):
        if ids[i] == tid:
            return ids[i + 1 :]
    return None


def script_after(prefix: str, loop: bool = False) -> list[tuple[str, str]]:
    """What the fake model says after a reply that begins with ``prefix`` (decoded text).

    The prefix is taken to cover as many script pieces as it has tokens, whatever they
    say; a ``</think>`` in it ends the thinking there (the inspector's way to steer)."""
    thinking = prefix.lstrip().startswith(THINK_OPEN)
    script = [("thinking", t) for t in _split_tokens(THINKING)] if thinking else []
    close = len(script)
    if thinking:
        script.append(("thinking", THINK_CLOSE))
    script += [("answer", t) for t in _split_tokens(ANSWER)]
    if loop:
        script = script[:12] + [("answer", t) for t in _split_tokens(" and again") * 40]
    if not thinking:
        return script[len(_split_tokens(prefix)) :]
    body = prefix.lstrip()[len(THINK_OPEN) :]
    if THINK_CLOSE in body:
        answer = body.split(THINK_CLOSE, 1)[1]
        return script[close + 1 + len(_split_tokens(answer)) :]
    return script[min(len(_split_tokens(body)), close) :]


TOOL_CALL = (
    "Let me work that out.\n<tool_call>\n"
    '{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
)


def tool_script(prompt_text: str, cmd: Generate) -> list[tuple[str, str]] | None:
    """The scripted model with tools: "/tool" in the prompt, with tools offered (the
    generic format's system prompt), calls ``add`` ("/tool NAME": NAME, no arguments);
    a tool result gets a summary."""
    text = prompt_text.strip()
    if text.startswith("<tool_response>"):
        result = text.removeprefix("<tool_response>").removesuffix("</tool_response>").strip()
        return [("answer", t) for t in _split_tokens(f"The tool says {result}.")]
    offered = any("<tool_call>" in m.content for m in cmd.messages if m.role == "system")
    if "/tool" in text and offered:
        # "/tool NAME" calls that tool with no arguments instead (e.g. one that fails).
        named = text.split("/tool", 1)[1].split()
        call = TOOL_CALL
        if named:
            call = f'Let me try.\n<tool_call>\n{{"name": "{named[0]}", "arguments": {{}}}}\n</tool_call>'
        return [("answer", t) for t in _split_tokens(call)]
    return None


DIVERGE_AT = 30  # where "/diverge" makes a drafting pane's answer part (index)


def vary(pieces: list[tuple[str, str]], cmd: Generate, prompt_text: str) -> list:
    """The script as this request tells it: sampling (temperature > 0) swaps one word,
    where the seed says (a different place per unseeded request, as real draws
    differ); "/diverge" in the prompt swaps word DIVERGE_AT of a drafting request, as
    a verify pass's rounding can."""
    if cmd.sampling.temperature > 0:
        seed = cmd.sampling.seed
        # A seed gives the same draw every time (word 8 + 7 * seed mod 32); without one
        # each request draws its own.
        at = (
            8 + (7 * seed) % 32
            if seed is not None
            else random.Random(cmd.request_id).randrange(8, 40)
        )
    elif "/diverge" in prompt_text and cmd.decoder.enabled:
        at = DIVERGE_AT
    else:
        return pieces
    if at >= len(pieces) or pieces[at][1] in (THINK_OPEN, THINK_CLOSE):
        return pieces
    channel, text = pieces[at]
    word = next(w for w in VOCAB[1:] if w.strip() and w != text)
    return [*pieces[:at], (channel, word), *pieces[at + 1 :]]
