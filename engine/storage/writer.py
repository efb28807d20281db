"""StreamingWriter: saves a reply while it is generated, so a crash loses at most ~1 s."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from engine.events import Event, Failed, Finished, StatsEvent, TokenEvent, TokenRecord
from engine.storage import queries as q
from engine.storage.codec import encode_ids
from engine.storage.records import StorageError, StoredMessage

if TYPE_CHECKING:
    from engine.storage.store import ConversationStore


class StreamingWriter:
    """Feeds one assistant message from the engine's events.

    Made by ``ConversationStore.begin_reply`` / ``begin_replay``, which already saved the
    message (empty, ``finish_reason`` NULL, so a crash leaves it "interrupted"). Hand it
    every event of the request (``feed``); tokens are buffered and written in one small
    transaction at most every ``flush_interval`` seconds, and everything on Finished or
    Failed. A feed that arrives after a quiet spell flushes at once; call
    ``maybe_flush()`` from a UI timer too so a stall mid-generation cannot hold tokens
    back. A failed background flush never raises (see ``maybe_flush``); the final
    write (Finished, Failed, ``close``) raises StorageError if it fails.

    Not thread-safe: use it from one thread (the GUI thread); the store may be shared.
    """

    def __init__(
        self,
        store: ConversationStore,
        message: StoredMessage,
        *,
        request_id: str | None = None,
        flush_interval: float = 0.5,
        keep_prompt: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.message_id = message.id
        self.conversation_id = message.conversation_id
        self.request_id = request_id  # when set, events of other requests are ignored
        self.flush_interval = flush_interval
        self._keep_prompt = keep_prompt  # a replay keeps the original's prompt
        self._clock = clock
        self._offset = message.token_count  # tokens copied in by a replay come first
        self._prefix = (message.content, message.reasoning)
        self._answer: list[str] = [message.content]
        self._thinking: list[str] = [message.reasoning]
        self._pending: list[TokenRecord] = []
        self._stats: dict[str, Any] | None = None
        self._dirty = False
        self._last_flush = clock()
        self.saved_tokens = message.token_count  # token records on disk
        self.finished = False
        self.last_error: StorageError | None = None  # the last failed background flush

    # ------------------------------------------------------------ feeding

    def feed(self, event: Event) -> None:
        """Take any engine event of this request; others are ignored."""
        if self.finished or (self.request_id is not None and event.request_id != self.request_id):
            return
        if isinstance(event, TokenEvent):
            self._pending.append(TokenRecord.from_event(event, self._offset + event.index))
            (self._thinking if event.channel == "thinking" else self._answer).append(event.text)
            self._dirty = True
            self.maybe_flush()
        elif isinstance(event, StatsEvent):
            self._stats = asdict(event.stats)
            self._dirty = True
            self.maybe_flush()
        elif isinstance(event, Finished):
            self.finish(event)
        elif isinstance(event, Failed):
            self.fail(event.message)

    def feed_many(self, events: Iterable[Event]) -> None:
        for event in events:
            self.feed(event)

    # ------------------------------------------------------------ saving

    def maybe_flush(self) -> bool:
        """Flush if there is something new and the interval has passed. True if it did.

        Never raises: a failed write (database locked by another process, disk full)
        is kept in ``last_error`` and the tokens stay buffered for the next try, so a
        storage hiccup cannot break the live generation on the GUI thread."""
        if self._dirty and self._clock() - self._last_flush >= self.flush_interval:
            try:
                self.flush()
            except StorageError as exc:
                self.last_error = exc
                self._last_flush = self._clock()  # retry after another interval
                return False
            self.last_error = None
            return True
        return False

    def flush(self) -> None:
        """Write buffered tokens, text and stats now (one transaction)."""
        if self.finished or not self._dirty:
            return
        self._write()
        self._dirty = False

    def finish(self, event: Finished) -> StoredMessage:
        """Save the end of the generation. The engine's final text wins over the streamed
        text (stop strings are trimmed from it); a replay's copied prefix is kept in front."""
        if self.finished:
            return self.store.get_message(self.message_id)
        answer, thinking = "".join(self._answer), "".join(self._thinking)
        if event.text or not answer:
            answer = self._prefix[0] + event.text
        if event.reasoning or not thinking:
            thinking = self._prefix[1] + event.reasoning
        prompt = None if self._keep_prompt or not event.prompt_token_ids else event.prompt_token_ids
        self._write(answer, thinking, asdict(event.stats), event.reason, prompt)
        return self.store.get_message(self.message_id)

    def fail(self, message: str) -> StoredMessage:
        """The generation failed: keep what streamed, mark it "error" with the message."""
        if not self.finished:
            self._write(finish_reason="error", error=message)
        return self.store.get_message(self.message_id)

    def close(self, finish_reason: str | None = None) -> None:
        """Flush what is buffered. With ``finish_reason`` (e.g. "cancelled" when the app
        quits mid-generation) the message is closed with it; without, it stays unfinished."""
        if self.finished:
            return
        if finish_reason is None:
            self.flush()
        else:
            self._write(finish_reason=finish_reason)

    def __enter__(self) -> StreamingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(
        self,
        answer: str | None = None,
        thinking: str | None = None,
        stats: dict[str, Any] | None = None,
        finish_reason: str | None = None,
        prompt: tuple[int, ...] | None = None,
        error: str = "",
    ) -> None:
        store = self.store
        answer = "".join(self._answer) if answer is None else answer
        thinking = "".join(self._thinking) if thinking is None else thinking
        stats = self._stats if stats is None else stats
        with store._tx(write=True) as c:
            if self._pending:
                q.append_chunk(c, self.message_id, self._pending)
            sets = {"content": answer, "reasoning": thinking}
            if stats is not None:
                sets["stats"] = json.dumps(stats, ensure_ascii=False)
            if finish_reason is not None:
                sets["finish_reason"] = finish_reason
                sets["error"] = error
            if prompt is not None:
                sets["prompt_token_ids"] = encode_ids(prompt)
            c.execute(
                f"UPDATE messages SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
                (*sets.values(), self.message_id),
            )
            if finish_reason is not None:
                q.touch(c, self.conversation_id)
        # Only after the commit: a failed write keeps the tokens for the next try.
        self.saved_tokens += len(self._pending)
        self._pending = []
        self._last_flush = self._clock()
        if finish_reason is not None:
            self.finished = True
