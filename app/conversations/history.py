"""Between the conversation store and the panes: pane layouts, a pane's messages with
their versions, switching versions, copying a thread into another pane.

A conversation holds every pane of a compare. Each pane has a key ("p1", "p2"…): it
names the pane's active leaf in the store, and every message a pane creates carries it
in its settings (``"pane"``), so one pane's versions (‹ 2/3 ›) are not mixed with the
first messages of the panes beside it. Plain Python; called on the GUI thread.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import fields, replace
from typing import Any

from app.chat.inference_controls import PaneSettings
from app.chat.pane_model import Message
from engine.settings import DecoderSettings, SamplingSettings, SettingsError
from engine.storage import ConversationStore, StoredMessage

LAYOUT_KEY = "panes"  # conversation setting: [{"key", "model", "settings"}] per pane
PANE_FIELD = "pane"  # message setting: the key of the pane that made it
TITLE_LENGTH = 60


def title_from(text: str) -> str:
    """A conversation title from its first prompt: the first line, shortened."""
    line = " ".join(text.strip().splitlines()[0].split()) if text.strip() else ""
    if len(line) <= TITLE_LENGTH:
        return line or "New chat"
    return line[: TITLE_LENGTH - 1].rsplit(" ", 1)[0] + "\u2026"


def settings_from_dict(data: dict[str, Any]) -> PaneSettings | None:
    """The inverse of ``PaneSettings.to_dict``; None for settings that no longer validate."""
    try:
        known = {f.name for f in fields(SamplingSettings)}
        sampling = SamplingSettings.from_dict(
            {k: v for k, v in (data.get("sampling") or {}).items() if k in known}
        )
        dec = data.get("decoder") or {}
        decoder = DecoderSettings(
            decoder=dec.get("decoder", "none"),
            draft_tokens=dec.get("draft_tokens"),
            adaptive=dec.get("adaptive", True),
        ).validated()
        return PaneSettings(
            sampling, decoder, str(data.get("thinking", "off")), str(data.get("system_prompt", ""))
        )
    except (SettingsError, TypeError, ValueError):
        return None


def owned_by(message: StoredMessage, key: str) -> bool:
    """Whether a pane shows this message among its versions (messages saved by another
    front end carry no pane and belong to every pane)."""
    pane = message.settings.get(PANE_FIELD)
    return pane is None or pane == key


def _siblings(store: ConversationStore, message: StoredMessage) -> list[StoredMessage]:
    if message.parent_id is not None:
        return store.children(message.parent_id)
    return [m for m in store.messages(message.conversation_id) if m.parent_id is None]


def version_of(store: ConversationStore, message: StoredMessage, key: str) -> tuple[int, int]:
    """(index, count) of the message among the pane's versions of it."""
    own = [m.id for m in _siblings(store, message) if owned_by(m, key)]
    return (own.index(message.id), len(own)) if message.id in own else (0, 1)


def load_pane(store: ConversationStore, conversation_id: int, key: str) -> list[Message]:
    """The messages a pane shows (root to its active leaf), with versions and tokens."""
    path = store.active_path(conversation_id, key)
    if not path:
        return []
    by_parent: dict[int | None, list[int]] = defaultdict(list)
    for m in store.messages(conversation_id):
        if owned_by(m, key):
            by_parent[m.parent_id].append(m.id)
    out = []
    for m in path:
        own = by_parent[m.parent_id]
        branch = (own.index(m.id), len(own)) if m.id in own else (0, 1)
        tokens = store.tokens(m.id) if m.token_count else ()
        out.append(Message.from_stored(m, tokens, branch))
    return out


def switch_version(store: ConversationStore, message_id: int, key: str, direction: int) -> bool:
    """Show the pane's previous (-1) or next (+1) version of a message; False at an end."""
    message = store.get_message(message_id)
    siblings = [m.id for m in _siblings(store, message)]
    own = [m.id for m in _siblings(store, message) if owned_by(m, key)]
    target = own.index(message_id) + direction
    if not 0 <= target < len(own):
        return False
    # The store steps among all siblings; jump straight to the pane's own next one.
    store.switch_branch(message_id, siblings.index(own[target]) - siblings.index(message_id), key)
    return True


def copy_thread(
    store: ConversationStore, conversation_id: int, path: list[StoredMessage], key: str
) -> None:
    """Copy messages (root first) with their token records into pane ``key``."""
    parent: int | None = None
    for m in path:
        unfinished = m.role == "assistant" and m.finish_reason is None
        parent = store.add_message(
            conversation_id,
            m.role,
            m.content,
            parent_id=parent,
            reasoning=m.reasoning,
            model=m.model,
            decoder=m.decoder,
            settings={**m.settings, PANE_FIELD: key},
            finish_reason="cancelled" if unfinished else m.finish_reason,
            error=m.error,
            stats=m.stats,
            prompt_token_ids=m.prompt_token_ids,
            tokens=store.tokens(m.id) if m.token_count else (),
            pane=key,
        ).id


def realign_prompt(
    store: ConversationStore, message_id: int, old: tuple[int, ...], prompt: tuple[int, ...]
) -> bool:
    """After a reply with token records was continued from its text (the chat template
    re-rendered it), keep it replayable: the saved prompt must end right before its first
    record. True if it could; otherwise only the new records are kept (False)."""
    n = len(old)
    if tuple(prompt[-n:]) == old:
        store.update_message(message_id, prompt_token_ids=prompt[:-n])
        return True
    kept = [replace(t, index=i) for i, t in enumerate(store.tokens(message_id)[n:])]
    store.set_tokens(message_id, kept)
    return False


def layout_of(panes: list[Any]) -> list[dict[str, Any]]:
    """What restores the panes: key, model, settings and the Tools switch of each
    (ChatPane-like)."""
    return [
        {
            "key": p.key,
            "model": p.model_id(),
            "settings": p.controls.settings().to_dict(),
            "tools": bool(getattr(p, "tools_on", False)),
            "servers_off": sorted(getattr(p, "servers_off", ())),
        }
        for p in panes
    ]


def layout_from_leaves(store: ConversationStore, conversation_id: int) -> list[dict[str, Any]]:
    """A layout for a conversation saved without one (one pane per leaf)."""
    keys = sorted(store.get_conversation(conversation_id).leaves) or [""]
    return [{"key": k, "model": None, "settings": {}} for k in keys]


__all__ = [
    "LAYOUT_KEY",
    "PANE_FIELD",
    "copy_thread",
    "layout_from_leaves",
    "layout_of",
    "load_pane",
    "owned_by",
    "realign_prompt",
    "settings_from_dict",
    "switch_version",
    "title_from",
    "version_of",
]
