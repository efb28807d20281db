"""Ready-to-paste client snippets for the local API, and the card that shows them.

``snippet(kind, base_url, key, model)`` is plain text; ``ConnectPanel`` shows the base
URLs, the key and a snippet for OpenAI's Python client, curl or Ollama clients, each
with a copy button. The key is shown masked unless the Serve page shows it; copying
always gives the real text. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.page_parts import ValueRow
from app.widgets import AutoHeightTextEdit, CopyButton, ElidedLabel

KINDS = {"python": "OpenAI Python", "curl": "curl", "ollama": "Ollama"}
PLACEHOLDER_MODEL = "MODEL"
MASK = "\u2022" * 12


def snippet(kind: str, base_url: str, key: str, model: str) -> str:
    """Client code for ``kind`` ("python", "curl" or "ollama") against ``base_url``."""
    model = model or PLACEHOLDER_MODEL
    message = '[{"role": "user", "content": "Hello!"}]'
    if kind == "python":
        return (
            "from openai import OpenAI\n\n"
            "client = OpenAI(\n"
            f'    base_url="{base_url}/v1",\n'
            f'    api_key="{key or "none"}",\n'
            ")\n"
            "reply = client.chat.completions.create(\n"
            f'    model="{model}",\n'
            f"    messages={message},\n"
            ")\n"
            "print(reply.choices[0].message.content)\n"
        )
    auth = f'  -H "Authorization: Bearer {key}" \\\n' if key else ""
    if kind == "curl":
        body = f'{{"model": "{model}", "messages": {message}}}'
        return (
            f"curl {base_url}/v1/chat/completions \\\n{auth}"
            '  -H "Content-Type: application/json" \\\n'
            f"  -d '{body}'\n"
        )
    headers = f', headers={{"Authorization": "Bearer {key}"}}' if key else ""
    body = f'{{"model": "{model}", "messages": {message}, "stream": false}}'
    return (
        "# Python: pip install ollama\n"
        "from ollama import Client\n\n"
        f'client = Client(host="{base_url}"{headers})\n'
        f'reply = client.chat(model="{model}", messages={message})\n'
        "print(reply.message.content)\n\n"
        f"# Or any Ollama client: set its server URL to {base_url}\n"
        f"curl {base_url}/api/chat \\\n{auth}  -d '{body}'\n"
    )


class ConnectPanel(QWidget):
    """Base URLs, key and snippets; ``set_endpoint`` keeps them current."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._base = ""
        self._key = ""
        self._model = ""
        self._show_key = False
        self.openai_url = ValueRow("OpenAI base URL", self)
        self.ollama_url = ValueRow("Ollama URL", self)
        self.key_row = ValueRow("API key", self)
        self.segments = QButtonGroup(self)
        self.buttons: dict[str, QToolButton] = {}
        seg = QHBoxLayout()
        seg.setSpacing(0)
        for i, (kind, label) in enumerate(KINDS.items()):
            b = QToolButton(self)
            b.setObjectName("SegButton")
            b.setText(label)
            b.setCheckable(True)
            b.setProperty("pos", "first" if i == 0 else "last" if i == len(KINDS) - 1 else "mid")
            self.segments.addButton(b)
            self.buttons[kind] = b
            seg.addWidget(b)
        seg.addStretch(1)
        self.copy_snippet = CopyButton(lambda: self.snippet(masked=False), "Copy snippet", self)
        seg.addWidget(self.copy_snippet)
        self.buttons["python"].setChecked(True)
        self.segments.buttonToggled.connect(lambda *_: self.refresh())
        self.code = AutoHeightTextEdit(self)
        self.code.setObjectName("CodeSnippet")
        self.model_note = QLabel(self)
        self.model_note.setObjectName("Note")
        self.model_note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        layout.addWidget(self.openai_url)
        layout.addWidget(self.ollama_url)
        layout.addWidget(self.key_row)
        layout.addSpacing(4)
        layout.addLayout(seg)
        layout.addWidget(self.code)
        layout.addWidget(self.model_note)
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self._on_theme_changed(theme.current())

    def kind(self) -> str:
        return next((k for k, b in self.buttons.items() if b.isChecked()), "python")

    def set_endpoint(self, base_url: str, key: str, model: str, show_key: bool) -> None:
        self._base, self._key, self._model, self._show_key = base_url, key, model, show_key
        self.refresh()

    def snippet(self, masked: bool = True) -> str:
        key = MASK if masked and self._key and not self._show_key else self._key
        return snippet(self.kind(), self._base, key, self._model)

    def refresh(self) -> None:
        self.openai_url.set_value(f"{self._base}/v1")
        self.ollama_url.set_value(self._base)
        if self._key:
            self.key_row.set_value(self._key if self._show_key else MASK, self._key)
        else:
            self.key_row.set_value("none (no key is asked for)", "")
        self.code.setPlainText(self.snippet())
        self.model_note.setText(
            "Model ids are listed under Model ids; any of them goes in \u201cmodel\u201d."
            if self._model
            else "No model is on this computer yet: download one on the Models page."
        )

    def _on_theme_changed(self, _pal: theme.Palette) -> None:
        self.code.setFont(theme.mono_font())


class ModelIdList(QWidget):
    """The model ids the API answers to, each with a copy button. ``set_ids`` takes
    (id, note) pairs; decoder forms (``MODEL<decoder>DECODER``) come with their note."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.ids: list[str] = []
        self.empty = QLabel(self)
        self.empty.setObjectName("Note")
        self.empty.setWordWrap(True)
        self._rows = QVBoxLayout()
        self._rows.setContentsMargins(0, 0, 0, 0)
        self._rows.setSpacing(0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.empty)
        layout.addLayout(self._rows)
        self.set_message("Reading the library\u2026")

    def set_message(self, text: str) -> None:
        """Show ``text`` instead of the list (reading, empty, or why it failed)."""
        self._clear()
        self.empty.setText(text)
        self.empty.show()

    def set_ids(self, items: list[tuple[str, str]]) -> None:
        self._clear()
        self.ids = [i for i, _ in items]
        if not items:
            self.set_message("No chat model is on this computer yet; the Models page gets one.")
            return
        self.empty.hide()
        for model_id, note in items:
            row = QWidget(self)
            row.setObjectName("IdRow")
            text = ElidedLabel(model_id, row)
            text.setObjectName("IdText")
            text.setToolTip(model_id)
            text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            text.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
            small = QLabel(note, row)
            small.setObjectName("Note")
            copy = CopyButton(lambda m=model_id: m, f"Copy {model_id}", row)
            hl = QHBoxLayout(row)
            hl.setContentsMargins(2, 5, 0, 5)
            hl.setSpacing(8)
            hl.addWidget(text, 1)
            hl.addWidget(small)
            hl.addWidget(copy)
            self._rows.addWidget(row)

    def _clear(self) -> None:
        self.ids = []
        while (item := self._rows.takeAt(0)) is not None:
            if w := item.widget():
                w.deleteLater()


__all__ = ["ConnectPanel", "ModelIdList", "snippet"]
