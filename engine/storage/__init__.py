"""Conversation persistence in SQLite: message trees, token records, streaming saves.

Usage (see ``ConversationStore`` and ``StreamingWriter`` for details)::

    store = ConversationStore()              # engine.paths.database_path()
    if store.recovery:                       # the old file was damaged and moved aside
        show(store.recovery.message)
    conv = store.create_conversation("Chat")
    user = store.add_message(conv.id, "user", "Hello")
    writer = store.begin_reply(conv.id, model=..., settings=sampling, decoder=decoder,
                               request_id=cmd.request_id)
    for event in drained_events: writer.feed(event)   # GUI thread; flushes every 0.5 s
    path = store.active_path(conv.id)        # root -> active leaf, what a pane shows
"""

from engine.events import TokenRecord
from engine.storage.records import (
    ROLES,
    Conversation,
    ConversationSummary,
    DatabaseDamaged,
    NotFound,
    RecoveryNotice,
    StorageError,
    StoredMessage,
)
from engine.storage.schema import MIGRATIONS, SCHEMA_VERSION, migrate
from engine.storage.store import DEFAULT_TITLE, ConversationStore
from engine.storage.writer import StreamingWriter

__all__ = [
    "DEFAULT_TITLE",
    "MIGRATIONS",
    "ROLES",
    "SCHEMA_VERSION",
    "Conversation",
    "ConversationStore",
    "ConversationSummary",
    "DatabaseDamaged",
    "NotFound",
    "RecoveryNotice",
    "StorageError",
    "StoredMessage",
    "StreamingWriter",
    "TokenRecord",
    "migrate",
]
