"""Queries on an open connection, shared by the store and the writer.

Every function here runs inside a transaction the caller opened (ConversationStore._tx),
so none of them locks or commits.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from typing import Any, Literal

from engine.events import TokenRecord
from engine.storage.codec import decode_ids, decode_tokens, encode_ids, encode_tokens
from engine.storage.records import (
    ROLES,
    Conversation,
    ConversationSummary,
    NotFound,
    StorageError,
    StoredMessage,
)

MSG_COLS = (
    "m.id, m.conversation_id, m.parent_id, m.role, m.content, m.reasoning, m.model, "
    "m.decoder, m.settings, m.finish_reason, m.error, m.stats, m.prompt_token_ids, m.created, "
    "(SELECT COALESCE(SUM(t.count), 0) FROM token_chunks t WHERE t.message_id = m.id)"
)

# Root -> message, as (id, depth) rows; a CTE has no recursion limit, unlike cascades.
PATH_CTE = (
    "WITH RECURSIVE p(id, depth) AS (SELECT ?, 0 UNION ALL "
    "SELECT m.parent_id, p.depth + 1 FROM messages m JOIN p ON m.id = p.id "
    "WHERE m.parent_id IS NOT NULL) "
)
SUBTREE_CTE = (
    "WITH RECURSIVE s(id) AS (SELECT ? UNION ALL "
    "SELECT m.id FROM messages m JOIN s ON m.parent_id = s.id) "
)


def to_json(value: Any) -> str:
    if value is None:
        return "{}"
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    elif is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    return json.dumps(value, ensure_ascii=False)


def message_from_row(row: Sequence[Any]) -> StoredMessage:
    return StoredMessage(
        id=row[0],
        conversation_id=row[1],
        parent_id=row[2],
        role=row[3],
        content=row[4],
        reasoning=row[5],
        model=row[6],
        decoder=json.loads(row[7]),
        settings=json.loads(row[8]),
        finish_reason=row[9],
        error=row[10],
        stats=json.loads(row[11]),
        prompt_token_ids=decode_ids(row[12]),
        created=row[13],
        token_count=row[14],
    )


def like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def snippet(text: str, term: str, width: int = 90) -> str:
    at = max(text.lower().find(term.lower()), 0)
    start = max(at - width // 3, 0)
    piece = " ".join(text[start : start + width].split())
    return ("…" if start else "") + piece + ("…" if start + width < len(text) else "")


_stamp_lock = threading.Lock()
_last_stamp = 0.0


def _next_stamp() -> float:
    """Wall time, strictly increasing: two leaves set in one clock tick still have an order."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(time.time(), _last_stamp + 1e-6)
        return _last_stamp


def conversation(c: sqlite3.Connection, conversation_id: int) -> Conversation:
    row = require_conversation(c, conversation_id)
    leaves = dict(
        c.execute(
            "SELECT pane, message_id FROM leaves WHERE conversation_id = ?", (conversation_id,)
        ).fetchall()
    )
    settings = {
        k: json.loads(v)
        for k, v in c.execute(
            "SELECT key, value FROM conversation_settings WHERE conversation_id = ?",
            (conversation_id,),
        )
    }
    return Conversation(row[0], row[1], row[2], row[3], leaves.get(""), leaves, settings)


def require_conversation(c: sqlite3.Connection, conversation_id: int) -> tuple:
    row = c.execute(
        "SELECT id, title, created, updated FROM conversations WHERE id = ?",
        (conversation_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"conversation {conversation_id} does not exist")
    return row


def get_message(c: sqlite3.Connection, message_id: int) -> StoredMessage:
    row = c.execute(f"SELECT {MSG_COLS} FROM messages m WHERE m.id = ?", (message_id,)).fetchone()
    if row is None:
        raise NotFound(f"message {message_id} does not exist")
    return message_from_row(row)


def insert_message(
    c: sqlite3.Connection,
    conversation_id: int,
    role: str,
    content: str,
    *,
    parent_id: int | None | Literal["active"],
    reasoning: str = "",
    model: str = "",
    decoder: Any = None,
    settings: Any = None,
    finish_reason: str | None = None,
    error: str = "",
    stats: Any = None,
    prompt_token_ids: Sequence[int] = (),
    pane: str = "",
    make_active: bool = True,
) -> int:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    require_conversation(c, conversation_id)
    if parent_id == "active":
        parent_id = leaf(c, conversation_id, pane)
    elif parent_id is not None:
        parent = get_message(c, parent_id)
        if parent.conversation_id != conversation_id:
            raise NotFound(f"message {parent_id} is not in conversation {conversation_id}")
    now = time.time()
    mid = c.execute(
        "INSERT INTO messages (conversation_id, parent_id, role, content, reasoning, model, "
        "decoder, settings, finish_reason, error, stats, prompt_token_ids, created) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            conversation_id,
            parent_id,
            role,
            content,
            reasoning,
            model,
            to_json(decoder),
            to_json(settings),
            finish_reason,
            error,
            to_json(stats),
            encode_ids(prompt_token_ids),
            now,
        ),
    ).lastrowid
    if make_active:
        set_leaf(c, conversation_id, pane, mid)
    touch(c, conversation_id, now)
    return mid


def touch(c: sqlite3.Connection, conversation_id: int, now: float | None = None) -> None:
    c.execute(
        "UPDATE conversations SET updated = ? WHERE id = ?",
        (time.time() if now is None else now, conversation_id),
    )


def put_setting(c: sqlite3.Connection, cid: int, key: str, value: Any) -> None:
    c.execute(
        "INSERT INTO conversation_settings (conversation_id, key, value) VALUES (?, ?, ?) "
        "ON CONFLICT (conversation_id, key) DO UPDATE SET value = excluded.value",
        (cid, key, json.dumps(value, ensure_ascii=False)),
    )


def leaf(c: sqlite3.Connection, conversation_id: int, pane: str) -> int | None:
    rows = dict(
        c.execute(
            "SELECT pane, message_id FROM leaves WHERE conversation_id = ? AND pane IN (?, '')",
            (conversation_id, pane),
        ).fetchall()
    )
    return rows.get(pane, rows.get(""))


def set_leaf(c: sqlite3.Connection, cid: int, pane: str, leaf: int) -> None:
    c.execute(
        "INSERT INTO leaves (conversation_id, pane, message_id) VALUES (?, ?, ?) "
        "ON CONFLICT (conversation_id, pane) DO UPDATE SET message_id = excluded.message_id",
        (cid, pane, leaf),
    )
    # Remember when it was shown, for switch_branch; strictly increasing so that two
    # leaves set within one clock tick still have an order.
    c.execute("UPDATE messages SET last_active = ? WHERE id = ?", (_next_stamp(), leaf))


def descend(c: sqlite3.Connection, message_id: int) -> int:
    """The message last shown as a leaf under ``message_id`` (itself included), else
    the end of its newest branch."""
    row = c.execute(
        f"{SUBTREE_CTE}SELECT m.id FROM messages m JOIN s ON m.id = s.id "
        "WHERE m.last_active IS NOT NULL ORDER BY m.last_active DESC, m.id DESC LIMIT 1",
        (message_id,),
    ).fetchone()
    if row is not None:
        return row[0]
    current = message_id
    while True:
        newest = c.execute(
            "SELECT MAX(id) FROM messages WHERE parent_id = ?", (current,)
        ).fetchone()[0]
        if newest is None:
            return current
        current = newest


def path(c: sqlite3.Connection, message_id: int) -> list[StoredMessage]:
    rows = c.execute(
        f"{PATH_CTE}SELECT {MSG_COLS} FROM messages m JOIN p ON m.id = p.id ORDER BY p.depth DESC",
        (message_id,),
    ).fetchall()
    if not rows:
        raise NotFound(f"message {message_id} does not exist")
    return [message_from_row(r) for r in rows]


def sibling_ids(c: sqlite3.Connection, message_id: int) -> list[int]:
    msg = get_message(c, message_id)
    return [
        r[0]
        for r in c.execute(
            "SELECT id FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY id",
            (msg.conversation_id, msg.parent_id),
        )
    ]


def tokens(c: sqlite3.Connection, message_id: int) -> tuple[TokenRecord, ...]:
    out: list[TokenRecord] = []
    for (blob,) in c.execute(
        "SELECT data FROM token_chunks WHERE message_id = ? ORDER BY start", (message_id,)
    ):
        out.extend(decode_tokens(blob))
    return tuple(out)


def append_chunk(c: sqlite3.Connection, message_id: int, tokens: Sequence[TokenRecord]) -> None:
    c.execute(
        "INSERT INTO token_chunks (message_id, start, count, data) VALUES (?, ?, ?, ?)",
        (message_id, tokens[0].index, len(tokens), encode_tokens(tokens)),
    )


def clone_conversation(
    c: sqlite3.Connection, conversation_id: int, title: str | None
) -> Conversation:
    now = time.time()
    src = require_conversation(c, conversation_id)
    new_id = c.execute(
        "INSERT INTO conversations (title, created, updated) VALUES (?, ?, ?)",
        (f"{src[1]} (copy)" if title is None else title, now, now),
    ).lastrowid
    rows = c.execute(
        "SELECT id, parent_id, role, content, reasoning, model, decoder, settings, "
        "finish_reason, error, stats, prompt_token_ids, created, last_active "
        "FROM messages WHERE conversation_id = ? ORDER BY id",
        (conversation_id,),
    ).fetchall()
    mapping: dict[int, int] = {}
    pending = list(rows)
    while pending:  # parents first (ids ascend with creation, but do not rely on it)
        later = []
        for r in pending:
            if r[1] is not None and r[1] not in mapping:
                later.append(r)
                continue
            mapping[r[0]] = c.execute(
                "INSERT INTO messages (conversation_id, parent_id, role, content, "
                "reasoning, model, decoder, settings, finish_reason, error, stats, "
                "prompt_token_ids, created, last_active) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (new_id, None if r[1] is None else mapping[r[1]], *r[2:14]),
            ).lastrowid
        if len(later) == len(pending):
            raise StorageError("The message tree is inconsistent (a parent is missing).")
        pending = later
    c.executemany(
        "INSERT INTO token_chunks (message_id, start, count, data) "
        "SELECT ?, start, count, data FROM token_chunks WHERE message_id = ?",
        [(new, old) for old, new in mapping.items()],
    )
    c.execute(
        "INSERT INTO conversation_settings (conversation_id, key, value) "
        "SELECT ?, key, value FROM conversation_settings WHERE conversation_id = ?",
        (new_id, conversation_id),
    )
    for pane, leaf in c.execute(
        "SELECT pane, message_id FROM leaves WHERE conversation_id = ?", (conversation_id,)
    ).fetchall():
        c.execute(
            "INSERT INTO leaves (conversation_id, pane, message_id) VALUES (?, ?, ?)",
            (new_id, pane, mapping[leaf]),
        )
    return conversation(c, new_id)


def search_conversations(
    c: sqlite3.Connection, search: str, limit: int | None, offset: int
) -> list[ConversationSummary]:
    terms = search.split()
    where, params = [], []
    for term in terms:
        pattern = like_pattern(term)
        where.append(
            "(c.title LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m "
            "WHERE m.conversation_id = c.id AND (m.content LIKE ? ESCAPE '\\' "
            "OR m.reasoning LIKE ? ESCAPE '\\')))"
        )
        params += [pattern, pattern, pattern]
    snippet_sql, snippet_params = "NULL", []
    if terms:
        first = like_pattern(terms[0])
        snippet_sql = (
            "(SELECT CASE WHEN m.content LIKE ? ESCAPE '\\' THEN m.content ELSE m.reasoning END "
            "FROM messages m WHERE m.conversation_id = c.id AND (m.content LIKE ? ESCAPE '\\' "
            "OR m.reasoning LIKE ? ESCAPE '\\') ORDER BY m.id LIMIT 1)"
        )
        snippet_params = [first, first, first]
    sql = (
        f"SELECT c.id, c.title, c.created, c.updated, "
        f"(SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id), {snippet_sql} "
        f"FROM conversations c {'WHERE ' + ' AND '.join(where) if where else ''} "
        f"ORDER BY c.updated DESC, c.id DESC LIMIT ? OFFSET ?"
    )
    rows = c.execute(
        sql, (*snippet_params, *params, -1 if limit is None else limit, offset)
    ).fetchall()
    return [
        ConversationSummary(r[0], r[1], r[2], r[3], r[4], snippet(r[5], terms[0]) if r[5] else "")
        for r in rows
    ]
