"""Per-pane inference controls: speculative decoder, thinking, sampling, limits, system prompt.

Controls a model cannot use are hidden rather than greyed out; the decoder section
says why a decoder is unavailable. Everything here runs on the GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.library.catalog import ModelEntry
from app.widgets import IconButton
from engine.decoder_catalog import LOOKUP, DecoderChoice
from engine.hub.progress import human_bytes
from engine.settings import (
    DEFAULT_MAX_LOOP_COUNT,
    MAX_DRAFT_TOKENS,
    DecoderSettings,
    SamplingSettings,
)

THINKING_LABELS = {"off": "Off", "on": "Think", "max": "Max"}

KIND_TAGS = {  # the decoder list's tag per DecoderChoice.kind
    "mtp": "MTP head", "dflash": "DFlash block drafter", "dspark": "DSpark block drafter",
    "eagle3": "EAGLE-3 head",
    "assistant": "Gemma 4 assistant", "draft": "draft model", "lookup": "n-gram",
}  # fmt: skip
KIND_CHIPS = {
    "mtp": "MTP", "dflash": "DFlash", "dspark": "DSpark", "eagle3": "EAGLE-3",
    "assistant": "Assistant",
    "draft": "Draft", "lookup": "Lookup",
}  # fmt: skip


@dataclass(frozen=True)
class PaneSettings:
    """Everything a pane sends with a request besides the model and the messages."""

    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    decoder: DecoderSettings = field(default_factory=DecoderSettings)
    thinking: str = "off"
    system_prompt: str = ""

    def to_dict(self) -> dict:
        return {
            "sampling": self.sampling.to_dict(),
            "decoder": {
                "decoder": self.decoder.decoder,
                "draft_tokens": self.decoder.draft_tokens,
                "adaptive": self.decoder.adaptive,
            },
            "thinking": self.thinking,
            "system_prompt": self.system_prompt,
        }


_defaults = PaneSettings(SamplingSettings(max_loop_count=DEFAULT_MAX_LOOP_COUNT))


def set_defaults(thinking: str, max_tokens: int, max_loop_count: int) -> None:
    """What new panes and "Reset to defaults" start with (the app's Settings page)."""
    global _defaults
    sampling = SamplingSettings(max_tokens=max_tokens, max_loop_count=max_loop_count)
    _defaults = PaneSettings(sampling.validated(), thinking=thinking)


def defaults() -> PaneSettings:
    return _defaults


def _choice_note(choice: DecoderChoice) -> str:
    """Where a decoder comes from and what was checked, e.g. 'Shipped with Lookahead
    (4.7 MB) · trained MTP head: llama family, ...'."""
    where = choice.origin_label
    if where and choice.size_bytes:
        where += f" ({human_bytes(choice.size_bytes)})"
    head = where[:1].upper() + where[1:]
    return f"{head} \u00b7 {choice.reason}" if head else choice.reason


def _section(title: str, parent: QWidget) -> QLabel:
    label = QLabel(title.upper(), parent)
    label.setObjectName("SectionTitle")
    return label


def _spin(parent, low, high, step, decimals=None, special=""):
    box = QDoubleSpinBox(parent) if decimals is not None else QSpinBox(parent)
    if decimals is not None:
        box.setDecimals(decimals)
    box.setRange(low, high)
    box.setSingleStep(step)
    if special:
        box.setSpecialValueText(special)  # shown at the minimum, e.g. "off", "random"
    box.setAlignment(Qt.AlignmentFlag.AlignRight)
    # The stylesheet hides the step buttons (arrow keys and the wheel still step);
    # NoButtons would collapse the text field to 1 px under a styled QSpinBox in Qt 6.12.
    box.lineEdit().setTextMargins(6, 0, 6, 0)
    box.setMinimumWidth(84)
    box.setMaximumWidth(120)
    return box


class InferenceControls(QWidget):
    """The drawer's content. ``settings()`` reads it; ``set_model`` adapts it."""

    sig_changed = Signal()
    """Any setting changed."""
    sig_close_requested = Signal()
    """The user closed the drawer."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("Drawer")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self._thinking_modes: tuple[str, ...] = ("off",)
        self._chosen_decoder: str | None = None  # the user's explicit pick, kept across models
        self._wanted_thinking = "off"  # kept across models that cannot think
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        head = QHBoxLayout()
        head.setContentsMargins(16, 10, 8, 6)
        title = QLabel("Inference", self)
        title.setObjectName("DrawerTitle")
        close = IconButton("close", "Hide inference controls", self, 16)
        close.clicked.connect(self.sig_close_requested)
        head.addWidget(title)
        head.addStretch(1)
        head.addWidget(close)
        outer.addLayout(head)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        content = QWidget(scroll)
        content.setObjectName("DrawerBody")
        scroll.setWidget(content)
        outer.addWidget(scroll, 1)
        self._layout = QVBoxLayout(content)
        self._layout.setContentsMargins(16, 4, 16, 16)
        self._layout.setSpacing(8)
        self._build_decoder(content)
        self._build_thinking(content)
        self._build_sampling(content)
        self._build_system(content)
        self._layout.addStretch(1)
        reset = QPushButton("Reset to defaults", content)
        reset.clicked.connect(self.reset)
        self._layout.addWidget(reset)
        self.set_model(None)
        self.reset()

    # ------------------------------------------------------------ building

    def _build_decoder(self, parent: QWidget) -> None:
        self._layout.addWidget(_section("Speculative decoding", parent))
        self.decoder_enabled = QCheckBox("Draft tokens ahead", parent)
        self.decoder_enabled.setToolTip(
            "A drafter proposes tokens that the model checks in one pass. "
            "The output is the same; only the speed changes."
        )
        self.decoder_combo = QComboBox(parent)
        # Long decoder names must not widen the drawer.
        self.decoder_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.decoder_combo.setMinimumContentsLength(8)
        self.draft_tokens = _spin(parent, 0, MAX_DRAFT_TOKENS, 1, special="adaptive")
        self.draft_tokens.setToolTip("Drafts per step; adaptive tunes it from the acceptance rate")
        self.decoder_note = QLabel(parent)
        self.decoder_note.setObjectName("Note")
        self.decoder_note.setWordWrap(True)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Decoder", self.decoder_combo)
        form.addRow("Draft tokens", self.draft_tokens)
        self._layout.addWidget(self.decoder_enabled)
        self._layout.addLayout(form)
        self._layout.addWidget(self.decoder_note)
        self.decoder_enabled.toggled.connect(self._on_decoder_toggled)
        self.decoder_combo.currentIndexChanged.connect(self._on_decoder_picked)
        self.decoder_combo.activated.connect(self._on_decoder_activated)
        self.draft_tokens.valueChanged.connect(self.sig_changed)

    def _build_thinking(self, parent: QWidget) -> None:
        self.thinking_section = QWidget(parent)
        layout = QVBoxLayout(self.thinking_section)
        layout.setContentsMargins(0, 8, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(_section("Thinking", self.thinking_section))
        row = QHBoxLayout()
        row.setSpacing(0)
        self.thinking_group = QButtonGroup(self)
        self.thinking_buttons: dict[str, QToolButton] = {}
        for i, mode in enumerate(("off", "on", "max")):
            b = QToolButton(self.thinking_section)
            b.setObjectName("SegButton")
            b.setText(THINKING_LABELS[mode])
            b.setCheckable(True)
            b.setProperty("pos", "first" if i == 0 else "last" if mode == "max" else "mid")
            self.thinking_group.addButton(b)
            self.thinking_buttons[mode] = b
            row.addWidget(b)
        row.addStretch(1)
        self.thinking_buttons["off"].setChecked(True)
        self.thinking_group.buttonToggled.connect(lambda *_: self.sig_changed.emit())
        self.thinking_group.buttonClicked.connect(self._on_thinking_clicked)
        layout.addLayout(row)
        self._layout.addWidget(self.thinking_section)

    def _build_sampling(self, parent: QWidget) -> None:
        self._layout.addSpacing(8)
        self._layout.addWidget(_section("Sampling", parent))
        self.temperature = _spin(parent, 0.0, 2.0, 0.05, 2)
        self.temperature.setSpecialValueText("0 (greedy)")
        self.top_p = _spin(parent, 0.01, 1.0, 0.05, 2)
        self.top_k = _spin(parent, 0, 1000, 5, special="off")
        self.min_p = _spin(parent, 0.0, 1.0, 0.01, 2, special="off")
        self.repetition_penalty = _spin(parent, 1.0, 2.0, 0.05, 2, special="off")
        self.seed = _spin(parent, -1, 2**31 - 1, 1, special="random")
        self.max_tokens = _spin(parent, 1, 32768, 128)
        self.max_loop_count = _spin(parent, 0, 100, 1, special="off")
        self.max_loop_count.setToolTip("Stop when the same passage repeats this many times")
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setVerticalSpacing(6)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for label, box in (
            ("Temperature", self.temperature),
            ("Top-p", self.top_p),
            ("Top-k", self.top_k),
            ("Min-p", self.min_p),
            ("Repetition penalty", self.repetition_penalty),
            ("Seed", self.seed),
            ("Max tokens", self.max_tokens),
            ("Max loop count", self.max_loop_count),
        ):
            form.addRow(label, box)
            box.valueChanged.connect(self.sig_changed)
        self._layout.addLayout(form)

    def _build_system(self, parent: QWidget) -> None:
        self._layout.addSpacing(8)
        self._layout.addWidget(_section("System prompt", parent))
        self.system_prompt = QPlainTextEdit(parent)
        self.system_prompt.setPlaceholderText("You are a helpful assistant.")
        self.system_prompt.setFixedHeight(84)
        self.system_prompt.textChanged.connect(self.sig_changed)
        self._layout.addWidget(self.system_prompt)

    # ------------------------------------------------------------ model adaptation

    def set_model(self, entry: ModelEntry | None) -> None:
        """Offer the decoders and thinking modes this model supports."""
        options = entry.decoders if entry else (LOOKUP,)
        self.decoder_combo.blockSignals(True)
        self.decoder_combo.clear()
        for opt in options:
            tag = KIND_TAGS.get(opt.kind, opt.kind)
            self.decoder_combo.addItem(f"{opt.label}  \u00b7  {tag}", opt)
        # Unless the user picked one, the pane runs what `auto` would (engine's choice).
        chosen = self._chosen_decoder
        default = entry.default_decoder.value if entry else LOOKUP.value
        index = next((i for i, o in enumerate(options) if o.value == chosen), None)
        if index is None:
            index = next(i for i, o in enumerate(options) if o.value in (default, LOOKUP.value))
        self.decoder_combo.setCurrentIndex(index)
        self.decoder_combo.blockSignals(False)
        self._unavailable = entry.unavailable if entry else ()
        self._thinking_modes = entry.thinking_modes if entry else ("off",)
        for mode, button in self.thinking_buttons.items():
            button.setVisible(mode in self._thinking_modes)
        wanted = self._wanted_thinking
        self.thinking_buttons[wanted if wanted in self._thinking_modes else "off"].setChecked(True)
        self.thinking_section.setVisible(len(self._thinking_modes) > 1)
        self._refresh_decoder_note()
        self.sig_changed.emit()

    def _on_thinking_clicked(self, button: QToolButton) -> None:
        self._wanted_thinking = self.thinking()

    def _on_decoder_toggled(self, on: bool) -> None:
        self.decoder_combo.setEnabled(on)
        self.draft_tokens.setEnabled(on)
        self.sig_changed.emit()

    def _on_decoder_activated(self, _index: int) -> None:
        opt: DecoderChoice | None = self.decoder_combo.currentData()
        self._chosen_decoder = opt.value if opt else None

    def _on_decoder_picked(self, _index: int) -> None:
        self._refresh_decoder_note()
        self.sig_changed.emit()

    def _refresh_decoder_note(self) -> None:
        opt: DecoderChoice | None = self.decoder_combo.currentData()
        lines = [_choice_note(opt)] if opt else []
        if all(o.kind == "lookup" for o in self._options()):
            lines.append("No MTP head or draft model for this model is installed.")
        lines += [f"Not usable: {why}" for why in self._unavailable]
        self.decoder_note.setText("\n".join(lines))
        self.decoder_note.setVisible(bool(lines))
        self._on_decoder_toggled_state()

    def _on_decoder_toggled_state(self) -> None:
        on = self.decoder_enabled.isChecked()
        self.decoder_combo.setEnabled(on)
        self.draft_tokens.setEnabled(on)

    def _options(self) -> list[DecoderChoice]:
        return [self.decoder_combo.itemData(i) for i in range(self.decoder_combo.count())]

    # ------------------------------------------------------------ reading and writing

    def thinking(self) -> str:
        for mode, button in self.thinking_buttons.items():
            if button.isChecked():
                return mode
        return "off"

    def decoder_label(self) -> str:
        """Short text for the pane's decoder chip, e.g. 'MTP · adaptive' or 'Decoder off'."""
        opt: DecoderChoice | None = self.decoder_combo.currentData()
        if not self.decoder_enabled.isChecked() or opt is None:
            return "Decoder off"
        k = self.draft_tokens.value()
        kind = KIND_CHIPS.get(opt.kind, opt.kind)
        return f"{kind} \u00b7 {k} drafts" if k else f"{kind} \u00b7 adaptive"

    def settings(self) -> PaneSettings:
        opt: DecoderChoice | None = self.decoder_combo.currentData()
        enabled = self.decoder_enabled.isChecked() and opt is not None
        k = self.draft_tokens.value()
        decoder = DecoderSettings(
            decoder=opt.value if enabled and opt else "none",
            draft_tokens=k or None,
            adaptive=k == 0,
        )
        seed = self.seed.value()
        sampling = SamplingSettings(
            temperature=round(self.temperature.value(), 4),
            top_p=round(self.top_p.value(), 4),
            top_k=self.top_k.value(),
            min_p=round(self.min_p.value(), 4),
            repetition_penalty=round(self.repetition_penalty.value(), 4),
            seed=None if seed < 0 else seed,
            max_tokens=self.max_tokens.value(),
            max_loop_count=self.max_loop_count.value(),
        )
        return PaneSettings(sampling, decoder, self.thinking(), self.system_prompt.toPlainText())

    def set_settings(self, s: PaneSettings) -> None:
        sp = s.sampling
        self.temperature.setValue(sp.temperature)
        self.top_p.setValue(sp.top_p)
        self.top_k.setValue(sp.top_k)
        self.min_p.setValue(sp.min_p)
        self.repetition_penalty.setValue(sp.repetition_penalty)
        self.seed.setValue(-1 if sp.seed is None else sp.seed)
        self.max_tokens.setValue(sp.max_tokens)
        self.max_loop_count.setValue(sp.max_loop_count)
        self.decoder_enabled.setChecked(s.decoder.enabled)
        for i, opt in enumerate(self._options()):
            if opt.value == s.decoder.decoder:
                self.decoder_combo.setCurrentIndex(i)
                self._chosen_decoder = opt.value
        self.draft_tokens.setValue(s.decoder.draft_tokens or 0)
        self._wanted_thinking = s.thinking
        mode = s.thinking if s.thinking in self._thinking_modes else "off"
        self.thinking_buttons[mode].setChecked(True)
        self.system_prompt.setPlainText(s.system_prompt)
        self._on_decoder_toggled_state()

    def reset(self) -> None:
        self.set_settings(_defaults)

    def set_decoder_enabled(self, on: bool) -> None:
        self.decoder_enabled.setChecked(on)


__all__ = ["InferenceControls", "PaneSettings", "defaults", "set_defaults"]
