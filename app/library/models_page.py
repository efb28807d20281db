"""The Models section: search the hub, download, and manage the local library.

Left, the hub browser (search field, MLX-only / has-MTP / size filters, sort, results);
right, the models on this computer. Every hub or disk call runs on a worker thread
(app.library.downloads); this page only wires the parts together. GUI thread only.

``sig_library_changed`` fires after a download finishes or a model is deleted: the main
window refreshes its model pickers from it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.library.downloads import DownloadFailure, DownloadManager
from app.library.local_library import LibrarySnapshot, LocalLibrary
from app.library.model_rows import models_qss
from app.library.model_search import SearchResults
from app.widgets import IconButton

SORT_LABELS = {
    "downloads": "Most downloaded",
    "likes": "Most liked",
    "trending": "Trending",
    "recent": "Recently updated",
    "created": "Newest",
}
SIZE_RANGES: dict[str, tuple[float, float] | None] = {
    "Any size": None,
    "Under 2 GB": (0.0, 2.0),
    "2 to 8 GB": (2.0, 8.0),
    "8 to 32 GB": (8.0, 32.0),
    "Over 32 GB": (32.0, float("inf")),
}
TYPING_PAUSE_MS = 400  # search once typing pauses, not on every key


def hub_host() -> str:
    from engine.hub.errors import endpoint

    return endpoint().split("://", 1)[-1]


class ModelsPage(QWidget):
    """Hub browser and local library side by side, sharing one DownloadManager."""

    sig_library_changed = Signal()
    """A download finished or a model was deleted: model lists should be refreshed."""

    def __init__(self, manager: DownloadManager | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.manager = manager or DownloadManager(self)
        self._started = False
        self._listed: set[str] = set()  # downloads the library was rescanned for
        self._typing = QTimer(self)
        self._typing.setSingleShot(True)
        self._typing.setInterval(TYPING_PAUSE_MS)
        self._typing.timeout.connect(self.search)
        self._build()
        self.manager.sig_library_changed.connect(self._on_manager_library_changed)
        self.manager.sig_failed.connect(self._on_manager_failed)
        self.manager.sig_progress.connect(self._on_manager_progress)
        self.library.sig_snapshot.connect(self._on_library_snapshot)
        self.library.sig_library_changed.connect(self.sig_library_changed)
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self._on_theme_changed(theme.current())

    # ------------------------------------------------------------ layout

    def _build(self) -> None:
        title = QLabel("Models", self)
        title.setObjectName("EmptyTitle")
        subtitle = QLabel(
            "Find MLX models on the Hugging Face hub, download them, and manage what is on "
            "this computer. MTP models and decoders make speculative decoding possible.",
            self,
        )
        subtitle.setObjectName("EmptyText")
        subtitle.setWordWrap(True)

        hub_card, hub_body = self._card("Hugging Face hub", hub_host())
        self.query = QLineEdit(hub_card)
        self.query.setPlaceholderText("Search models, e.g. qwen3 4bit")
        self.query.setClearButtonEnabled(True)
        self.query.setMinimumHeight(32)
        self._search_action = self.query.addAction(
            theme.icon("search", theme.current().muted, 16),
            QLineEdit.ActionPosition.LeadingPosition,
        )
        self.query.textEdited.connect(self._on_query_edited)
        self.query.returnPressed.connect(self.search)
        self.mlx_only = self._chip("MLX only", "Only repos with MLX weights", True, hub_card)
        self.mlx_only.toggled.connect(self.search)
        self.has_mtp = self._chip(
            "Has MTP", "Models with MTP heads, and MTP decoders", False, hub_card
        )
        self.has_mtp.toggled.connect(self._on_filters_changed)
        self.size = QComboBox(hub_card)
        self.size.addItems(list(SIZE_RANGES))
        self.size.setToolTip("Size of the weights")
        self.size.currentIndexChanged.connect(self._on_filters_changed)
        self.sort = QComboBox(hub_card)
        for key, label in SORT_LABELS.items():
            self.sort.addItem(label, key)
        self.sort.setToolTip("Order of the results")
        self.sort.currentIndexChanged.connect(self.search)
        filters = QHBoxLayout()
        filters.setSpacing(8)
        filters.addWidget(self.mlx_only)
        filters.addWidget(self.has_mtp)
        filters.addWidget(self.size)
        filters.addStretch(1)
        filters.addWidget(QLabel("Sort", hub_card))
        filters.addWidget(self.sort)
        self.results = SearchResults(self.manager, hub_card)
        hub_body.addWidget(self.query)
        hub_body.addLayout(filters)
        hub_body.addWidget(self.results, 1)

        lib_card, lib_body = self._card("On this computer", "")
        self.refresh_button = IconButton("refresh", "Rescan the library", lib_card, 16)
        self.refresh_button.clicked.connect(self.refresh_library)
        lib_card.findChild(QHBoxLayout, "CardHeaderLayout").addWidget(self.refresh_button)
        self.library = LocalLibrary(self.manager, lib_card)
        lib_body.addWidget(self.library, 1)

        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.setHandleWidth(12)
        self.splitter.setChildrenCollapsible(False)
        hub_card.setMinimumWidth(420)
        lib_card.setMinimumWidth(340)
        self.splitter.addWidget(hub_card)
        self.splitter.addWidget(lib_card)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(6)
        layout.addWidget(title)
        layout.addWidget(subtitle)
        layout.addSpacing(6)
        layout.addWidget(self.splitter, 1)

    def _card(self, title: str, note: str) -> tuple[QFrame, QVBoxLayout]:
        card = QFrame(self)
        card.setObjectName("ModelsCard")
        header = QWidget(card)
        header.setObjectName("ModelsCardHeader")
        hl = QHBoxLayout(header)
        hl.setObjectName("CardHeaderLayout")
        hl.setContentsMargins(16, 0, 10, 0)
        header.setFixedHeight(46)  # both cards' headers line up, button or not
        label = QLabel(title, header)
        label.setObjectName("ModelsCardTitle")
        hl.addWidget(label)
        if note:
            small = QLabel(note, header)
            small.setObjectName("Note")
            hl.addWidget(small)
        hl.addStretch(1)
        body = QVBoxLayout()
        body.setContentsMargins(12, 10, 12, 12)
        body.setSpacing(8)
        outer = QVBoxLayout(card)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        outer.addWidget(header)
        outer.addLayout(body, 1)
        return card, body

    @staticmethod
    def _chip(text: str, tooltip: str, checked: bool, parent: QWidget) -> QToolButton:
        chip = QToolButton(parent)
        chip.setObjectName("Chip")
        chip.setText(text)
        chip.setToolTip(tooltip)
        chip.setCheckable(True)
        chip.setChecked(checked)
        chip.setCursor(Qt.CursorShape.PointingHandCursor)
        return chip

    # ------------------------------------------------------------ actions

    def start(self) -> None:
        """First search and library scan (done once, when the page is first shown)."""
        if self._started:
            return
        self._started = True
        total = self.splitter.width()
        self.splitter.setSizes([total * 3 // 5, total - total * 3 // 5])
        self.refresh_library()
        self.search()

    def search(self) -> None:
        """Search the hub with the current text, filters and sort (worker thread)."""
        self._typing.stop()
        self.results.search(
            self.query.text().strip(),
            mlx_only=self.mlx_only.isChecked(),
            sort=self.sort.currentData(),
        )

    def refresh_library(self) -> None:
        self.library.refresh()

    def shutdown(self) -> None:
        """Cancel running downloads (their bytes stay on disk for a resume)."""
        self.manager.shutdown()

    # ------------------------------------------------------------ slots

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self.start)

    def _on_query_edited(self, _text: str) -> None:
        self._typing.start()

    def _on_filters_changed(self, *_args: object) -> None:
        self.results.set_filters(self.has_mtp.isChecked(), SIZE_RANGES[self.size.currentText()])

    def _on_library_snapshot(self, snap: LibrarySnapshot) -> None:
        self.results.set_library({m.id for m in snap.models}, snap.partials())

    def _on_manager_library_changed(self) -> None:
        self._listed.clear()
        self.library.refresh()
        self.sig_library_changed.emit()

    def _on_manager_progress(self, repo_id: str, _progress: object) -> None:
        # Once a download has begun it is on disk as unfinished: list it under Downloads.
        if repo_id not in self._listed and repo_id not in self.library.pending_rows:
            self._listed.add(repo_id)
            self.library.refresh()

    def _on_manager_failed(self, _repo_id: str, failure: DownloadFailure) -> None:
        if failure.resumable:
            self.library.refresh()  # the partial shows up under "Unfinished downloads"

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        self.setStyleSheet(models_qss(pal))
        self._search_action.setIcon(theme.icon("search", pal.muted, 16))
