"""The glue between chat panes, the conversation store and the engine (no widgets).

It saves what the panes do as it happens: a new turn creates the conversation (titled
from the prompt) and its messages, and every reply streams into a ``StreamingWriter``
fed from the bridge's signals, so a crash loses at most about a second. It carries out
what the message toolbars and the token inspector ask for: replay from an
alternative, edit (a new version) then save or continue, retry, switch versions, clone
into a new pane. And it opens, renames, clones and deletes conversations, restoring
their panes (models, settings) and transcripts with their token records.

Everything here runs on the GUI thread: the bridge's signals arrive there, and the
store's calls are short. Storage errors never interrupt a generation; they become a
``sig_notice``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from PySide6.QtCore import QObject, QTimer, Signal

from app.bridge import EngineBridge
from app.chat.pane import ChatPane
from app.chat.pane_model import Message, strip_think_tags
from app.conversations import history as io
from app.library.catalog import ModelCatalog
from engine.events import Alternative, ChatMessage, Finished, Generate, StatsEvent
from engine.settings import SettingsError
from engine.storage import ConversationStore, StorageError, StreamingWriter

FLUSH_MS = 500  # a stalled generation's tokens still reach the disk within ~1 s
LAYOUT_SAVE_MS = 300  # settings changes come in bursts (spin boxes)
THINKING_CLOSED = "thinking_closed"  # message setting: the user ended its thinking


class PaneHost(Protocol):
    """What the controller needs from the main window."""

    panes: list[ChatPane]
    catalog: ModelCatalog

    def add_pane(self) -> ChatPane | None: ...
    def remove_pane(self, pane: ChatPane) -> None: ...


class ConversationController(QObject):
    """Saves and restores the panes' conversations; GUI thread only."""

    sig_conversations_changed = Signal()
    """Conversations were added, renamed, removed or updated: refresh the list."""
    sig_current_changed = Signal(object)
    """The panes now show this conversation (its id, or None for a new, unsaved one)."""
    sig_notice = Signal(str)
    """Something the user should know (a storage error, an action that cannot run now)."""

    def __init__(
        self,
        store: ConversationStore,
        bridge: EngineBridge,
        host: PaneHost,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.store = store
        self.host = host
        self.current: int | None = None
        self._writers: dict[str, StreamingWriter] = {}
        # Continuations re-rendered from text over earlier tokens: (message, their ids).
        self._retokenized: dict[str, tuple[Message, tuple[int, ...]]] = {}
        self._loading = False
        bridge.sig_tokens.connect(self._on_bridge_tokens)
        bridge.sig_stats.connect(self._on_bridge_stats)
        bridge.sig_finished.connect(self._on_bridge_finished)
        bridge.sig_failed.connect(self._on_bridge_failed)
        self._flush_timer = QTimer(self)
        self._flush_timer.setInterval(FLUSH_MS)
        self._flush_timer.timeout.connect(self._on_timer_flush)
        self._flush_timer.start()
        self._layout_timer = QTimer(self)
        self._layout_timer.setSingleShot(True)
        self._layout_timer.setInterval(LAYOUT_SAVE_MS)
        self._layout_timer.timeout.connect(self.save_layout)

    @contextmanager
    def _storage(self, doing: str) -> Iterator[None]:
        try:
            yield
        except StorageError as exc:
            self.sig_notice.emit(f"Could not {doing}: {exc}")

    # ------------------------------------------------------------ panes

    def attach(self, pane: ChatPane) -> None:
        """Start saving this pane's turns and offer its message actions."""
        if not pane.key:
            pane.key = self._free_key()
        p = pane
        pane.sig_turn_started.connect(lambda user, cmd: self._on_pane_turn_started(p, user, cmd))
        pane.sig_replay_requested.connect(lambda m, i, t: self.replay(p, m, i, t))
        pane.sig_edit_requested.connect(lambda m, *a: self.edit(p, m, *a))
        pane.sig_branch_requested.connect(lambda m, d: self.switch_branch(p, m, d))
        pane.sig_continue_requested.connect(lambda m: self.continue_reply(p, m))
        pane.sig_retry_requested.connect(lambda m: self.retry(p, m))
        pane.sig_clone_requested.connect(lambda m: self.clone_to_pane(p, m))
        pane.sig_tool_calls_changed.connect(lambda m: self.save_tool_calls(p, m))
        pane.sig_tool_result.connect(lambda m: self.save_tool_result(p, m))
        pane.controls.sig_changed.connect(self._schedule_layout_save)
        pane.sig_tools_changed.connect(self._schedule_layout_save)
        pane.set_actions_enabled(True)
        self._schedule_layout_save()

    def _free_key(self) -> str:
        used = {p.key for p in self.host.panes}
        if self.current is not None:
            with self._storage("read the conversation"):
                used |= set(self.store.get_conversation(self.current).leaves)
        n = 1
        while f"p{n}" in used:
            n += 1
        return f"p{n}"

    def _schedule_layout_save(self) -> None:
        if not self._loading and self.current is not None:
            self._layout_timer.start()

    def save_layout(self) -> None:
        """Remember which panes the conversation has, with their models and settings."""
        if self.current is not None:
            with self._storage("save the panes"):
                self.store.set_setting(self.current, io.LAYOUT_KEY, io.layout_of(self.host.panes))

    # ------------------------------------------------------------ conversations

    def new_conversation(self) -> None:
        """Empty panes; the conversation is created with its first turn."""
        self._stop_all()
        self.current = None
        for pane in self.host.panes:
            pane.clear()
        self.sig_current_changed.emit(None)

    def open(self, conversation_id: int) -> bool:
        """Show a saved conversation: its panes, their models, settings and transcripts."""
        if conversation_id == self.current:
            return True
        try:
            layout = self.store.get_setting(conversation_id, io.LAYOUT_KEY) or []
            layout = layout or io.layout_from_leaves(self.store, conversation_id)
        except StorageError as exc:
            self.sig_notice.emit(f"Could not open the conversation: {exc}")
            return False
        self._stop_all()
        self._loading = True
        try:
            layout = layout[:4]
            while len(self.host.panes) < len(layout) and self.host.add_pane() is not None:
                pass
            while len(self.host.panes) > len(layout):
                self.host.remove_pane(self.host.panes[-1])
            self.current = conversation_id
            for pane, item in zip(self.host.panes, layout, strict=False):
                self._restore_pane(pane, item)
        finally:
            self._loading = False
        self.sig_current_changed.emit(conversation_id)
        return True

    def _restore_pane(self, pane: ChatPane, item: dict[str, Any]) -> None:
        pane.clear()
        pane.key = str(item.get("key", ""))
        missing = item.get("model") and self.host.catalog.find(item["model"]) is None
        pane.set_models(self.host.catalog.models(), prefer=item.get("model"))
        if settings := io.settings_from_dict(item.get("settings") or {}):
            pane.controls.set_settings(settings)
        pane.tools_button.setChecked(bool(item.get("tools")))
        off = item.get("servers_off")
        pane.servers_off = {str(n) for n in off} if isinstance(off, list) else set()
        if missing:
            self.sig_notice.emit(
                f"{pane.title}: {item['model']} is not on this computer any more; "
                f"{pane.model_id() or 'no model'} is picked instead."
            )
        with self._storage("load the conversation"):
            pane.set_messages(io.load_pane(self.store, self.current, pane.key))

    def rename(self, conversation_id: int, title: str) -> None:
        if title.strip():
            with self._storage("rename the conversation"):
                self.store.rename_conversation(conversation_id, title.strip())
        self.sig_conversations_changed.emit()

    def delete(self, conversation_id: int) -> None:
        if conversation_id == self.current:
            self.new_conversation()
        with self._storage("delete the conversation"):
            self.store.delete_conversation(conversation_id)
        self.sig_conversations_changed.emit()

    def clone(self, conversation_id: int) -> int | None:
        """Copy a conversation (every version, token records, panes) and open the copy."""
        with self._storage("clone the conversation"):
            self.save_layout()
            copy = self.store.clone_conversation(conversation_id)
            self.sig_conversations_changed.emit()
            self.open(copy.id)
            return copy.id
        return None

    def _ensure_conversation(self, first_prompt: str) -> int:
        if self.current is None:
            conv = self.store.create_conversation(io.title_from(first_prompt))
            self.current = conv.id
            self.save_layout()
            self.sig_current_changed.emit(conv.id)
        return self.current

    # ------------------------------------------------------------ turns (GUI thread)

    def _on_pane_turn_started(self, pane: ChatPane, user: Message, command: Generate) -> None:
        """A pane asked for a reply: save its prompt and stream the reply to disk."""
        reply = pane.transcript.last
        with self._storage("save the conversation"):
            cid = self._ensure_conversation(user.content)
            if user.id is None:
                before = pane.transcript.messages[: pane.transcript.index_of(user)]
                parent = next((m.id for m in reversed(before) if m.id is not None), None)
                stored = self.store.add_message(
                    cid,
                    "user",
                    user.content,
                    parent_id=parent,
                    settings={io.PANE_FIELD: pane.key},
                    pane=pane.key,
                )
                user.id = stored.id
                user.branch = io.version_of(self.store, stored, pane.key)
            writer = self.store.begin_reply(
                cid,
                parent_id=user.id,
                model=command.model,
                decoder=command.decoder,
                settings=self._reply_settings(command, pane.key),
                pane=pane.key,
                request_id=command.request_id,
            )
            self._writers[command.request_id] = writer
            if reply is not None:
                reply.id = writer.message_id
                stored = self.store.get_message(writer.message_id)
                reply.branch = io.version_of(self.store, stored, pane.key)
            self.sig_conversations_changed.emit()

    @staticmethod
    def _reply_settings(command: Generate, key: str) -> dict[str, Any]:
        return {**command.sampling.to_dict(), "thinking": command.thinking, io.PANE_FIELD: key}

    def _can_run(self, pane: ChatPane, message: Message) -> bool:
        if pane.busy:
            self.sig_notice.emit(f"{pane.title} is still answering; stop it first.")
            return False
        if message.id is None or self.current is None:
            self.sig_notice.emit("That message is not saved, so it cannot be changed.")
            return False
        return True

    def replay(self, pane: ChatPane, message: Message, index: int, token_id: int) -> None:
        """Generate from token ``index`` of a reply with ``token_id`` in its place, as a new
        version; the prefix (and its KV cache) is kept, only the suffix is computed."""
        if not self._can_run(pane, message) or not 0 <= index < len(message.tokens):
            return
        record = message.tokens[index]
        alt = next((a for a in record.top if a.id == token_id), None)
        alt = alt or Alternative(record.id, record.text, record.prob)
        rid = pane.new_request_id()
        try:
            stored = self.store.get_message(message.id)
            settings = pane.controls.settings()
            command = Generate(
                request_id=rid,
                model=stored.model or pane.model_id() or "",
                prompt_tokens=self.store.replay_prompt(message.id, index, token_id),
                thinking=str(stored.settings.get("thinking", settings.thinking)),
                sampling=(stored.sampling_settings() or settings.sampling).validated(),
                decoder=settings.decoder.validated(),
            )
            writer = self.store.begin_replay(
                message.id,
                index,
                alt,
                decoder=settings.decoder,
                pane=pane.key,
                request_id=rid,
            )
            new = self._message(writer.message_id, pane.key)
        except (StorageError, SettingsError) as exc:
            self.sig_notice.emit(f"Could not replay: {exc}")
            return
        self._stream_into(pane, new, writer)
        pane.set_messages([new], start=pane.transcript.index_of(message))
        pane.start(command)

    def edit(
        self, pane: ChatPane, message: Message, content: str, reasoning: str, close: bool, run: bool
    ) -> None:
        """Save an edit as a new version; then reply (user) or continue (assistant)."""
        if not self._can_run(pane, message):
            return
        reply = message.role == "assistant"
        try:
            stored = self.store.edit_message(
                message.id, content, reasoning=reasoning if reply else None, pane=pane.key
            )
            if reply and close != bool(stored.settings.get(THINKING_CLOSED)):
                stored = self.store.update_message(
                    stored.id, settings={**stored.settings, THINKING_CLOSED: close}
                )
            new = self._message(stored.id, pane.key)
        except StorageError as exc:
            self.sig_notice.emit(f"Could not save the edit: {exc}")
            return
        pane.set_messages([new], start=pane.transcript.index_of(message))
        if run and reply:
            self.continue_reply(pane, new)
        elif run:
            pane.ask()

    def continue_reply(self, pane: ChatPane, message: Message) -> None:
        """Let the model carry on from the end of a reply, in place."""
        if not self._can_run(pane, message):
            return
        settings = pane.controls.settings()
        rid = pane.new_request_id()
        try:
            stored = self.store.get_message(message.id)
            model = stored.model or pane.model_id() or ""
            common: dict[str, Any] = {
                "request_id": rid,
                "model": model,
                "thinking": settings.thinking,
                "sampling": settings.sampling.validated(),
                "decoder": settings.decoder.validated(),
            }
            # Generated tokens continue exactly from their ids (and the cache); typed
            # text goes through the chat template.
            exact = bool(stored.token_count and stored.prompt_token_ids)
            if exact:
                ids = self.store.replay_prompt(stored.id, stored.token_count)
                command = Generate(prompt_tokens=ids, **common)
            else:
                if stored.token_count:  # a reply cut off before its prompt was saved
                    self._retokenized[rid] = (message, tuple(t.id for t in message.tokens))
                # A reply saved mid-stream may hold the closing tag: the thinking ended.
                tags = pane.transcript.think_tags
                ended = stored.reasoning.rstrip().endswith(tags[1])
                reasoning = strip_think_tags(stored.reasoning, tags)
                closed = ended or stored.settings.get(THINKING_CLOSED)
                if reasoning and not stored.content and closed:
                    reasoning += tags[1]
                history = pane.transcript.chat_messages(settings.system_prompt, until=message)
                final = ChatMessage("assistant", stored.content, reasoning)
                command = Generate(messages=(*history, final), continue_final=True, **common)
            # Unfinished again: a crash from here on shows it as interrupted.
            stored = self.store.update_message(stored.id, finish_reason=None, error="")
            writer = StreamingWriter(self.store, stored, request_id=rid, keep_prompt=exact)
        except (StorageError, SettingsError) as exc:
            self.sig_notice.emit(f"Could not continue: {exc}")
            return
        message.finish_reason = None
        message.error = ""
        self._stream_into(pane, message, writer)
        pane.transcript.changed()
        pane.start(command)

    def retry(self, pane: ChatPane, message: Message) -> None:
        """Generate a reply again, with the pane's current settings, as a new version."""
        if not self._can_run(pane, message):
            return
        index = pane.transcript.index_of(message)
        if index == 0 or pane.transcript.messages[index - 1].role != "user":
            return
        pane.set_messages([], start=index)
        pane.ask()

    def _message(self, message_id: int, key: str) -> Message:
        stored = self.store.get_message(message_id)
        tokens = self.store.tokens(message_id) if stored.token_count else ()
        return Message.from_stored(stored, tokens, io.version_of(self.store, stored, key))

    def _stream_into(self, pane: ChatPane, message: Message, writer: StreamingWriter) -> None:
        message.finish_reason = None  # streaming, not "interrupted"
        message.stream_prefix = (message.content, message.reasoning)
        if writer.request_id is not None:
            self._writers[writer.request_id] = writer

    def switch_branch(self, pane: ChatPane, message: Message, direction: int) -> None:
        """Show the pane's previous (-1) or next (+1) version of a message."""
        if not self._can_run(pane, message):
            return
        with self._storage("switch versions"):
            if io.switch_version(self.store, message.id, pane.key, direction):
                index = pane.transcript.index_of(message)
                messages = io.load_pane(self.store, self.current, pane.key)
                pane.set_messages(messages[index:], start=index)

    def clone_to_pane(self, pane: ChatPane, message: Message) -> None:
        """Copy the thread up to ``message`` with the pane's model and settings into a
        new pane (e.g. to run it again with the decoder switched on)."""
        if message.id is None or self.current is None:
            self.sig_notice.emit("That message is not saved, so it cannot be cloned.")
            return
        new = self.host.add_pane()
        if new is None:
            self.sig_notice.emit("There is no room for another pane; close one first.")
            return
        self._loading = True
        try:
            new.set_models(self.host.catalog.models(), prefer=pane.model_id())
            new.controls.set_settings(pane.controls.settings())
            with self._storage("clone into a new pane"):
                path = self.store.path_to(message.id)
                io.copy_thread(self.store, self.current, path, new.key)
                new.set_messages(io.load_pane(self.store, self.current, new.key))
        finally:
            self._loading = False
        self.save_layout()

    # ------------------------------------------------------------ tool calls

    def save_tool_calls(self, pane: ChatPane, message: Message) -> None:
        """A reply's tool calls were read out of it or answered: keep its visible text
        and the calls with their states."""
        if message.id is None:
            return
        with self._storage("save the tool calls"):
            stored = self.store.get_message(message.id)
            calls = message.settings.get("tool_calls") or []
            self.store.update_message(
                message.id,
                content=message.content,
                settings={**stored.settings, "tool_calls": calls},
            )

    def save_tool_result(self, pane: ChatPane, message: Message) -> None:
        """A tool's result joins the conversation after the reply that called it."""
        if self.current is None:
            return
        before = pane.transcript.messages[: pane.transcript.index_of(message)]
        parent = next((m.id for m in reversed(before) if m.id is not None), None)
        with self._storage("save the tool result"):
            stored = self.store.add_message(
                self.current,
                "tool",
                message.content,
                parent_id=parent,
                model=message.model,
                settings={**message.settings, io.PANE_FIELD: pane.key},
                pane=pane.key,
            )
            message.id = stored.id
            self.sig_conversations_changed.emit()

    # ------------------------------------------------------------ bridge (GUI thread)

    def _on_bridge_tokens(self, rid: str, events: list) -> None:
        if writer := self._writers.get(rid):
            writer.feed_many(events)

    def _on_bridge_stats(self, rid: str, stats: object) -> None:
        if writer := self._writers.get(rid):
            writer.feed(StatsEvent(rid, stats))

    def _on_bridge_finished(self, rid: str, event: Finished) -> None:
        if writer := self._writers.pop(rid, None):
            with self._storage("save the reply"):
                saved = writer.finish(event)
                if (clean := strip_think_tags(saved.reasoning)) != saved.reasoning:
                    # A replay keeps its prefix tokens' text, the closing tag's included.
                    self.store.update_message(saved.id, reasoning=clean)
                if rid in self._retokenized:
                    self._match_prompt(*self._retokenized.pop(rid), event.prompt_token_ids)
            self.sig_conversations_changed.emit()

    def _match_prompt(self, message: Message, old: tuple[int, ...], prompt: tuple) -> None:
        if not io.realign_prompt(self.store, message.id, old, prompt):
            message.tokens = message.tokens[len(old) :]
            for i, t in enumerate(message.tokens):
                t.index = i

    def _on_bridge_failed(self, rid: str, message: str) -> None:
        if writer := self._writers.pop(rid, None):
            with self._storage("save the reply"):
                writer.fail(message)

    def _on_timer_flush(self) -> None:
        for writer in list(self._writers.values()):
            if writer.maybe_flush() is False and writer.last_error is not None:
                self.sig_notice.emit(f"Saving the reply is behind: {writer.last_error}")
                writer.last_error = None  # say it once per failure, not every tick

    def _stop_all(self) -> None:
        """Stop every pane; replies in progress are saved as cancelled."""
        self.close_writers("cancelled")
        for pane in self.host.panes:
            pane.stop()

    def close_writers(self, finish_reason: str | None = "cancelled") -> None:
        """Save what is streaming (the app is quitting, or the panes change conversation)."""
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            with self._storage("save the reply"):
                writer.close(finish_reason)

    def shutdown(self) -> None:
        self._flush_timer.stop()
        self._layout_timer.stop()
        self.save_layout()
        self.close_writers("cancelled")


__all__ = ["ConversationController", "PaneHost"]
