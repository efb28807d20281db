"""The widgets one message is drawn with: prose, code blocks, thinking, footer.

``MessageWidget.update_from`` is called on the GUI thread at most once per bridge
drain for the message that is streaming; it only touches the parts whose text changed.
A message can also show its tokens (``set_tokens_mode``) or an editor (``start_edit``);
its toolbar's clicks come out as ``sig_*`` for the pane to act on.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.chat.code_highlight import CodeHighlighter
from app.chat.collapsible import CollapsibleBlock
from app.chat.markdown_blocks import Block, hard_breaks, highlighted_html, split_blocks
from app.chat.markdown_render import marked_markdown_html
from app.chat.message_editor import MessageEditor
from app.chat.message_toolbar import MessageToolbar
from app.chat.pane_model import Message
from app.chat.prose_widgets import ProseLabel, StreamingProse
from app.chat.token_text import TokenText, mean_surprise
from app.chat.tool_blocks import ToolCallsBox, ToolResultBlock
from app.widgets import AutoHeightTextEdit, CopyButton, IconButton, Tag

CURSOR = " \u258d"  # a block cursor after streaming text
FINISH_LABELS = {
    "stop": "stop",
    "length": "length limit",
    "loop": "loop stopped",
    "cancelled": "cancelled",
    "error": "error",
    "edited": "edited",
    "interrupted": "interrupted",
}


def _text_label(parent: QWidget | None = None, name: str = "") -> ProseLabel:
    label = ProseLabel(parent)
    if name:
        label.setObjectName(name)
    label.setWordWrap(True)
    label.setTextInteractionFlags(
        Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.LinksAccessibleByMouse
    )
    label.setOpenExternalLinks(True)
    label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    return label


class CodeBlock(QFrame):
    """A fenced code block: language, copy button, highlighted monospace text."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("CodeBlock")
        self._code = ""
        self._html = ""
        header = QWidget(self)
        header.setObjectName("CodeHeader")
        self.lang = QLabel(header)
        self.lang.setObjectName("CodeLang")
        self.copy = CopyButton(lambda: self._code, "Copy code", header)
        hl = QHBoxLayout(header)
        hl.setContentsMargins(12, 2, 4, 2)
        hl.addWidget(self.lang)
        hl.addStretch(1)
        hl.addWidget(self.copy)
        self.text = AutoHeightTextEdit(self)
        self.text.setObjectName("CodeText")
        self.text.setFont(theme.mono_font())
        self.highlighter = CodeHighlighter(self.text.document())
        theme.manager().sig_changed.connect(self.highlighter.set_palette)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(header)
        layout.addWidget(self.text)

    def set_block(self, block: Block, html: str = "") -> None:
        self.lang.setText(block.lang or "code")
        if html:
            if html != self._html:
                self._html = html
                self.text.setHtml(f'<pre style="margin:0">{html}</pre>')
                self.text.setFont(theme.mono_font())
        elif block.text != self._code or self._html:
            self._html = ""
            self.text.setPlainText(block.text)
        self._code = block.text


class ThinkingBlock(CollapsibleBlock):
    """Collapsible thinking text. Open while the model thinks, closed once it answers,
    unless the user chose otherwise."""

    def __init__(self, parent: QWidget | None = None):
        body = _text_label(None, "ThinkingText")
        body.setTextFormat(Qt.TextFormat.PlainText)
        super().__init__("ThinkingBlock", body, (10, 6, 12, 8), 4, parent)


class MessageWidget(QWidget):
    """One message. User turns are bubbles on the right; replies use the full width."""

    sig_token_clicked = Signal(int)
    """A token of this reply was clicked (its index)."""
    sig_edit_submitted = Signal(str, str, bool, bool)
    """An edit was saved: (content, reasoning, end the thinking, generate)."""
    sig_branch = Signal(int)
    """Show the previous (-1) or next (+1) version of this message."""
    sig_continue = Signal()
    """Continue generating this reply."""
    sig_retry = Signal()
    """Generate this reply again as a new version."""
    sig_clone = Signal()
    """Clone the conversation up to this message into a new pane."""
    sig_tool_decision = Signal(str, str)
    """The user answered a tool call of this reply: (call id, once | always | deny)."""

    def __init__(self, message: Message, parent: QWidget | None = None):
        super().__init__(parent)
        self.message = message
        self._signature: tuple | None = None
        self._last = (False, "")  # update_from's arguments, to redraw after an edit
        self._blocks: list[QWidget] = []
        self.tokens_mode = False
        self.selected_token: int | None = None
        self.token_text: TokenText | None = None
        self.editor: MessageEditor | None = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(18, 8, 18, 8)
        self._layout.setSpacing(8)
        self.toolbar = MessageToolbar(message, self)
        self.toolbar.sig_branch.connect(self.sig_branch)
        self.toolbar.sig_tokens_toggled.connect(self.set_tokens_mode)
        self.toolbar.sig_edit.connect(self.start_edit)
        self.toolbar.sig_continue.connect(self.sig_continue)
        self.toolbar.sig_retry.connect(self.sig_retry)
        self.toolbar.sig_clone.connect(self.sig_clone)
        if message.role == "user":
            self._build_user()
        elif message.role == "tool":
            self._build_tool()
        else:
            self._build_assistant()

    # ------------------------------------------------------------ user

    def _build_user(self) -> None:
        row = QHBoxLayout()
        row.addStretch(1)
        self.bubble = QFrame(self)
        self.bubble.setObjectName("UserBubble")
        self.user_text = _text_label(self.bubble)
        self.user_text.setTextFormat(Qt.TextFormat.PlainText)
        bl = QVBoxLayout(self.bubble)
        bl.setContentsMargins(14, 9, 14, 9)
        bl.addWidget(self.user_text)
        row.addWidget(self.bubble)
        self._layout.addLayout(row)
        self._layout.setSpacing(2)
        self._layout.addWidget(self.toolbar, 0, Qt.AlignmentFlag.AlignRight)

    def _fit_bubble(self) -> None:
        text = self.user_text.text()
        fm = self.user_text.fontMetrics()
        natural = max((fm.horizontalAdvance(line) for line in text.splitlines() or [""]), default=0)
        limit = max(160, int(self.width() * 0.78) - 28)
        self.user_text.setFixedWidth(min(natural + 4, limit))

    # ------------------------------------------------------------ tool result

    def _build_tool(self) -> None:
        self.result = ToolResultBlock(self)
        self._layout.setContentsMargins(18, 2, 18, 2)
        self._layout.addWidget(self.result)
        self.toolbar.hide()

    # ------------------------------------------------------------ assistant

    def _build_assistant(self) -> None:
        self.thinking = ThinkingBlock(self)
        self.thinking.hide()
        self._layout.addWidget(self.thinking)
        self.body_box = QWidget(self)
        self.body = QVBoxLayout(self.body_box)
        self.body.setContentsMargins(0, 0, 0, 0)
        self.body.setSpacing(10)
        self._layout.addWidget(self.body_box)
        self.calls = ToolCallsBox(self)
        self.calls.sig_decision.connect(self.sig_tool_decision)
        self.calls.hide()
        self._layout.addWidget(self.calls)
        self.status = QLabel(self)
        self.status.setObjectName("MessageMeta")
        self.status.setWordWrap(True)
        self._layout.addWidget(self.status)
        self.error = QFrame(self)
        self.error.setObjectName("ErrorBox")
        el = QHBoxLayout(self.error)
        el.setContentsMargins(10, 8, 10, 8)
        self.error_icon = IconButton("alert", "Error", self.error, 16, "danger")
        self.error_text = _text_label(self.error, "ErrorText")
        self.error_text.setTextFormat(Qt.TextFormat.PlainText)
        el.addWidget(self.error_icon, 0, Qt.AlignmentFlag.AlignTop)
        el.addWidget(self.error_text, 1)
        self.error.hide()
        self._layout.addWidget(self.error)
        footer = QHBoxLayout()
        footer.setSpacing(8)
        self.tag = Tag("", "", self)
        self.meta = QLabel(self)
        self.meta.setObjectName("MessageMeta")
        self.meta.setWordWrap(True)  # never wider than a narrow pane
        footer.addWidget(self.tag, 0, Qt.AlignmentFlag.AlignTop)
        footer.addWidget(self.meta, 1)
        self.footer = QWidget(self)
        self.footer.setLayout(footer)
        footer.setContentsMargins(0, 0, 0, 0)
        self.footer.hide()
        self._layout.addWidget(self.footer)
        # Below the figures, so a narrow pane wraps the figures, not the buttons.
        self._layout.addWidget(self.toolbar, 0, Qt.AlignmentFlag.AlignLeft)

    def update_from(self, highlight: bool = False, status: str = "") -> None:
        """Bring the widgets up to date with ``self.message``; cheap when nothing changed."""
        m = self.message
        self._last = (highlight, status)
        sig = (
            len(m.content),
            len(m.reasoning),
            len(m.tokens),
            m.finish_reason,
            m.error,
            highlight,
            status,
            theme.current().name,
            m.stats.get("generation_tokens"),
            m.branch,
            self.tokens_mode,
            self.selected_token,
            tuple(c.get("state") for c in m.settings.get("tool_calls") or ()),
        )
        if sig == self._signature or self.editor is not None:
            return
        self._signature = sig
        if m.role == "tool":
            self.result.set_result(m.content, m.settings.get("tool") or {})
            return
        self.toolbar.update_for(m)
        if m.role == "user":
            if self.user_text.text() != m.content:
                self.user_text.setText(m.content)
                self._fit_bubble()
            return
        if self.tokens_mode and m.tokens:
            self._update_tokens(m)
        else:
            if self.token_text is not None:
                self.token_text.hide()
            self.body_box.show()
            self._update_thinking(m)
            self._update_body(m, highlight)
        self.calls.set_calls(list(m.settings.get("tool_calls") or ()))
        self.status.setText(status)
        self.status.setVisible(bool(status) and m.streaming)
        self.error.setVisible(bool(m.error))
        self.error_text.setText(m.error)
        self._update_footer(m)

    def _update_thinking(self, m: Message) -> None:
        if not m.reasoning.strip():
            self.thinking.hide()
            return
        n = sum(1 for t in m.tokens if t.channel == "thinking")
        thinking_now = m.streaming and not m.content
        title = "Thinking\u2026" if thinking_now else f"Thought for {n} tokens" if n else "Thoughts"
        self.thinking.set_content(m.reasoning.strip(), title, auto_expanded=thinking_now)
        self.thinking.show()

    def _update_body(self, m: Message, highlight: bool) -> None:
        source, flags = m.content, []
        answer_tokens = [t for t in m.tokens if t.channel == "answer"]
        if highlight and answer_tokens:
            source = "".join(t.text for t in answer_tokens)
            for t in answer_tokens:
                flags.extend([t.drafted and t.accepted] * len(t.text))
        blocks = split_blocks(source)
        pal = theme.current()
        for i, block in enumerate(blocks):
            widget = self._blocks[i] if i < len(self._blocks) else None
            writing = m.streaming and i == len(blocks) - 1
            if block.kind == "code":
                want = CodeBlock
            else:
                want = StreamingProse if writing else ProseLabel
            if widget is None or type(widget) is not want:
                for extra in self._blocks[i:]:
                    extra.hide()
                    extra.deleteLater()
                del self._blocks[i:]
                if want is ProseLabel:
                    widget = _text_label(self, "Prose")
                else:
                    widget = want(self)
                self.body.addWidget(widget)
                self._blocks.append(widget)
            if isinstance(widget, CodeBlock):
                html = highlighted_html(block.text, flags, block.start, pal.draft) if flags else ""
                widget.set_block(block, html)
            else:
                self._set_prose(widget, block, flags, pal, cursor=writing)
                if isinstance(widget, ProseLabel):
                    widget.settle()  # this paragraph is done changing
        for extra in self._blocks[len(blocks) :]:
            extra.hide()
            extra.deleteLater()
        del self._blocks[len(blocks) :]

    @staticmethod
    def _set_prose(
        widget: ProseLabel | StreamingProse, block: Block, flags: list[bool], pal, cursor: bool
    ) -> None:
        source = block.text + (CURSOR if cursor else "")
        marks = [
            flags[block.start + i] if block.start + i < len(flags) else False
            for i in range(len(source) if flags else 0)
        ]
        key = (source, bool(flags), tuple(marks), pal.draft)
        if widget.source == key:
            return  # a paragraph above the one streaming: nothing to redo
        widget.source = key
        if flags:
            text = marked_markdown_html(*hard_breaks(source, marks), pal.draft)
            widget.show_text(text, Qt.TextFormat.RichText)
        else:
            widget.show_text(hard_breaks(source)[0], Qt.TextFormat.MarkdownText)

    def _update_footer(self, m: Message) -> None:
        if m.finish_reason is None:
            self.footer.hide()
            return
        self.tag.setText(FINISH_LABELS.get(m.finish_reason, m.finish_reason))
        self.tag.set_kind(m.finish_reason)
        meta = stats_summary(m.stats, m.model)
        if self.tokens_mode and m.tokens:
            meta = f"perplexity {mean_surprise(m.tokens):.2f}  \u00b7  " + meta
        self.meta.setText(meta)
        self.footer.show()

    # ------------------------------------------------------------ tokens and editing

    def set_tokens_mode(self, on: bool) -> None:
        """Show the reply as clickable tokens instead of formatted text."""
        self.tokens_mode = on
        if self.toolbar.tokens_button.isChecked() != on:
            self.toolbar.tokens_button.setChecked(on)
        self.update_from(*self._last)

    def select_token(self, index: int | None) -> None:
        """Mark the token the inspector shows (None: none)."""
        self.selected_token = index
        self.update_from(*self._last)

    def _update_tokens(self, m: Message) -> None:
        if self.token_text is None:
            self.token_text = TokenText(self)
            self.token_text.sig_token_clicked.connect(self.sig_token_clicked)
            self._layout.insertWidget(self._layout.indexOf(self.body_box), self.token_text)
        self.thinking.hide()
        self.body_box.hide()
        self.token_text.show()
        self.token_text.set_tokens(m.tokens, self.selected_token)

    def start_edit(self) -> None:
        """Replace the message with an editor until it is saved or cancelled."""
        if self.editor is not None or self.message.streaming:
            return
        self.editor = MessageEditor(self.message, self)
        self.editor.sig_submitted.connect(self._on_editor_submitted)
        self.editor.sig_cancelled.connect(self.end_edit)
        for w in self._content_widgets():
            w.hide()
        self._layout.insertWidget(0, self.editor)

    def end_edit(self) -> None:
        """Close the editor and show the message again."""
        if self.editor is None:
            return
        self.editor.hide()
        self.editor.deleteLater()
        self.editor = None
        for w in self._content_widgets():
            w.show()  # update_from hides again what this message does not need
        self._signature = None
        self.update_from(*self._last)

    def _content_widgets(self) -> list[QWidget]:
        if self.message.role == "user":
            return [self.bubble, self.toolbar]
        parts = [self.thinking, self.body_box, self.status, self.error, self.footer, self.toolbar]
        return parts + ([self.token_text] if self.token_text is not None else [])

    def _on_editor_submitted(self, content: str, reasoning: str, close: bool, run: bool) -> None:
        self.end_edit()
        self.sig_edit_submitted.emit(content, reasoning, close, run)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.message.role == "user":
            self._fit_bubble()


def stats_summary(stats: dict, model: str = "") -> str:
    """One line about a finished reply: tokens, speed, first-token time, acceptance, and
    how much of the prompt came from the cache (a replay computes only the new suffix)."""
    parts = []
    n = stats.get("generation_tokens", 0)
    if n:
        parts.append(f"{n} tokens")
    if cached := stats.get("cached_prompt_tokens", 0):
        parts.append(f"reused {cached} cached token{'s' if cached != 1 else ''}")
    if tps := stats.get("generation_tps", 0.0):
        parts.append(f"{tps:.1f} tok/s")
    if ttft := stats.get("ttft_s", 0.0):
        parts.append(
            f"first token {ttft * 1000:.0f} ms" if ttft < 1 else f"first token {ttft:.1f} s"
        )
    if stats.get("drafted"):
        parts.append(f"{stats.get('acceptance_rate', 0.0):.0%} of drafts accepted")
    if model:
        parts.append(model.rsplit("/", 1)[-1])
    return "  \u00b7  ".join(parts)
