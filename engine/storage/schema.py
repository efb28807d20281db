"""Opening the database: connection pragmas, schema migrations, damaged-file recovery."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from engine.storage.records import RecoveryNotice, StorageError

SCHEMA_VERSION = 1

# SQLite primary result codes that mean "this file is not a usable database".
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

_V1 = """
CREATE TABLE conversations (
    id      INTEGER PRIMARY KEY,
    title   TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX conversations_updated ON conversations(updated);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    -- no ON DELETE CASCADE: SQLite runs cascades recursively (depth limit 1000), so a long
    -- chain would fail to delete; the store deletes whole subtrees in one statement.
    parent_id       INTEGER REFERENCES messages(id),
    role            TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content         TEXT NOT NULL DEFAULT '',
    reasoning       TEXT NOT NULL DEFAULT '',
    model           TEXT NOT NULL DEFAULT '',
    decoder         TEXT NOT NULL DEFAULT '{}',   -- JSON: DecoderSettings
    settings        TEXT NOT NULL DEFAULT '{}',   -- JSON: SamplingSettings.to_dict() + extras
    finish_reason   TEXT,                          -- NULL on an assistant: streaming/interrupted
    error           TEXT NOT NULL DEFAULT '',
    stats           TEXT NOT NULL DEFAULT '{}',   -- JSON: asdict(GenerationStats)
    prompt_token_ids BLOB,                         -- little-endian int32
    created         REAL NOT NULL,
    -- when it was last made a pane's active leaf: switching back to a branch returns to
    -- the message last shown in it (kept here, not on every edge, so setting a leaf is O(1))
    last_active     REAL
);
CREATE INDEX messages_tree ON messages(conversation_id, parent_id);
CREATE INDEX messages_parent ON messages(parent_id);

-- One row per streamed chunk of an assistant message (see codec.py).
CREATE TABLE token_chunks (
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    start      INTEGER NOT NULL,   -- index of the first token in the chunk
    count      INTEGER NOT NULL,
    data       BLOB NOT NULL,
    PRIMARY KEY (message_id, start)
) WITHOUT ROWID;

-- The leaf each pane shows; pane '' is the conversation's own active leaf.
CREATE TABLE leaves (
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    pane            TEXT NOT NULL,
    message_id      INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    PRIMARY KEY (conversation_id, pane)
) WITHOUT ROWID;
CREATE INDEX leaves_message ON leaves(message_id);

-- The app's per-conversation blobs (pane layout, ...): JSON values.
CREATE TABLE conversation_settings (
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    key             TEXT NOT NULL,
    value           TEXT NOT NULL,
    PRIMARY KEY (conversation_id, key)
) WITHOUT ROWID;
"""


def _to_v1(conn: sqlite3.Connection) -> None:
    _run_script(conn, _V1)


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT our open transaction; run statement by statement.
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip() and not all(
        part.strip().startswith("--") for part in statement.strip().splitlines()
    ):
        raise ValueError(f"incomplete SQL statement: {statement!r}")


# MIGRATIONS[n] upgrades a database at user_version n to n + 1, inside one transaction.
# Add a function here (and bump SCHEMA_VERSION) for every schema change; never edit an
# old one, since databases in the wild were built by it.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _to_v1}


def connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves (see ConversationStore._tx).
    # check_same_thread=False: the store shares one connection behind a lock.
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")  # the first read: fails on a non-database
        # NORMAL in WAL mode: a commit survives the app being killed (not power loss),
        # which is the promise; FULL would fsync on every streamed flush.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection, path: Path | None = None) -> int:
    """Bring the schema to SCHEMA_VERSION. Returns the version found.

    Before upgrading a database that already holds data, a copy is written next to it
    (``<name>.v<N>.bak``) so a faulty migration can never cost conversations.
    """
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise StorageError(
            f"The conversations database was written by a newer version of Lookahead "
            f"(schema {found}, this version knows {SCHEMA_VERSION}). Update Lookahead to open it."
        )
    if found == SCHEMA_VERSION:
        return found
    if found > 0 and path is not None:
        backup = sqlite3.connect(path.with_name(f"{path.name}.v{found}.bak"))
        try:
            conn.backup(backup)
        finally:
            backup.close()
    for version in range(found, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version={version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Corruption or not-a-database, as opposed to locked, read-only, disk full..."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def open_database(
    path: Path, *, check: bool = True
) -> tuple[sqlite3.Connection, RecoveryNotice | None]:
    """Open (creating if needed) and migrate. A damaged file is moved aside and a fresh
    database started; the notice says where the old file went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _open_and_check(path, check), None
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise StorageError(f"Cannot open the conversations database {path}: {exc}") from exc
        reason = str(exc)
    except _Damaged as exc:
        reason = str(exc)
    moved_to = _move_aside(path)
    try:
        return _open_and_check(path, check=False), RecoveryNotice(moved_to, reason)
    except (sqlite3.DatabaseError, _Damaged) as exc:
        raise StorageError(f"Cannot create a new conversations database {path}: {exc}") from exc


class _Damaged(Exception):
    pass


def _open_and_check(path: Path, check: bool) -> sqlite3.Connection:
    conn = connect(path)
    try:
        if check:
            # quick_check reads every page but skips index cross-checks: it catches
            # torn or overwritten files at start-up instead of in the middle of a chat.
            rows = conn.execute("PRAGMA quick_check").fetchall()
            if rows != [("ok",)]:
                raise _Damaged("; ".join(str(r[0]) for r in rows[:3]))
        migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        if path.exists():
            path.rename(target)
        for suffix in ("-wal", "-shm", "-journal"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                # keep the WAL with the damaged file (it may hold the newest data);
                # the shared-memory index is rebuilt and worthless on its own
                if suffix == "-shm":
                    side.unlink()
                else:
                    side.rename(target.with_name(target.name + suffix))
    except OSError as exc:
        raise StorageError(
            f"The conversations database {path} is damaged and could not be moved aside: {exc}"
        ) from exc
    return target
