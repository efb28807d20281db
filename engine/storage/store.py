"""ConversationStore: conversations, their message trees, token records and settings.

Thread safety: one SQLite connection per store, guarded by a re-entrant lock, so a
store may be shared by the GUI thread and server threads. Every public method is one
transaction (writes take the write lock up front with BEGIN IMMEDIATE), so readers in
other threads or processes never see half a change. Calls are short (milliseconds);
nothing holds the lock between calls.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from engine.events import Alternative, TokenRecord
from engine.paths import database_path
from engine.storage import queries as q
from engine.storage.codec import encode_ids
from engine.storage.records import (
    Conversation,
    ConversationSummary,
    DatabaseDamaged,
    RecoveryNotice,
    StorageError,
    StoredMessage,
)
from engine.storage.schema import is_damage, open_database

if TYPE_CHECKING:
    from engine.storage.writer import StreamingWriter

DEFAULT_TITLE = "New chat"

_KEEP: Any = object()  # "leave this field as it is" in update_message


class ConversationStore:
    """The conversations database. Open one per process and share it.

    ``recovery`` is set when the file was damaged at start-up and moved aside: show
    ``store.recovery.message`` to the user once.
    """

    def __init__(self, path: Path | str | None = None, *, check: bool = True) -> None:
        self.path = Path(path) if path is not None else database_path()
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None
        self._conn, self.recovery = open_database(self.path, check=check)

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StorageError("The conversations database is closed.")
            try:
                # Reads are transactions too, so a multi-query read is one snapshot.
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if is_damage(exc):
                    raise DatabaseDamaged(
                        f"The conversations database is damaged ({exc}). Restart Lookahead: "
                        "it will keep the damaged file and start a new one."
                    ) from exc
                raise StorageError(f"Conversations database error: {exc}") from exc

    # ------------------------------------------------------------ conversations

    def create_conversation(
        self, title: str = DEFAULT_TITLE, settings: Mapping[str, Any] | None = None
    ) -> Conversation:
        now = time.time()
        with self._tx(write=True) as c:
            cid = c.execute(
                "INSERT INTO conversations (title, created, updated) VALUES (?, ?, ?)",
                (title, now, now),
            ).lastrowid
            for key, value in (settings or {}).items():
                q.put_setting(c, cid, key, value)
            return q.conversation(c, cid)

    def get_conversation(self, conversation_id: int) -> Conversation:
        with self._tx() as c:
            return q.conversation(c, conversation_id)

    def list_conversations(
        self, search: str = "", *, limit: int | None = None, offset: int = 0
    ) -> list[ConversationSummary]:
        """Most recently updated first. ``search``: every word must occur in the title or
        in some message (answer or thinking); case-insensitive for ASCII letters."""
        with self._tx() as c:
            return q.search_conversations(c, search, limit, offset)

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        # Not a content change: the list order stays put.
        with self._tx(write=True) as c:
            q.require_conversation(c, conversation_id)
            c.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))

    def delete_conversation(self, conversation_id: int) -> None:
        with self._tx(write=True) as c:
            q.require_conversation(c, conversation_id)
            c.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def clone_conversation(self, conversation_id: int, title: str | None = None) -> Conversation:
        """A deep copy (messages, branches, token records, active leaves, settings) with
        new ids, titled "<title> (copy)" unless a title is given."""
        with self._tx(write=True) as c:
            return q.clone_conversation(c, conversation_id, title)

    # ------------------------------------------------------------ per-conversation settings

    def set_setting(self, conversation_id: int, key: str, value: Any) -> None:
        """Store a JSON-able value (e.g. the pane layout) under ``key``."""
        with self._tx(write=True) as c:
            q.require_conversation(c, conversation_id)
            q.put_setting(c, conversation_id, key, value)

    def get_setting(self, conversation_id: int, key: str, default: Any = None) -> Any:
        with self._tx() as c:
            row = c.execute(
                "SELECT value FROM conversation_settings WHERE conversation_id = ? AND key = ?",
                (conversation_id, key),
            ).fetchone()
        return default if row is None else json.loads(row[0])

    def delete_setting(self, conversation_id: int, key: str) -> None:
        with self._tx(write=True) as c:
            c.execute(
                "DELETE FROM conversation_settings WHERE conversation_id = ? AND key = ?",
                (conversation_id, key),
            )

    # ------------------------------------------------------------ messages

    def add_message(
        self,
        conversation_id: int,
        role: str,
        content: str = "",
        *,
        parent_id: int | None | Literal["active"] = "active",
        reasoning: str = "",
        model: str = "",
        decoder: Any = None,
        settings: Any = None,
        finish_reason: str | None = None,
        error: str = "",
        stats: Any = None,
        prompt_token_ids: Sequence[int] = (),
        tokens: Sequence[TokenRecord] = (),
        pane: str = "",
        make_active: bool = True,
    ) -> StoredMessage:
        """Add a message under ``parent_id``: by default the pane's active leaf (or the
        conversation's, for a pane that has none yet); None makes a new root.

        ``decoder``/``settings``/``stats`` take dataclasses (DecoderSettings,
        SamplingSettings, GenerationStats) or plain dicts. With ``make_active`` the new
        message becomes the pane's active leaf.
        """
        with self._tx(write=True) as c:
            mid = q.insert_message(
                c,
                conversation_id,
                role,
                content,
                parent_id=parent_id,
                reasoning=reasoning,
                model=model,
                decoder=decoder,
                settings=settings,
                finish_reason=finish_reason,
                error=error,
                stats=stats,
                prompt_token_ids=prompt_token_ids,
                pane=pane,
                make_active=make_active,
            )
            if tokens:
                q.append_chunk(c, mid, tokens)
            return q.get_message(c, mid)

    def get_message(self, message_id: int) -> StoredMessage:
        with self._tx() as c:
            return q.get_message(c, message_id)

    def messages(self, conversation_id: int) -> list[StoredMessage]:
        """Every message of the conversation (all branches), oldest first."""
        with self._tx() as c:
            q.require_conversation(c, conversation_id)
            rows = c.execute(
                f"SELECT {q.MSG_COLS} FROM messages m WHERE m.conversation_id = ? ORDER BY m.id",
                (conversation_id,),
            ).fetchall()
        return [q.message_from_row(r) for r in rows]

    def replies_by_model(self, model: str) -> list[StoredMessage]:
        """Every finished assistant reply ``model`` wrote (all conversations and branches,
        failed and unfinished ones left out), oldest first: what a drafter for that
        model can learn from."""
        with self._tx() as c:
            rows = c.execute(
                f"SELECT {q.MSG_COLS} FROM messages m WHERE m.role = 'assistant' "
                "AND m.model = ? AND m.finish_reason IS NOT NULL AND m.finish_reason != 'error' "
                "ORDER BY m.id",
                (model,),
            ).fetchall()
        return [q.message_from_row(r) for r in rows]

    def update_message(
        self,
        message_id: int,
        *,
        content: str = _KEEP,
        reasoning: str = _KEEP,
        model: str = _KEEP,
        decoder: Any = _KEEP,
        settings: Any = _KEEP,
        finish_reason: str | None = _KEEP,
        error: str = _KEEP,
        stats: Any = _KEEP,
        prompt_token_ids: Sequence[int] = _KEEP,
    ) -> StoredMessage:
        """Change fields in place (no new branch). Fields not given stay as they are."""
        changes: dict[str, Any] = {
            "content": content,
            "reasoning": reasoning,
            "model": model,
            "finish_reason": finish_reason,
            "error": error,
        }
        changes = {k: v for k, v in changes.items() if v is not _KEEP}
        for name, value in (("decoder", decoder), ("settings", settings), ("stats", stats)):
            if value is not _KEEP:
                changes[name] = q.to_json(value)
        if prompt_token_ids is not _KEEP:
            changes["prompt_token_ids"] = encode_ids(prompt_token_ids)
        with self._tx(write=True) as c:
            msg = q.get_message(c, message_id)
            if changes:
                sets = ", ".join(f"{k} = ?" for k in changes)
                c.execute(
                    f"UPDATE messages SET {sets} WHERE id = ?", (*changes.values(), message_id)
                )
                q.touch(c, msg.conversation_id)
            return q.get_message(c, message_id)

    def edit_message(
        self, message_id: int, content: str, *, reasoning: str | None = None, pane: str = ""
    ) -> StoredMessage:
        """Edit by branching: a new sibling with the new text becomes the active leaf;
        the original and everything under it stay reachable with ``switch_branch``.

        An edited assistant reply keeps model, settings and prompt (so it can be
        continued) but no token records, and its finish reason is "edited".
        """
        with self._tx(write=True) as c:
            old = q.get_message(c, message_id)
            assistant = old.role == "assistant"
            mid = q.insert_message(
                c,
                old.conversation_id,
                old.role,
                content,
                parent_id=old.parent_id,
                reasoning=old.reasoning if reasoning is None else reasoning,
                model=old.model,
                decoder=old.decoder,
                settings=old.settings,
                finish_reason="edited" if assistant else None,
                prompt_token_ids=old.prompt_token_ids,
                pane=pane,
            )
            return q.get_message(c, mid)

    def delete_message(self, message_id: int) -> None:
        """Delete a message and everything under it. Panes that showed a leaf in that
        subtree move to the nearest remaining branch."""
        with self._tx(write=True) as c:
            msg = q.get_message(c, message_id)
            cid = msg.conversation_id
            panes = [
                r[0]
                for r in c.execute(
                    f"{q.SUBTREE_CTE}SELECT pane FROM leaves WHERE message_id IN (SELECT id FROM s)",
                    (message_id,),
                )
            ]
            # One statement for the whole subtree: the parent_id references are all
            # gone by its end, and no recursive cascade runs.
            c.execute(
                f"{q.SUBTREE_CTE}DELETE FROM messages WHERE id IN (SELECT id FROM s)",
                (message_id,),
            )
            start = msg.parent_id
            if start is None:
                start = c.execute(
                    "SELECT MAX(id) FROM messages WHERE conversation_id = ? AND parent_id IS NULL",
                    (cid,),
                ).fetchone()[0]
            for pane in panes:
                if start is not None:
                    q.set_leaf(c, cid, pane, q.descend(c, start))
            q.touch(c, cid)

    # ------------------------------------------------------------ the tree

    def active_leaf(self, conversation_id: int, pane: str = "") -> int | None:
        """The pane's leaf; a pane with none shows the conversation's (pane "")."""
        with self._tx() as c:
            return q.leaf(c, conversation_id, pane)

    def active_path(self, conversation_id: int, pane: str = "") -> list[StoredMessage]:
        """The messages the pane shows: root -> its active leaf."""
        with self._tx() as c:
            q.require_conversation(c, conversation_id)
            leaf = q.leaf(c, conversation_id, pane)
            return [] if leaf is None else q.path(c, leaf)

    def path_to(self, message_id: int) -> list[StoredMessage]:
        """Root -> ``message_id``, inclusive."""
        with self._tx() as c:
            return q.path(c, message_id)

    def children(self, message_id: int) -> list[StoredMessage]:
        with self._tx() as c:
            rows = c.execute(
                f"SELECT {q.MSG_COLS} FROM messages m WHERE m.parent_id = ? ORDER BY m.id",
                (message_id,),
            ).fetchall()
        return [q.message_from_row(r) for r in rows]

    def siblings(self, message_id: int) -> tuple[int, int]:
        """(index, count) among the message's siblings (itself included), oldest first;
        index is 0-based: show it as ``‹ index+1/count ›``."""
        with self._tx() as c:
            ids = q.sibling_ids(c, message_id)
        return ids.index(message_id), len(ids)

    def switch_branch(self, message_id: int, direction: int, pane: str = "") -> int:
        """Show the sibling ``direction`` steps away (-1: ‹, +1: ›) and, under it, the
        branch last shown there (else the newest). Returns the pane's new active leaf;
        past either end nothing changes and the current leaf is returned."""
        with self._tx(write=True) as c:
            msg = q.get_message(c, message_id)
            ids = q.sibling_ids(c, message_id)
            target = ids.index(message_id) + direction
            if not 0 <= target < len(ids):
                leaf = q.leaf(c, msg.conversation_id, pane)
                return message_id if leaf is None else leaf
            leaf = q.descend(c, ids[target])
            q.set_leaf(c, msg.conversation_id, pane, leaf)
            return leaf

    # ------------------------------------------------------------ token records

    def tokens(self, message_id: int) -> tuple[TokenRecord, ...]:
        """The message's token records, in order (empty for non-generated messages)."""
        with self._tx() as c:
            return q.tokens(c, message_id)

    def set_tokens(self, message_id: int, tokens: Sequence[TokenRecord]) -> None:
        """Replace the message's token records."""
        with self._tx(write=True) as c:
            q.get_message(c, message_id)
            c.execute("DELETE FROM token_chunks WHERE message_id = ?", (message_id,))
            if tokens:
                q.append_chunk(c, message_id, tokens)

    # ------------------------------------------------------------ streaming replies

    def begin_reply(
        self,
        conversation_id: int,
        *,
        parent_id: int | None | Literal["active"] = "active",
        model: str = "",
        decoder: Any = None,
        settings: Any = None,
        prompt_token_ids: Sequence[int] = (),
        pane: str = "",
        request_id: str | None = None,
        flush_interval: float = 0.5,
    ) -> StreamingWriter:
        """Create an (empty, unfinished) assistant message now and return the writer
        that saves the generation into it as it streams. See ``StreamingWriter``."""
        from engine.storage.writer import StreamingWriter

        msg = self.add_message(
            conversation_id,
            "assistant",
            parent_id=parent_id,
            model=model,
            decoder=decoder,
            settings=settings,
            prompt_token_ids=prompt_token_ids,
            pane=pane,
        )
        return StreamingWriter(self, msg, request_id=request_id, flush_interval=flush_interval)

    def replay_prompt(
        self, message_id: int, token_index: int, alternative_id: int | None = None
    ) -> tuple[int, ...]:
        """The exact prompt to generate from token ``token_index`` of a reply: its prompt,
        the tokens before it, and the chosen alternative if one is given."""
        with self._tx() as c:
            msg = q.get_message(c, message_id)
            ids = [t.id for t in q.tokens(c, message_id)[:token_index]]
        if not msg.prompt_token_ids:
            raise StorageError("This reply has no stored prompt, so it cannot be replayed exactly.")
        extra = [] if alternative_id is None else [alternative_id]
        return (*msg.prompt_token_ids, *ids, *extra)

    def begin_replay(
        self,
        message_id: int,
        token_index: int,
        alternative: Alternative | None = None,
        *,
        model: str | None = None,
        decoder: Any = None,
        settings: Any = None,
        pane: str = "",
        request_id: str | None = None,
        flush_interval: float = 0.5,
    ) -> StreamingWriter:
        """Branch a reply at a token: a sibling message starts with the original's tokens
        before ``token_index`` (plus ``alternative`` in its place, if given) and the writer
        appends the new generation after them. Generate with
        ``prompt_tokens=store.replay_prompt(message_id, token_index, alternative.id)``."""
        from engine.storage.writer import StreamingWriter

        with self._tx(write=True) as c:
            old = q.get_message(c, message_id)
            if old.role != "assistant":
                raise ValueError("only an assistant reply can be replayed from a token")
            if not 0 <= token_index <= old.token_count:
                raise ValueError(f"token {token_index} is outside 0..{old.token_count}")
            prefix = list(q.tokens(c, message_id)[:token_index])
            if alternative is not None and token_index < old.token_count:
                at = q.tokens(c, message_id)[token_index]
                prefix.append(
                    TokenRecord(
                        token_index,
                        alternative.id,
                        alternative.text,
                        math.log(alternative.prob) if alternative.prob > 0 else -math.inf,
                        at.entropy,
                        at.channel,
                        top=at.top,  # the distribution it was chosen from
                    )
                )
            mid = q.insert_message(
                c,
                old.conversation_id,
                "assistant",
                "".join(t.text for t in prefix if t.channel != "thinking"),
                parent_id=old.parent_id,
                reasoning="".join(t.text for t in prefix if t.channel == "thinking"),
                model=old.model if model is None else model,
                decoder=old.decoder if decoder is None else decoder,
                settings=old.settings if settings is None else settings,
                prompt_token_ids=old.prompt_token_ids,
                pane=pane,
            )
            if prefix:
                q.append_chunk(c, mid, prefix)
            msg = q.get_message(c, mid)
        return StreamingWriter(
            self, msg, request_id=request_id, flush_interval=flush_interval, keep_prompt=True
        )


__all__ = ["ConversationStore", "DEFAULT_TITLE", "RecoveryNotice"]
