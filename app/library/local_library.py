"""The local library: models on this computer, their decoders, unfinished downloads.

Scanning (``engine.library``) reads config and tokenizer files and sizes folders, and
deleting removes gigabytes, so both run on worker threads; rows are rebuilt on the GUI
thread from a ``LibrarySnapshot``. Decoders are nested under each model they pair with
(or would, for the same family, with the reason they do not); decoders that pair with
nothing here are listed apart with the closest miss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.library.downloads import DownloadManager
from app.library.model_rows import DownloadAction, join_meta, models_qss
from app.tasks import run_blocking
from app.widgets import Badge, ElidedLabel, EmptyState, IconButton, ThemedIcon
from engine.decoder_catalog import DecoderMatch
from engine.hub import DownloadProgress, PendingDownload
from engine.hub.progress import human_bytes
from engine.library import LocalModel


@dataclass(frozen=True)
class LibrarySnapshot:
    """Everything the library view shows, read in one go on a worker thread."""

    models: tuple[LocalModel, ...] = ()
    matches: tuple[DecoderMatch, ...] = ()
    pending: tuple[PendingDownload, ...] = ()
    unpaired: dict[str, str] = field(default_factory=dict)  # decoder id -> why not

    @property
    def chat_models(self) -> list[LocalModel]:
        return [m for m in self.models if not m.is_decoder]

    @property
    def decoders(self) -> list[LocalModel]:
        return [m for m in self.models if m.is_decoder]

    @property
    def size_bytes(self) -> int:
        return sum(m.size_bytes for m in self.models)

    def under(self, target: LocalModel) -> list[DecoderMatch]:
        """Decoders to show under ``target``: those that pair, and same-family misses."""
        from engine.decoder_catalog import same_family

        return [
            x
            for x in self.matches
            if x.target == target and (x.pairing.ok or same_family(x.decoder, target))
        ]

    def partials(self) -> dict[str, PendingDownload]:
        return {p.repo_id: p for p in self.pending}


def scan_library() -> LibrarySnapshot:
    """Blocking: list models, pair decoders, find unfinished downloads (worker thread)."""
    from engine.decoder_catalog import decoder_matches, unpaired_reason
    from engine.hub import pending_downloads
    from engine.library import local_models

    models = local_models()
    matches = decoder_matches(models)
    unpaired = {d.id: unpaired_reason(d, matches) for d in models if d.is_decoder}
    return LibrarySnapshot(
        tuple(models),
        tuple(matches),
        tuple(pending_downloads()),
        {k: v for k, v in unpaired.items() if v},
    )


def model_meta(m: LocalModel) -> str:
    parts = [m.model_type] if m.model_type and m.model_type != "unknown" else []
    if m.quantization:
        parts.append(m.quantization)
    parts.append(f"{human_bytes(m.size_bytes)} on disk")
    where = {"hub": "from the hub", "imported": "imported", "bundled": "shipped with Lookahead"}
    parts.append(where.get(m.source, m.source))
    return join_meta(parts)


def decoder_badge(m: LocalModel) -> Badge:
    if m.decoder_kind == "draft":
        return Badge("Draft model", "draft", "Drafts tokens for a bigger model")
    if m.decoder_kind == "dflash":
        return Badge(
            "DFlash", "decoder", "Block drafter: up to 16 tokens a step from the model's layers"
        )
    if m.decoder_kind == "dspark":
        return Badge(
            "DSpark", "decoder", "Block drafter with a Markov head: a block a step from the layers"
        )
    if m.decoder_kind == "eagle3":
        return Badge("EAGLE-3", "decoder", "EAGLE-3 head: drafts from three of the model's layers")
    if m.decoder_kind == "assistant":
        return Badge("Assistant", "decoder", "Gemma 4 assistant drafter: reads the model's K/V")
    return Badge("MTP decoder", "decoder", f"MTP heads ({m.decoder_format or 'unknown format'})")


class LibraryRow(QFrame):
    """A chat model (with its decoders nested below) or a decoder on its own."""

    sig_delete = Signal(object)
    """Delete was clicked for this LocalModel (the library confirms first)."""

    def __init__(
        self,
        model: LocalModel,
        decoders: list[DecoderMatch] | None = None,
        unpaired: str = "",
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.model = model
        self.setObjectName("ModelRow")
        self.name = ElidedLabel(model.id, self)
        self.name.setObjectName("ModelName")
        self.name.setToolTip(f"{model.id}\n{model.path}")
        self.meta = QLabel(model_meta(model), self)
        self.meta.setObjectName("ModelMeta")
        self.meta.setWordWrap(True)
        badges: list[Badge] = []
        if model.is_decoder:
            badges.append(decoder_badge(model))
        elif model.mtp == "weights":
            badges.append(Badge("MTP", "mtp", "Carries its own MTP heads: speculation built in"))
        elif model.dspark:
            badges.append(Badge("DSpark", "mtp", "Carries its own DSpark drafter: blocks built in"))
        self.folder_button = IconButton("folder", "Show the folder", self, 16)
        self.folder_button.clicked.connect(self._on_folder_clicked)
        self.delete_button = IconButton("trash", f"Delete {model.id}", self, 16)
        self.delete_button.clicked.connect(lambda: self.sig_delete.emit(self.model))
        self.delete_button.setVisible(model.source != "bundled")  # part of the app
        self.status = QLabel(self)
        self.status.setObjectName("RowMessage")
        self.status.setWordWrap(True)
        self.status.hide()

        title = QHBoxLayout()
        title.setSpacing(6)
        title.addWidget(self.name)
        for b in badges:
            title.addWidget(b)
        title.addStretch(1)
        title.addWidget(self.folder_button)
        title.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 10, 10)
        layout.setSpacing(3)
        layout.addLayout(title)
        layout.addWidget(self.meta)
        if unpaired:
            self.meta.setText(self.meta.text() + f"\nPairs with nothing here: {unpaired}")
        self.decoder_rows: list[DecoderLine] = []
        if decoders:
            block = QFrame(self)
            block.setObjectName("DecoderBlock")
            bl = QVBoxLayout(block)
            bl.setContentsMargins(10, 6, 6, 6)
            bl.setSpacing(4)
            for match in decoders:
                line = DecoderLine(match, block)
                line.sig_delete.connect(self.sig_delete)
                self.decoder_rows.append(line)
                bl.addWidget(line)
            layout.addSpacing(4)
            layout.addWidget(block)
        layout.addWidget(self.status)

    def set_busy(self, text: str, error: bool = False) -> None:
        """Show a deleting/failed note; buttons stay off while an operation runs."""
        self.status.setText(text)
        theme.set_property(self.status, "kind", "error" if error else "")
        self.status.setVisible(bool(text))
        self.delete_button.setEnabled(error or not text)

    def _on_folder_clicked(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(self.model.path))))


class DecoderLine(QWidget):
    """A decoder under its model: "pairs with it" (and what was checked) or why not."""

    sig_delete = Signal(object)
    """Delete was clicked for this decoder (LocalModel)."""

    def __init__(self, match: DecoderMatch, parent: QWidget | None = None):
        super().__init__(parent)
        self.match = match
        dec = match.decoder
        icon = ThemedIcon("pairs", "accent" if match.pairing.ok else "faint", 16, self)
        self.name = ElidedLabel(dec.id, self)
        self.name.setToolTip(f"{dec.id}\n{dec.path}")
        verdict = "pairs with it" if match.pairing.ok else "does not pair"
        self.badge = Badge(verdict, "ok" if match.pairing.ok else "no", match.pairing.reason)
        self.note = QLabel(self._note(), self)
        self.note.setObjectName("ModelMeta")
        self.note.setWordWrap(True)
        self.delete_button = IconButton("trash", f"Delete {dec.id}", self, 14)
        self.delete_button.clicked.connect(lambda: self.sig_delete.emit(dec))
        self.delete_button.setVisible(dec.source != "bundled")  # part of the app
        top = QHBoxLayout()
        top.setSpacing(6)
        top.addWidget(icon)
        top.addWidget(self.name)
        top.addWidget(self.badge)
        top.addStretch(1)
        top.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        layout.addLayout(top)
        layout.addWidget(self.note)

    def _note(self) -> str:
        m = self.match
        size = f"{human_bytes(m.decoder.size_bytes)} on disk"
        if m.decoder.source == "bundled":
            size = f"shipped with Lookahead, {size}"
        from engine.mtp_train.export import training_summary  # mlx: only when listed

        trained = training_summary(m.decoder.path)
        return f"{m.pairing.reason}  \u00b7  {size}" + (f"\n{trained}" if trained else "")


class PendingRow(QFrame):
    """An unfinished (or running) download: how much is here, Resume, and discard."""

    sig_discard = Signal(str)
    """Discard was clicked for this repo id (the library confirms first)."""

    def __init__(self, pending: PendingDownload, manager: DownloadManager, parent=None):
        super().__init__(parent)
        self.pending = pending
        self.setObjectName("ModelRow")
        self.name = ElidedLabel(pending.repo_id, self)
        self.name.setObjectName("ModelName")
        self.name.setToolTip(pending.repo_id)
        self.meta = QLabel(self._meta(pending.bytes_done, pending.bytes_total), self)
        self.meta.setObjectName("ModelMeta")
        self.meta.setWordWrap(True)
        self.action = DownloadAction(pending.repo_id, manager, self)
        self.action.set_library_state(False, pending)
        self.discard_button = IconButton("trash", "Discard the partial download", self, 16)
        self.discard_button.clicked.connect(lambda: self.sig_discard.emit(pending.repo_id))
        manager.sig_progress.connect(self._on_manager_progress)
        # Laid out like a search row: text on the left, the download control on the right.
        text = QVBoxLayout()
        text.setSpacing(3)
        text.addWidget(self.name)
        text.addWidget(self.meta)
        text.addWidget(self.action.message)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(14, 10, 10, 10)
        layout.setSpacing(10)
        layout.addLayout(text, 1)
        layout.addWidget(self.action)
        layout.addWidget(self.discard_button)

    @staticmethod
    def _meta(done: int, total: int) -> str:
        if not total:
            return "Details unreadable; resume to fetch it again"
        return f"{human_bytes(done)} of {human_bytes(total)} here"

    def _on_manager_progress(self, repo_id: str, p: DownloadProgress) -> None:
        if repo_id == self.pending.repo_id:
            self.meta.setText(self._meta(p.bytes_done, p.bytes_total))


class LocalLibrary(QWidget):
    """Models on this computer. ``refresh`` rescans off the GUI thread."""

    sig_snapshot = Signal(object)
    """A rescan finished (LibrarySnapshot): what is local and what is half-downloaded."""
    sig_library_changed = Signal()
    """A model or partial download was deleted."""

    def __init__(self, manager: DownloadManager, parent: QWidget | None = None):
        super().__init__(parent)
        self.manager = manager
        self.snapshot = LibrarySnapshot()
        self.rows: dict[str, LibraryRow] = {}
        self.pending_rows: dict[str, PendingRow] = {}
        self._scanning = self._rescan = False
        self.summary = QLabel("Reading the library\u2026", self)
        self.summary.setObjectName("Note")
        self.list = QWidget()
        self.list.setObjectName("ModelsList")
        self.list_layout = QVBoxLayout(self.list)
        self.list_layout.setContentsMargins(0, 0, 0, 0)
        self.list_layout.setSpacing(0)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self.list)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.summary)
        layout.addWidget(scroll, 1)
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self._on_theme_changed(theme.current())

    # ------------------------------------------------------------ scanning

    def refresh(self) -> None:
        """Rescan on a worker thread; a call during a scan queues one more."""
        if self._scanning:
            self._rescan = True
            return
        self._scanning = True
        run_blocking(scan_library, self._on_scan_done, self._on_scan_failed, "library-scan")

    def _on_scan_done(self, snapshot: LibrarySnapshot) -> None:
        self._scanning = False
        if self._rescan:
            self._rescan = False
            self.refresh()
        self.snapshot = snapshot
        self._rebuild()
        self.sig_snapshot.emit(snapshot)

    def _on_scan_failed(self, exc: BaseException) -> None:
        self._scanning = False
        self.summary.setText(f"Could not read the library: {exc}")

    # ------------------------------------------------------------ rows

    def _rebuild(self) -> None:
        while self.list_layout.count():
            item = self.list_layout.takeAt(0)
            if w := item.widget():
                w.setParent(None)
                w.deleteLater()
        self.rows.clear()
        self.pending_rows.clear()
        snap = self.snapshot
        chat = snap.chat_models
        if chat:
            self._section("Models")
        for m in chat:
            self._add_row(m, LibraryRow(m, snap.under(m), parent=self.list))
        loose = [d for d in snap.decoders if d.id in snap.unpaired]
        if loose:
            self._section("Decoders without a model")
        for d in loose:
            self._add_row(d, LibraryRow(d, unpaired=snap.unpaired[d.id], parent=self.list))
        if snap.pending:
            self._section("Downloads")
        for p in snap.pending:
            row = PendingRow(p, self.manager, self.list)
            row.sig_discard.connect(self._on_row_discard)
            self.pending_rows[p.repo_id] = row
            self.list_layout.addWidget(row)
        if not snap.models and not snap.pending:
            empty = EmptyState("models", self.list)
            empty.show_text("No models on this computer yet.\nSearch the hub and download one.")
            self.list_layout.addWidget(empty, 1)
        else:
            self.list_layout.addStretch(1)
        n = len(chat)
        if not snap.models:
            self.summary.setText("Nothing downloaded yet" if not snap.pending else "")
            return
        parts = [f"{n} model{'s' if n != 1 else ''}"]
        if snap.decoders:
            parts.append(f"{len(snap.decoders)} decoder{'s' if len(snap.decoders) != 1 else ''}")
        parts.append(f"{human_bytes(snap.size_bytes)} on disk")
        self.summary.setText("  \u00b7  ".join(parts))

    def _section(self, title: str) -> None:
        label = QLabel(title.upper(), self.list)
        label.setObjectName("SectionTitle")
        label.setContentsMargins(14, 12, 0, 4)
        self.list_layout.addWidget(label)

    def _add_row(self, model: LocalModel, row: LibraryRow) -> None:
        row.sig_delete.connect(self._on_row_delete)
        self.rows[model.id] = row
        self.list_layout.addWidget(row)

    # ------------------------------------------------------------ deleting

    def confirm_delete(self, what: str, detail: str) -> bool:
        """Ask before deleting (tests replace this)."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Delete model")
        box.setText(what)
        box.setInformativeText(detail)
        delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is delete

    def _on_row_delete(self, model: LocalModel) -> None:
        users = [x.target.id for x in self.snapshot.matches if x.decoder == model and x.pairing.ok]
        detail = f"This frees {human_bytes(model.size_bytes)} ({model.path})."
        if users:
            detail += f"\n{', '.join(users)} will lose this decoder."
        if not self.confirm_delete(f"Delete {model.id}?", detail):
            return
        self.delete(model.id)

    def _on_row_discard(self, repo_id: str) -> None:
        p = self.snapshot.partials().get(repo_id)
        kept = f"{human_bytes(p.bytes_done)} downloaded so far" if p else "what was downloaded"
        if self.confirm_delete(f"Discard the download of {repo_id}?", f"This deletes {kept}."):
            self.delete(repo_id)

    def delete(self, name: str) -> None:
        """Delete a model or partial download on a worker thread, then rescan."""
        from engine.library import delete_model

        if self.manager.is_running(name):
            self._row_note(name, "It is downloading: cancel the download first.", True)
            return
        self._row_note(name, "Deleting\u2026")

        def work() -> tuple[str, str]:  # worker thread
            try:
                delete_model(name)
            except Exception as e:  # shown under the row
                return name, " ".join(str(e).split()) or type(e).__name__
            return name, ""

        run_blocking(work, self._on_deleted, self._on_scan_failed, "library-delete")

    def _on_deleted(self, answer: tuple[str, str]) -> None:
        name, error = answer
        if error:
            self._row_note(name, error, True)
            return
        self.sig_library_changed.emit()
        self.refresh()

    def _row_note(self, name: str, text: str, error: bool = False) -> None:
        row = self.rows.get(name) or next(
            (
                r
                for r in self.rows.values()
                if any(d.match.decoder.id == name for d in r.decoder_rows)
            ),
            None,
        )  # a decoder listed only under its model notes there
        if row is not None:
            row.set_busy(text, error)
        elif pending := self.pending_rows.get(name):
            pending.action.message.setText(text)
            theme.set_property(pending.action.message, "kind", "error" if error else "")
            pending.action.message.setVisible(True)

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        self.setStyleSheet(models_qss(pal))
