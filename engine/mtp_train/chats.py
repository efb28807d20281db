"""Training text from the user's own conversations with a model.

A reply is kept as the exact tokens the model saw and wrote: its stored prompt (the
rendered conversation up to that turn) followed by its generated tokens. A drafter
trained on these learns the kind of text this user asks this model for. Within one
conversation the next turn's prompt repeats a reply, so a reply whose prompt begins a
later reply's prompt is dropped (that prompt holds it): no text counts twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.storage import ConversationStore, StorageError

MAX_SEQUENCE = 2048  # tokens per sequence: longer ones keep their end (the newest text)


@dataclass(frozen=True)
class ChatSummary:
    """What the Train page previews: counts and a line per conversation."""

    conversations: int = 0
    replies: int = 0
    tokens: int = 0  # prompt and reply tokens, before duplicates are dropped
    lines: tuple[str, ...] = ()  # "Title — 3 replies: first words of the last reply"


@dataclass
class ChatText:
    sequences: list[list[int]] = field(default_factory=list)
    conversations: int = 0
    replies: int = 0

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.sequences)


def summarize(store: ConversationStore, model: str, lines: int = 50) -> ChatSummary:
    """Counts for ``model``'s replies, without reading their tokens (cheap: GUI thread)."""
    try:
        replies = [m for m in store.replies_by_model(model) if m.prompt_token_ids]
    except StorageError:
        return ChatSummary()
    by_conv: dict[int, list] = {}
    for m in replies:
        by_conv.setdefault(m.conversation_id, []).append(m)
    shown = []
    for cid, ms in sorted(by_conv.items(), key=lambda kv: -kv[1][-1].created)[:lines]:
        try:
            title = store.get_conversation(cid).title
        except StorageError:
            continue
        words = " ".join(ms[-1].content.split())[:80]
        n = len(ms)
        shown.append(f"{title} \u2014 {n} {'reply' if n == 1 else 'replies'}: {words}")
    tokens = sum(len(m.prompt_token_ids) + m.token_count for m in replies)
    return ChatSummary(len(by_conv), len(replies), tokens, tuple(shown))


def chat_text(store: ConversationStore, model: str) -> ChatText:
    """The token sequences of ``model``'s replies (see the module docstring)."""
    by_conv: dict[int, list[tuple[list[int], list[int]]]] = {}
    replies = 0
    for m in store.replies_by_model(model):
        reply = [t.id for t in store.tokens(m.id)]
        if not m.prompt_token_ids or not reply:
            continue
        replies += 1
        by_conv.setdefault(m.conversation_id, []).append((list(m.prompt_token_ids), reply))
    out = ChatText(conversations=len(by_conv), replies=replies)
    for turns in by_conv.values():
        for prompt, reply in turns:
            n = len(prompt)
            if any(len(p) > n and p[:n] == prompt for p, _ in turns):
                continue  # a later turn's prompt holds this one and its reply
            out.sequences.append((prompt + reply)[-MAX_SEQUENCE:])
    return out
