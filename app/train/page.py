"""The Train section: make a drafter for a model from the user's own chats.

Left, a form: the chat model; the data (your conversations with it, previewed and
counted; built-in prompts it answers first; folders of text or code); the drafter
kind and size; how long to train; an estimate of time and disk; Start. Right, the
training runs (app.train.job_card), newest first.

Each run is an engine training job (engine/mtp_train/job.py) in its own process, so
the app stays responsive and a run outlives the app; the page only reads the job
folders (a timer, every second while shown and every few seconds otherwise) and
writes their requests. When a run finishes, ``sig_finished`` lets the window say so
and refresh the pane pickers, where the new decoder then pairs by itself. GUI thread.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.library.catalog import ModelCatalog, ModelEntry
from app.page_parts import Banner, Card, page_qss, page_title
from app.tasks import run_blocking
from app.train.job_card import JobCard
from engine.mtp_train import job as J
from engine.mtp_train.chats import ChatSummary, summarize
from engine.storage import ConversationStore

BUILTIN_PROMPTS = 316  # engine/mtp_train/prompts.py
LENGTHS = (("Quick", 150), ("Standard", 400), ("Long", 1200))
VOCABS = (("Small: 4,096 draft tokens", 4096), ("Standard: 8,192", 8192), ("Full vocabulary", 0))
POLL_SHOWN_MS, POLL_HIDDEN_MS = 1000, 4000


@dataclass(frozen=True)
class Plan:
    """What Start would run, with its estimate; ``problem`` says why it cannot."""

    spec: J.JobSpec | None
    minutes: float = 0.0
    disk_bytes: int = 0
    problem: str = ""


class TrainPage(QWidget):
    sig_finished = Signal(object)
    """A run finished (its engine Job) while the app watched: say so, rescan models."""
    sig_compare = Signal(str, str)
    """(model id, decoder folder): open two panes, decoder off and this one."""
    sig_library_changed = Signal()
    """A decoder was deleted from here."""

    def __init__(
        self, store: ConversationStore | None, catalog: ModelCatalog, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.store = store
        self.catalog = catalog
        self.cards: dict[Path, JobCard] = {}
        self._states: dict[Path, str] = {}
        self._summary = ChatSummary()
        self._build()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.poll)
        self.timer.start(POLL_HIDDEN_MS)
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self._on_theme_changed(theme.current())
        self.refresh_models()
        self.poll()

    # ------------------------------------------------------------ layout

    def _build(self) -> None:
        title, subtitle = page_title(
            "Train",
            "Make a drafter for a model from what you actually ask it. Lookahead trains an "
            "MTP head on your chats with the model, in the background (it keeps going when "
            "you close the app), and adds it to the model\u2019s decoders.",
            self,
        )
        form_card = Card("New drafter", parent=self)
        self.form_card = form_card
        self.model = QComboBox(form_card)
        self.model.currentIndexChanged.connect(self._on_model_changed)

        self.use_chats = QCheckBox("Your chats with this model", form_card)
        self.use_chats.setChecked(True)
        self.chats_note = QLabel(form_card)
        self.chats_note.setObjectName("Note")
        self.preview_button = QPushButton("Preview", form_card)
        self.preview_button.setCheckable(True)
        self.preview_button.toggled.connect(self._on_preview_toggled)
        self.preview = QListWidget(form_card)
        self.preview.setObjectName("TrainPreview")
        self.preview.setMaximumHeight(150)
        self.preview.hide()
        chats_row = QHBoxLayout()
        chats_row.addWidget(self.use_chats)
        chats_row.addWidget(self.chats_note, 1)
        chats_row.addWidget(self.preview_button)

        self.use_prompts = QCheckBox("Built-in prompts the model answers first", form_card)
        self.prompts = QSpinBox(form_card)
        self.prompts.setRange(1, BUILTIN_PROMPTS)
        self.prompts.setValue(48)
        self.prompts.setSuffix(" prompts")
        self.prompts.setEnabled(False)
        self.use_prompts.toggled.connect(self.prompts.setEnabled)
        prompts_row = QHBoxLayout()
        prompts_row.addWidget(self.use_prompts, 1)
        prompts_row.addWidget(self.prompts)

        self.folders = QListWidget(form_card)
        self.folders.setMaximumHeight(70)
        self.folders.hide()
        self.add_folder = QPushButton("Add a folder of text or code\u2026", form_card)
        self.add_folder.clicked.connect(self._on_add_folder)
        self.remove_folder = QPushButton("Remove", form_card)
        self.remove_folder.clicked.connect(self._on_remove_folder)
        self.remove_folder.hide()
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.add_folder)
        folder_row.addWidget(self.remove_folder)
        folder_row.addStretch(1)

        self.kind = QComboBox(form_card)
        self.kind.addItem("MTP head \u00b7 one block of the model\u2019s own kind", "mtp")
        self.vocab = QComboBox(form_card)
        for label, size in VOCABS:
            self.vocab.addItem(label, size)
        self.vocab.setCurrentIndex(1)
        self.length = QComboBox(form_card)
        for label, steps in LENGTHS:
            self.length.addItem(f"{label}: {steps:,} steps", steps)
        self.length.setCurrentIndex(1)
        self.retrain = QCheckBox("Continue from the drafter trained before", form_card)
        self.retrain.setChecked(True)
        self.retrain.hide()

        form = QFormLayout()
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(10)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        form.addRow(self._field("Model"), self.model)
        form.addRow(self._field("Drafter"), self.kind)
        form.addRow(self._field("Size"), self.vocab)
        form.addRow(self._field("Length"), self.length)
        data_label = QLabel("Training text", form_card)
        data_label.setObjectName("FieldLabel")

        self.estimate = QLabel(form_card)
        self.estimate.setObjectName("Note")
        self.estimate.setWordWrap(True)
        self.banner = Banner(form_card)
        self.start_button = QPushButton("Start training", form_card)
        self.start_button.setObjectName("PrimaryButton")
        self.start_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.start_button.clicked.connect(self.start)
        start_row = QHBoxLayout()
        start_row.addWidget(self.estimate, 1)
        start_row.addWidget(self.start_button)
        body = form_card.body
        body.addLayout(form)
        body.addWidget(data_label)
        body.addLayout(chats_row)
        body.addWidget(self.preview)
        body.addLayout(prompts_row)
        body.addWidget(self.folders)
        body.addLayout(folder_row)
        body.addWidget(self.retrain)
        body.addWidget(self.banner)
        body.addLayout(start_row)
        for w in (self.use_chats, self.use_prompts, self.retrain):
            w.toggled.connect(self._refresh_plan)
        for w in (self.vocab, self.length):
            w.currentIndexChanged.connect(self._refresh_plan)
        self.prompts.valueChanged.connect(self._refresh_plan)

        self.runs_card = Card("Training runs", parent=self)
        self.empty = QLabel(
            "No training runs yet. Pick a model on the left and press Start training.",
            self.runs_card,
        )
        self.empty.setObjectName("Note")
        self.empty.setWordWrap(True)
        self.runs = QVBoxLayout()
        self.runs.setSpacing(12)
        self.runs_card.body.addWidget(self.empty)
        self.runs_card.body.addLayout(self.runs)
        self.runs_card.body.addStretch(1)

        columns = QHBoxLayout()
        columns.setSpacing(14)
        left = QVBoxLayout()
        left.addWidget(form_card)
        left.addStretch(1)
        form_card.setMinimumWidth(420)
        form_card.setMaximumWidth(560)
        columns.addLayout(left, 0)
        self.runs_card.setMinimumWidth(460)
        columns.addWidget(self.runs_card, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(6)
        layout.addWidget(title)
        layout.addWidget(subtitle)
        layout.addSpacing(6)
        layout.addLayout(columns, 1)

    def _field(self, text: str) -> QLabel:
        label = QLabel(text, self)
        label.setObjectName("FieldLabel")
        return label

    # ------------------------------------------------------------ the form

    def refresh_models(self) -> None:
        """The chat models of the library (after a download, delete or finished run)."""
        current = self.model.currentData()
        self.model.blockSignals(True)
        self.model.clear()
        for entry in self.catalog.models():
            self.model.addItem(entry.label, entry.id)
        ids = [self.model.itemData(i) for i in range(self.model.count())]
        self.model.setCurrentIndex(ids.index(current) if current in ids else 0)
        self.model.blockSignals(False)
        self._on_model_changed()

    def entry(self) -> ModelEntry | None:
        model_id = self.model.currentData()
        return self.catalog.find(model_id) if model_id else None

    def _on_model_changed(self, _index: int = 0) -> None:
        entry = self.entry()
        self._summary = ChatSummary()
        if entry is not None and self.store is not None:
            self._summary = summarize(self.store, entry.id)
        s = self._summary
        if s.replies:
            self.chats_note.setText(
                f"{s.conversations} {'chat' if s.conversations == 1 else 'chats'} \u00b7 "
                f"{s.replies} {'reply' if s.replies == 1 else 'replies'} \u00b7 "
                f"{s.tokens:,} tokens"
            )
        else:
            self.chats_note.setText("none yet \u2014 chat with it first, or add other text")
        self.preview_button.setEnabled(bool(s.replies))
        self.preview.clear()
        self.preview.addItems(list(s.lines))
        self.use_chats.setEnabled(bool(s.replies))
        self.use_chats.setChecked(bool(s.replies))
        if not s.replies:
            self.use_prompts.setChecked(True)
        earlier = entry is not None and J.decoder_folder(entry.id).is_dir()
        self.retrain.setVisible(earlier)
        self._refresh_plan()

    def _on_preview_toggled(self, on: bool) -> None:
        self.preview.setVisible(on)

    def _on_add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A folder of text or code files")
        if folder:
            self.add_data_folder(folder)

    def add_data_folder(self, folder: str) -> None:
        self.folders.addItem(folder)
        self.folders.show()
        self.remove_folder.show()
        self._refresh_plan()

    def _on_remove_folder(self) -> None:
        for item in self.folders.selectedItems() or [self.folders.item(self.folders.count() - 1)]:
            self.folders.takeItem(self.folders.row(item))
        self.folders.setVisible(self.folders.count() > 0)
        self.remove_folder.setVisible(self.folders.count() > 0)
        self._refresh_plan()

    def plan(self) -> Plan:
        """The job the form describes, or why there is none."""
        entry = self.entry()
        if entry is None:
            return Plan(None, problem="Download or import a chat model first (Models).")
        try:
            from engine.library import read_config

            why_not = J.trainable(Path(entry.path), read_config(Path(entry.path)))
        except Exception as e:  # an unreadable model folder is a reason, not a crash
            why_not = f"its folder cannot be read ({e})"
        if why_not:
            return Plan(None, problem=f"Lookahead cannot train a drafter for {entry.label}: {why_not}")  # fmt: skip
        folders = [self.folders.item(i).text() for i in range(self.folders.count())]
        chats = self.use_chats.isChecked() and self._summary.replies > 0
        prompts = self.prompts.value() if self.use_prompts.isChecked() else 0
        if not (chats or prompts or folders):
            return Plan(None, problem="Choose some training text: your chats, prompts or a folder.")  # fmt: skip
        steps = int(self.length.currentData())
        out = J.decoder_folder(entry.id)
        train = {"steps": steps, "draft_vocab": int(self.vocab.currentData()), "batch": 4}
        if self.retrain.isVisible() and self.retrain.isChecked():
            train["init"] = str(out)
        tokens = (self._summary.tokens if chats else 0) + prompts * (256 // 2 + 40)
        tokens += 60_000 * len(folders)  # files are read up to a budget; a rough share
        if not folders and tokens < J.MIN_TOKENS:
            return Plan(
                None,
                problem=f"Your chats with {entry.label} hold {tokens:,} tokens; training needs "
                f"at least {J.MIN_TOKENS:,}. Add built-in prompts or a folder.",
            )
        hidden, params = _dims(Path(entry.path))
        est = J.estimate(tokens, hidden, params, steps, 4 * 256)
        where = "your chats" if chats else "built-in prompts" if prompts else "your files"
        spec = J.JobSpec(
            model=entry.path,
            out=str(out),
            data=J.DataChoice(
                chats_of=entry.id if chats else "",
                database=str(self.store.path) if chats and self.store else "",
                builtin_prompts=prompts,
                folders=folders,
            ),
            train=train,
            title=f"{entry.label} \u00b7 from {where}",
        )
        return Plan(spec, est["minutes"], int(est["disk_bytes"]))

    def _refresh_plan(self, *_: object) -> None:
        plan = self.plan()
        self.start_button.setEnabled(plan.spec is not None and not self._active_for(plan))
        if plan.spec is None:
            self.estimate.setText("")
            self.banner.show_message(plan.problem, "info")
            return
        self.banner.show_message("")
        busy = " A run for this model is in progress." if self._active_for(plan) else ""
        self.estimate.setText(
            f"About {max(plan.minutes, 1):,.0f} min on this computer \u00b7 "
            f"{plan.disk_bytes / 1e6:,.0f} MB of disk while training.{busy}"
        )

    def _active_for(self, plan: Plan) -> bool:
        if plan.spec is None:
            return False
        return any(
            c.job.spec.out == plan.spec.out and c.job.state in J.ACTIVE for c in self.cards.values()
        )

    def start(self) -> J.Job | None:
        """Create the job the form describes and start its process."""
        plan = self.plan()
        if plan.spec is None:
            self.banner.show_message(plan.problem, "warning")
            return None
        try:
            folder = J.create_job(plan.spec)
            J.launch(folder)
        except (OSError, J.JobError) as e:
            self.banner.show_message(f"Could not start training: {e}", "danger")
            return None
        self.poll()
        return J.load_job(folder)

    # ------------------------------------------------------------ the runs

    def poll(self) -> None:
        """Read every job folder: add, update or drop cards; notice finished runs."""
        try:
            jobs = J.list_jobs()
        except OSError:
            return
        seen = set()
        for job in jobs:
            seen.add(job.folder)
            card = self.cards.get(job.folder)
            if card is None:
                card = JobCard(job, self.runs_card)
                card.sig_action.connect(self._on_action)
                self.cards[job.folder] = card
                self.runs.insertWidget(0, card)
                # Sort newest first: folders are named by their start time.
                for i, folder in enumerate(sorted(self.cards, reverse=True)):
                    self.runs.insertWidget(i, self.cards[folder])
            events, card.offset = J.read_events(job.folder, card.offset)
            card.update_job(job, events)
            before = self._states.get(job.folder)
            if job.state == "done" and before is not None and before != "done":
                self.sig_finished.emit(job)
            self._states[job.folder] = job.state
        for folder in set(self.cards) - seen:
            self.cards.pop(folder).deleteLater()
            self._states.pop(folder, None)
        self.empty.setVisible(not self.cards)
        self.start_button.setEnabled(
            self.plan().spec is not None and not self._active_for(self.plan())
        )

    def _on_action(self, action: str, job: J.Job) -> None:
        try:
            if action == "pause":
                J.request_stop(job.folder, "pause")
            elif action == "cancel":
                J.request_stop(job.folder, "cancel")
            elif action == "resume":
                J.launch(job.folder)
            elif action == "remove":
                J.remove_job(job.folder)
            elif action == "compare":
                model = self._model_id_of(job)
                self.sig_compare.emit(model, str(job.status.get("result", {}).get("decoder", "")))
            elif action == "delete":
                self._delete_decoder(job)
        except (OSError, J.JobError) as e:
            self.banner.show_message(str(e), "danger")
        self.poll()

    def _model_id_of(self, job: J.Job) -> str:
        for entry in self.catalog.models():
            if entry.path == job.spec.model or entry.id == job.spec.model:
                return entry.id
        return job.spec.model

    def _delete_decoder(self, job: J.Job) -> None:
        from engine.library import delete_model

        name = job.status.get("result", {}).get("name", "")

        def done(_removed: object) -> None:
            with contextlib.suppress(OSError, J.JobError):
                J.remove_job(job.folder)
            self.sig_library_changed.emit()
            self.poll()

        def failed(e: object) -> None:
            self.banner.show_message(f"Could not delete {name}: {e}", "danger")

        run_blocking(lambda: delete_model(name), done, failed)

    # ------------------------------------------------------------ Qt

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.timer.setInterval(POLL_SHOWN_MS)
        self._on_model_changed()  # new chats since the page was last shown
        self.poll()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self.timer.setInterval(POLL_HIDDEN_MS)

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        self.setStyleSheet(page_qss(pal))


def _dims(path: Path) -> tuple[int, int]:
    """(hidden size, parameters) of a model folder, roughly, from config and file sizes."""
    from engine.library import read_config

    try:
        cfg = read_config(path)
    except Exception:
        cfg = {}
    cfg = {**cfg, **(cfg.get("text_config") or {})}
    size = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    return int(cfg.get("hidden_size") or 1024), max(size // 2, 1)


__all__ = ["TrainPage"]
