"""Parts shared by the model browser's rows: the meta line and the download control.

``DownloadAction`` is the Download button that turns into a progress bar (rate, ETA,
cancel) and then into Resume or "In library"; search rows and unfinished-download rows
both use it. ``models_qss`` styles these widgets (the app stylesheet knows nothing of
them). GUI thread only.
"""

from __future__ import annotations

from string import Template

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.library.downloads import DownloadFailure, DownloadManager
from app.widgets import IconButton
from engine.hub import DownloadProgress, PendingDownload
from engine.hub.progress import human_bytes, human_duration

# Rules for the model browser's own widgets (the app stylesheet knows nothing of them).
MODELS_QSS = Template("""
#ModelsCard { background: $surface; border: 1px solid $border; border-radius: 12px; }
#ModelsCardHeader { background: transparent; border-bottom: 1px solid $border; }
#ModelsCardTitle { font-weight: 600; font-size: 14px; }
#ModelsList { background: transparent; }
#ModelRow { background: transparent; border: none; border-bottom: 1px solid $border; }
#ModelRow:hover { background: $surface2; }
#ModelName { font-weight: 600; font-size: 13px; }
#ModelMeta, #ProgressText { color: $muted; font-size: 11px; }
#RowMessage { color: $muted; font-size: 11px; }
#RowMessage[kind="error"] { color: $danger; }
#RowDone { color: $success; font-weight: 600; }
QPushButton#DownloadButton { color: $accent; font-weight: 600; padding: 5px 14px 5px 10px; }
QPushButton#DownloadButton:hover { border-color: $accent; background: $accent_soft; }
QPushButton#DownloadButton[primary="true"] { background: $accent; color: $on_accent;
                                             border-color: $accent; }
QPushButton#DownloadButton[primary="true"]:hover { background: $accent_hover; }
#Badge { border-radius: 6px; padding: 1px 7px; font-size: 10px; font-weight: 700;
         background: $surface3; color: $muted; }
#Badge[kind="mtp"] { background: $accent; color: $on_accent; }
#Badge[kind="declared"], #Badge[kind="decoder"] { background: $accent_soft; color: $accent; }
#Badge[kind="draft"] { color: $info; }
#Badge[kind="gated"] { color: $warning; }
#Badge[kind="ok"] { color: $success; }
#Badge[kind="no"] { color: $warning; }
#DecoderBlock { background: $surface2; border: 1px solid $border; border-radius: 8px; }
#ModelsEmpty { color: $muted; }
""")

ACTION_WIDTH = 232


def models_qss(pal: theme.Palette) -> str:
    return MODELS_QSS.substitute(
        {k: getattr(pal, k) for k in pal.__dataclass_fields__ if isinstance(getattr(pal, k), str)}
    )


def join_meta(parts: list[str]) -> str:
    """ "a · b · c", wrapping only between parts ("697.5 MB" never splits)."""
    return "\u00a0\u00a0\u00b7\u00a0 ".join(p.replace(" ", "\u00a0") for p in parts if p)


class DownloadAction(QWidget):
    """Download / progress with cancel / Resume / In library, for one repo.

    Follows the manager's signals for its repo, so several actions for the same repo
    (a search row and an unfinished-download row) always agree. ``message`` is a label
    the owner places under its row: errors and "paused" notes appear there.
    """

    def __init__(self, repo_id: str, manager: DownloadManager, parent: QWidget | None = None):
        super().__init__(parent)
        self.repo_id = repo_id
        self.manager = manager
        self.in_library = False
        self.partial: PendingDownload | None = None
        self.failed = False  # the last attempt failed: the button offers Retry
        self.stack = QStackedWidget(self)

        self.download_button = QPushButton("Download", self)
        self.download_button.setObjectName("DownloadButton")
        self.download_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.download_button.setIconSize(QSize(16, 16))
        self.download_button.clicked.connect(self._on_download_clicked)

        running = QWidget(self)
        self.bar = QProgressBar(running)
        self.bar.setRange(0, 0)
        self.bar.setFixedHeight(6)
        self.cancel_button = IconButton("close", "Cancel (what has arrived is kept)", running, 16)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        self.progress_text = QLabel("Starting\u2026", running)
        self.progress_text.setObjectName("ProgressText")
        grid = QVBoxLayout(running)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(2)
        top = QHBoxLayout()
        top.setSpacing(4)
        top.addWidget(self.bar, 1)
        top.addWidget(self.cancel_button)
        grid.addLayout(top)
        grid.addWidget(self.progress_text)

        self.done_label = QLabel("\u2713  In library", self)
        self.done_label.setObjectName("RowDone")
        self.done_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        for w in (self.download_button, running, self.done_label):
            holder = QWidget(self.stack)
            hl = QHBoxLayout(holder)
            hl.setContentsMargins(0, 0, 0, 0)
            if w is self.download_button:
                hl.addStretch(1)
            hl.addWidget(w, 1 if w is not self.download_button else 0)
            self.stack.addWidget(holder)
        self.running_page = self.stack.widget(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)

        self.message = QLabel()
        self.message.setObjectName("RowMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()

        manager.sig_started.connect(self._on_manager_started)
        manager.sig_progress.connect(self._on_manager_progress)
        manager.sig_finished.connect(self._on_manager_finished)
        manager.sig_failed.connect(self._on_manager_failed)
        theme.manager().sig_changed.connect(self._on_theme_changed)
        self._show_rest_state()
        if manager.is_running(repo_id):
            self._show_running(manager.latest(repo_id))

    # ------------------------------------------------------------ state from outside

    def set_library_state(self, in_library: bool, partial: PendingDownload | None) -> None:
        """What the library says about this repo (ready, or an unfinished download)."""
        self.in_library = in_library
        self.partial = partial if partial is not None and partial.bytes_total else None
        if not self.manager.is_running(self.repo_id):
            self._show_rest_state()

    def state(self) -> str:
        """ "download" | "running" | "resume" | "retry" | "done" (for tests and owners)."""
        if self.stack.currentIndex() == 1:
            return "running"
        if self.stack.currentIndex() == 2:
            return "done"
        return self.download_button.text().lower()

    # ------------------------------------------------------------ views

    def _show_rest_state(self) -> None:
        if self.in_library:
            self.stack.setCurrentIndex(2)
            self._set_message("")
            self.setFixedWidth(self.done_label.sizeHint().width())
            return
        self.stack.setCurrentIndex(0)
        if self.partial is not None:
            self.download_button.setText("Resume")
            self.download_button.setToolTip(
                f"{human_bytes(self.partial.bytes_done)} of "
                f"{human_bytes(self.partial.bytes_total)} are on disk; continue from there"
            )
        else:
            self.download_button.setText("Retry" if self.failed else "Download")
            self.download_button.setToolTip("Download the files MLX needs into the HF cache")
        # Resume is the one thing to do on an unfinished download: make it stand out.
        theme.set_property(self.download_button, "primary", self.partial is not None)
        self._on_theme_changed(theme.current())
        # Only as wide as the button at rest, so the row's text keeps the room.
        self.setFixedWidth(self.download_button.sizeHint().width())

    def _show_running(self, p: DownloadProgress | None) -> None:
        self.stack.setCurrentIndex(1)
        self.setFixedWidth(ACTION_WIDTH)
        if p is None or not p.bytes_total:
            self.bar.setRange(0, 0)  # busy until the plan (and its size) is known
            self.progress_text.setText("Starting\u2026")
            return
        self.bar.setRange(0, 1000)
        self.bar.setValue(int(p.fraction * 1000))
        rate = f"{human_bytes(p.rate_bps)}/s" if p.rate_bps > 0 else "\u2026"
        eta = f"{human_duration(p.eta_s)} left" if p.eta_s is not None else "estimating"
        self.progress_text.setText(f"{p.fraction:.0%} \u00b7 {rate} \u00b7 {eta}")
        self.running_page.setToolTip(
            f"{human_bytes(p.bytes_done)} of {human_bytes(p.bytes_total)}"
            f" \u00b7 file {min(p.files_done + 1, p.files_total)} of {p.files_total}:"
            f" {p.current_file}"
            + (
                f"\nresumed with {human_bytes(p.resumed_bytes)} already here"
                if p.resumed_bytes
                else ""
            )
        )

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        primary = self.download_button.property("primary") is True
        colour = pal.on_accent if primary else pal.accent
        self.download_button.setIcon(theme.icon("download", colour, 16))

    def _set_message(self, text: str, kind: str = "") -> None:
        self.message.setText(text)
        theme.set_property(self.message, "kind", kind)
        self.message.setVisible(bool(text))

    # ------------------------------------------------------------ slots

    def _on_download_clicked(self) -> None:
        self._set_message("")
        self.manager.start(self.repo_id)

    def _on_cancel_clicked(self) -> None:
        self.progress_text.setText("Cancelling\u2026")
        self.manager.cancel(self.repo_id)

    def _on_manager_started(self, repo_id: str) -> None:
        if repo_id == self.repo_id:
            self.failed = False
            self._set_message("")
            self._show_running(None)

    def _on_manager_progress(self, repo_id: str, p: DownloadProgress) -> None:
        if repo_id == self.repo_id:
            self._show_running(p)

    def _on_manager_finished(self, repo_id: str, _result: object) -> None:
        if repo_id == self.repo_id:
            self.in_library, self.partial, self.failed = True, None, False
            self._show_rest_state()

    def _on_manager_failed(self, repo_id: str, failure: DownloadFailure) -> None:
        if repo_id != self.repo_id:
            return
        self.partial = failure.partial if failure.resumable else None
        self.failed = failure.kind != "cancelled"
        self._show_rest_state()
        if failure.kind == "cancelled" and self.partial is not None:
            p = self.partial
            self._set_message(
                f"Paused: {human_bytes(p.bytes_done)} of {human_bytes(p.bytes_total)} kept. "
                "Resume continues from there."
            )
        elif failure.kind == "cancelled":
            self._set_message("Cancelled before any file arrived.")
        else:
            self._set_message(failure.message, "error")
