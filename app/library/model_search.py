"""Hub search results: one row per repo with its figures, badges and a download control.

``SearchResults.search`` runs ``engine.hub.search_models`` on a worker thread and shows
the answer, newest search first; each row's DownloadAction (app.library.model_rows) downloads,
shows progress with rate, ETA and cancel, and resumes. GUI thread only.
"""

from __future__ import annotations

from datetime import UTC, datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.library.downloads import DownloadManager
from app.library.model_rows import DownloadAction, join_meta, models_qss
from app.tasks import run_blocking
from app.widgets import Badge, ElidedLabel, EmptyState, ThemedIcon
from engine.hub import HubModel, PendingDownload, search_models
from engine.hub.describe import human_count
from engine.hub.progress import human_bytes


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """ "3 days ago", "2 months ago"... for a hub timestamp."""
    if when is None:
        return ""
    now = now or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    days = max((now - when).days, 0)
    for unit, size in (("year", 365), ("month", 30), ("week", 7), ("day", 1)):
        if days >= size:
            n = days // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "today"


def mtp_badge(mtp: str, decoder: str) -> Badge | None:
    """The speculative-decoding badge of a repo: built-in MTP, a decoder, or nothing."""
    if decoder == "mtp":
        return Badge("MTP decoder", "decoder", "MTP heads for another model: pairs with it locally")
    if decoder == "draft":
        return Badge("Draft model", "draft", "A small model that drafts tokens for a bigger one")
    if mtp == "weights":
        return Badge("MTP", "mtp", "Carries multi-token-prediction heads: speculation built in")
    if mtp == "declared":
        return Badge(
            "MTP declared",
            "declared",
            "Its config declares MTP layers; this conversion may have dropped the weights",
        )
    return None


class SearchResultRow(QFrame):
    """One hub repo: name, author and figures, badges, and its DownloadAction."""

    def __init__(self, model: HubModel, manager: DownloadManager, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.setObjectName("ModelRow")
        self.setAttribute(Qt.WidgetAttribute.WA_Hover, True)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        short = model.id.rsplit("/", 1)[-1]
        self.name = ElidedLabel(short, self)
        self.name.setObjectName("ModelName")
        self.name.setToolTip(model.id + (f"\nlicense: {model.license}" if model.license else ""))
        self.badges: list[Badge] = []
        if badge := mtp_badge(model.mtp, model.decoder):
            self.badges.append(badge)
        self.lock: ThemedIcon | None = None
        if model.gated or model.private:
            what = "Gated" if model.gated else "Private"
            tip = (
                f"{what} repo: accept its terms on the hub, then set HF_TOKEN=hf_... "
                "(or run `hf auth login`) before downloading"
            )
            self.lock = ThemedIcon("lock", "warning", 14, self)
            self.lock.setToolTip(tip)
            self.badges.append(Badge(what, "gated", tip))
        if not model.is_mlx:
            self.badges.append(Badge("not MLX", "", "No MLX weights: it may not load"))
        self.meta = QLabel(self.meta_text(), self)
        self.meta.setObjectName("ModelMeta")
        self.meta.setWordWrap(True)
        self.action = DownloadAction(model.id, manager, self)
        if model.size_bytes:
            self.action.download_button.setToolTip(
                f"Download about {human_bytes(model.size_bytes)} into the HF cache"
            )

        title = QHBoxLayout()
        title.setSpacing(6)
        title.addWidget(self.name)
        if self.lock is not None:
            title.addWidget(self.lock)
        for b in self.badges:
            title.addWidget(b)
        title.addStretch(1)
        text = QVBoxLayout()
        text.setSpacing(3)
        text.addLayout(title)
        text.addWidget(self.meta)
        text.addWidget(self.action.message)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 10)
        layout.setSpacing(16)
        layout.addLayout(text, 1)
        layout.addWidget(self.action, 0, Qt.AlignmentFlag.AlignVCenter)

    def meta_text(self) -> str:
        m = self.model
        parts = [m.author] if m.author else []
        if m.parameters:
            parts.append(f"{human_count(m.parameters)} params")
        if m.quantization:
            parts.append(m.quantization)
        if m.size_bytes:
            parts.append(human_bytes(m.size_bytes))
        parts.append(f"{human_count(m.downloads)} downloads")
        if m.likes:
            parts.append(f"{human_count(m.likes)} likes")
        if updated := ago(m.last_modified):
            parts.append(f"updated {updated}")
        return join_meta(parts)

    def badge_texts(self) -> list[str]:
        return [b.text() for b in self.badges]


def matches_filters(m: HubModel, has_mtp: bool, size_range: tuple[float, float] | None) -> bool:
    """Filters the hub cannot apply: MTP (main models or decoders) and weight size (GB)."""
    if has_mtp and not (m.mtp or m.decoder == "mtp"):
        return False
    if size_range is not None:
        if not m.size_bytes:
            return False
        low, high = size_range
        return low <= m.size_bytes / 1e9 < high
    return True


class SearchResults(QWidget):
    """The result list. ``search`` asks the hub off the GUI thread; newest answer wins."""

    sig_results = Signal(list)
    """A search answered and its rows are shown (list[HubModel] after filters)."""
    sig_search_failed = Signal(str)
    """A search failed; the one-line message is also shown in the list."""

    def __init__(self, manager: DownloadManager, parent: QWidget | None = None):
        super().__init__(parent)
        self.manager = manager
        self.rows: dict[str, SearchResultRow] = {}
        self.models: list[HubModel] = []
        self.has_mtp = False
        self.size_range: tuple[float, float] | None = None
        self._local: set[str] = set()
        self._partials: dict[str, PendingDownload] = {}
        self._seq = 0
        self._last_query: dict = {}
        self.status = QLabel("", self)
        self.status.setObjectName("Note")
        self.list = QWidget()
        self.list.setObjectName("ModelsList")
        self.list_layout = QVBoxLayout(self.list)
        self.list_layout.setContentsMargins(0, 0, 0, 0)
        self.list_layout.setSpacing(0)
        self.list_layout.addStretch(1)
        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(self.list)
        self.empty = EmptyState("search", self)
        self.empty.button.clicked.connect(self._on_retry_clicked)
        self.empty.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.status)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.empty, 1)
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self._on_theme_changed(theme.current())

    # ------------------------------------------------------------ searching

    def search(self, query: str = "", *, mlx_only: bool = True, sort: str = "downloads") -> None:
        """Ask the hub (on a worker thread); the answer replaces the rows."""
        self._seq += 1
        seq = self._seq
        self._last_query = {"query": query, "mlx_only": mlx_only, "sort": sort}
        self.status.setText("Searching the hub\u2026")
        if not self.rows:  # nothing to look at meanwhile: say what is happening
            self.scroll.hide()
            self.empty.show_text("Searching the hub\u2026", "search")
            self.empty.show()

        def work() -> tuple[int, list[HubModel] | None, str]:  # worker thread
            try:
                return seq, search_models(query, mlx_only=mlx_only, sort=sort, limit=50), ""
            except Exception as e:  # shown in the list with a Try again button
                return seq, None, " ".join(str(e).split()) or type(e).__name__

        run_blocking(work, self._on_search_answered, self._on_search_crashed, "hub-search")

    def set_filters(self, has_mtp: bool, size_range: tuple[float, float] | None) -> None:
        """Client-side filters; re-filters the rows already fetched."""
        self.has_mtp, self.size_range = has_mtp, size_range
        if self._last_query:
            self._show(self.models)

    def set_library(self, local_ids: set[str], partials: dict[str, PendingDownload]) -> None:
        """Which repos are downloaded or half-downloaded (from the library scan)."""
        self._local, self._partials = set(local_ids), dict(partials)
        for repo_id, row in self.rows.items():
            row.action.set_library_state(repo_id in self._local, self._partials.get(repo_id))

    def row(self, repo_id: str) -> SearchResultRow | None:
        return self.rows.get(repo_id)

    # ------------------------------------------------------------ showing

    def _on_search_answered(self, answer: tuple[int, list[HubModel] | None, str]) -> None:
        seq, models, error = answer
        if seq != self._seq:
            return  # an older search answered late
        if models is None:
            self._show_error(error)
            return
        self.models = models
        self._show(models)

    def _on_search_crashed(self, exc: BaseException) -> None:
        self._show_error(f"{type(exc).__name__}: {exc}")

    def _show(self, models: list[HubModel]) -> None:
        shown = [m for m in models if matches_filters(m, self.has_mtp, self.size_range)]
        for row in self.rows.values():
            row.setParent(None)
            row.deleteLater()
        self.rows.clear()
        for m in shown:
            row = SearchResultRow(m, self.manager, self.list)
            row.action.set_library_state(m.id in self._local, self._partials.get(m.id))
            self.rows[m.id] = row
            self.list_layout.insertWidget(self.list_layout.count() - 1, row)
        hidden = len(models) - len(shown)
        what = f"{len(shown)} model{'s' if len(shown) != 1 else ''}"
        self.status.setText(what + (f" \u00b7 {hidden} hidden by filters" if hidden else ""))
        self.scroll.setVisible(bool(shown))
        self.empty.setVisible(not shown)
        if not shown:
            mlx = self._last_query.get("mlx_only", True)
            self.empty.show_text(
                "No models match the filters." if models
                else "No models found" + (" with MLX weights." if mlx else "."),
                "search",
            )  # fmt: skip
        self.scroll.verticalScrollBar().setValue(0)
        self.sig_results.emit(shown)

    def _show_error(self, message: str) -> None:
        message = message[:1].upper() + message[1:]  # engine messages start lower-case
        self.status.setText("")
        self.scroll.hide()
        self.empty.show_text(message, "alert", "Try again")
        self.empty.show()
        self.sig_search_failed.emit(message)

    def _on_retry_clicked(self) -> None:
        self.search(**self._last_query)

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        self.setStyleSheet(models_qss(pal))
