"""First run: import the starter model on a worker thread and show its progress.

``engine.starter.ensure_starter_model(progress) -> Path`` does the work off the GUI
thread; its progress reaches the page through a queued Qt signal. A failure shows the
reason and a Retry button, never a dead end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFrame, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from app import theme
from engine import paths

StarterFn = Callable[[Callable[..., None]], Path]


def default_starter() -> StarterFn:
    """The engine's starter importer, looked up when it is needed (it may not exist yet)."""

    def run(progress: Callable[..., None]) -> Path:
        from engine.starter import ensure_starter_model

        return ensure_starter_model(progress)

    return run


def parse_progress(*args, **kwargs) -> tuple[str, float | None]:
    """Make sense of whatever the importer reports: (stage, fraction), (fraction,),
    (done, total) or keywords. Returns (text, fraction or None)."""
    stage = str(kwargs.get("stage", "")) or next((a for a in args if isinstance(a, str)), "")
    numbers = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    fraction = kwargs.get("fraction")
    if fraction is None and len(numbers) >= 2 and numbers[1]:
        fraction = numbers[0] / numbers[1]
    elif fraction is None and numbers:
        fraction = float(numbers[0])
    if fraction is not None:
        fraction = max(0.0, min(1.0, float(fraction)))
    return stage, fraction


class StarterImport(QObject):
    """Runs the starter import on a plain thread; signals arrive on the GUI thread."""

    sig_progress = Signal(str, float)
    """Progress: stage text and fraction (negative when unknown). Emitted from the worker."""
    sig_done = Signal(str)
    """The model is ready at this path."""
    sig_failed = Signal(str)
    """The import failed; the message says why."""

    def __init__(self, starter: StarterFn, parent: QObject | None = None):
        super().__init__(parent)
        self._starter = starter
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._thread = threading.Thread(target=self._run, name="starter-import", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Worker thread."""

        def progress(*args, **kwargs) -> None:
            stage, fraction = parse_progress(*args, **kwargs)
            self.sig_progress.emit(stage, -1.0 if fraction is None else fraction)

        try:
            path = self._starter(progress)
        except ImportError as e:
            self.sig_failed.emit(f"This build has no starter model importer ({e}).")
        except Exception as e:  # shown to the user with a Retry button
            self.sig_failed.emit(f"{type(e).__name__}: {e}")
        else:
            self.sig_done.emit(str(path))


class FirstRunPage(QWidget):
    """A centred card: what is happening, a progress bar, and Retry when it failed."""

    sig_retry = Signal()
    """The user asked to try the import again."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        card = QFrame(self)
        self.card = card
        card.setObjectName("SetupCard")
        card.setFixedWidth(460)
        self.icon = QLabel(card)
        self.icon.setPixmap(theme.app_icon().pixmap(56, 56))
        self.icon.setFixedSize(56, 56)
        self.title = QLabel("Setting up your first model", card)
        self.title.setObjectName("EmptyTitle")
        self.text = QLabel(
            "Lookahead is importing a small starter model so you can chat right away. "
            "It runs entirely on this computer.",
            card,
        )
        self.text.setObjectName("EmptyText")
        self.text.setWordWrap(True)
        self.bar = QProgressBar(card)
        self.bar.setRange(0, 0)
        self.bar.setFixedHeight(8)
        self.stage = QLabel("Starting\u2026", card)
        self.stage.setObjectName("Note")
        self.error = QLabel(card)
        self.error.setObjectName("ErrorText")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        self.hint = QLabel(card)
        self.hint.setObjectName("Note")
        self.hint.setWordWrap(True)
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hint.hide()
        self.retry = QPushButton("Try again", card)
        self.retry.setObjectName("PrimaryButton")
        self.retry.clicked.connect(self._on_retry_clicked)
        self.retry.hide()
        layout = QVBoxLayout(card)
        layout.setContentsMargins(28, 28, 28, 28)
        layout.setSpacing(10)
        for w in (self.icon, self.title, self.text):
            layout.addWidget(w)
        layout.addSpacing(8)
        for w in (self.bar, self.stage, self.error, self.hint):
            layout.addWidget(w)
        layout.addWidget(self.retry, 0, Qt.AlignmentFlag.AlignLeft)
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        outer.addWidget(card, 0, Qt.AlignmentFlag.AlignHCenter)
        outer.addStretch(2)

    def show_progress(self, stage: str, fraction: float) -> None:
        self.title.setText("Setting up your first model")
        for w in (self.error, self.hint, self.retry):
            w.hide()
        self.bar.show()
        self.stage.show()
        if fraction < 0:
            self.bar.setRange(0, 0)  # busy indicator while the amount is unknown
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(fraction * 1000))
        pct = f" \u00b7 {fraction:.0%}" if fraction >= 0 else ""
        self.stage.setText(f"{stage or 'Working'}{pct}")
        self._fit_card()

    def show_error(self, message: str) -> None:
        self.title.setText("The starter model could not be set up")
        self.bar.hide()
        self.stage.hide()
        self.error.setText(message)
        self.hint.setText(
            "Try again, or put a model folder (config.json and weights) in "
            f"{paths.models_dir()} and try again."
        )
        for w in (self.error, self.hint, self.retry):
            w.show()
        self._fit_card()

    def _fit_card(self) -> None:
        # Wrapped labels need the height they ask for at the card's fixed width.
        self.card.setMinimumHeight(self.card.layout().heightForWidth(self.card.width()))

    def _on_retry_clicked(self) -> None:
        self.show_progress("Starting", -1.0)
        self.sig_retry.emit()
