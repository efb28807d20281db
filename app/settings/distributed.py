"""The Settings page's Distributed section: which computers run one model together.

The hosts are kept in ``hosts.json`` in the config folder, in mlx.launch's hostfile
format (keys this editor does not show, such as ``backend`` or ``envs``, are kept), so
``lookahead serve --hosts`` reads the same file. "Test connection" runs
engine.distributed's ``check_hosts`` on a worker thread and shows, per host, whether
it answered, what it runs and how much memory it has, or what is wrong. "Use these
hosts" makes the app's own engine spread models across them from the next start.
GUI thread only (apart from the check itself).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.settings.app_settings import AppSettings, hostfile_path
from app.tasks import run_blocking
from app.widgets import ThemedIcon
from engine.distributed import HostStatus, check_hosts

log = logging.getLogger(__name__)

COLUMNS = ("Host (ssh name or address)", "Ring address (optional)", "Python there (optional)")
CHECK_TIMEOUT_S = 20.0


def read_hostfile(path: Path) -> tuple[dict[str, Any], list[tuple[str, str, str]], str]:
    """(the file's other keys, rows of (host, ip, python), a problem to show or "")."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, [], ""
    except (OSError, ValueError) as e:
        return {}, [], f"{path} could not be read ({e}); saving here replaces it."
    top = data if isinstance(data, dict) else {"hosts": data}
    rows = []
    for h in top.get("hosts") or []:
        if isinstance(h, str):
            h = {"ssh": h}
        if isinstance(h, dict) and isinstance(h.get("ssh"), str):
            ips = h.get("ips") or []
            ip = ips if isinstance(ips, str) else (ips[0] if ips else "")
            rows.append((h["ssh"], str(ip), str(h.get("python") or "")))
    return {k: v for k, v in top.items() if k != "hosts"}, rows, ""


def write_hostfile(path: Path, extra: dict[str, Any], rows: list[tuple[str, str, str]]) -> None:
    hosts = []
    for name, ip, python in rows:
        entry: dict[str, Any] = {"ssh": name}
        if ip:
            entry["ips"] = [ip]
        if python:
            entry["python"] = python
        hosts.append(entry)
    data = {"backend": "ring", **extra, "hosts": hosts}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


class HostResult(QWidget):
    """One host's answer: an icon, the host, what it runs and the message."""

    def __init__(self, status: HostStatus, parent: QWidget | None = None):
        super().__init__(parent)
        self.status = status
        self.setObjectName("IdRow")
        role = "success" if status.ok else "warning" if status.reachable else "danger"
        icon = ThemedIcon("check" if status.ok else "alert", role, 16, self)
        name = QLabel(f"Rank {status.rank} \u00b7 {status.host}", self)
        name.setObjectName("ModelName")
        facts = [f"lookahead {status.version}" if status.version else ""]
        facts.append(f"mlx {status.mlx}" if status.mlx else "")
        facts.append(f"{status.memory_gb:.0f} GB memory" if status.memory_gb else "")
        meta = QLabel("  \u00b7  ".join(f for f in facts if f), self)
        meta.setObjectName("ModelMeta")
        # The engine names the hostfile key; this editor calls that column Ring address.
        text = status.message.replace("under 'ips'", "as its ring address")
        self.message = QLabel(text, self)
        self.message.setObjectName("RowMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        if not status.ok:
            self.message.setProperty("kind", "error")
        head = QHBoxLayout()
        head.setSpacing(8)
        head.addWidget(name)
        head.addStretch(1)
        head.addWidget(meta)
        meta.setVisible(not status.ok)  # an ok message already says all of it
        column = QVBoxLayout()
        column.setSpacing(2)
        column.addLayout(head)
        column.addWidget(self.message)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 8, 2, 8)
        layout.setSpacing(10)
        layout.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(column, 1)


class DistributedSettings(QWidget):
    """Hosts editor, Test connection with per-host results, and the use-hosts switch."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.path = hostfile_path()
        self.results: list[HostStatus] = []
        self.checking = False
        self._extra, rows, problem = read_hostfile(self.path)
        intro = QLabel(
            "Run one model across several computers with MLX\u2019s distributed layer. The "
            "first host is this computer; the others are reached over ssh without a "
            "password and need the same Lookahead, MLX and mlx-lm versions. When the "
            "others are remote, give this computer\u2019s network address as its ring address.",
            self,
        )
        intro.setObjectName("EmptyText")
        intro.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setObjectName("HostTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setDefaultSectionSize(30)
        header = self.table.horizontalHeader()
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setHighlightSections(False)
        for i in range(len(COLUMNS)):
            header.setSectionResizeMode(i, QHeaderView.ResizeMode.Stretch)
        self.add_button = QPushButton("Add host", self)
        self.add_button.clicked.connect(self.add_host)
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.setToolTip("Remove the selected hosts")
        self.remove_button.clicked.connect(self.remove_selected)
        self.test_button = QPushButton("Test connection", self)
        self.test_button.setObjectName("PrimaryButton")
        self.test_button.clicked.connect(self.test_connection)
        buttons = QHBoxLayout()
        buttons.setSpacing(8)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        buttons.addWidget(self.test_button)
        self.message = QLabel(problem, self)
        self.message.setObjectName("Note")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._results_box = QVBoxLayout()
        self._results_box.setContentsMargins(0, 0, 0, 0)
        self._results_box.setSpacing(0)
        self.use = QCheckBox("Use these hosts for the app\u2019s models", self)
        self.use.setChecked(settings.use_hosts)
        self.use.toggled.connect(lambda on: settings.set("use_hosts", bool(on)))
        use_note = QLabel(
            f"Takes effect the next time Lookahead starts. The hosts are saved in {self.path}; "
            f"`lookahead serve --hosts {self.path}` uses the same file.",
            self,
        )
        use_note.setObjectName("Note")
        use_note.setWordWrap(True)
        use_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        use_note.setContentsMargins(26, 0, 0, 0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)
        layout.addWidget(intro)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        layout.addWidget(self.message)
        layout.addLayout(self._results_box)
        layout.addWidget(self.use)
        layout.addWidget(use_note)
        for row in rows or [("127.0.0.1", "", "")]:
            self._append(row)
        self.table.itemChanged.connect(self._on_table_item_changed)
        self._set_message(problem)
        self._refresh_buttons()

    # ------------------------------------------------------------ hosts

    def rows(self) -> list[tuple[str, str, str]]:
        """The hosts as typed, in rank order (rows without a host left out)."""
        out = []
        for r in range(self.table.rowCount()):
            cells = [(self.table.item(r, c).text() if self.table.item(r, c) else "").strip()
                     for c in range(len(COLUMNS))]  # fmt: skip
            if cells[0]:
                out.append((cells[0], cells[1], cells[2]))
        return out

    def set_rows(self, rows: list[tuple[str, str, str]]) -> None:
        self.table.setRowCount(0)
        for row in rows:
            self._append(row)
        self.save()

    def _append(self, row: tuple[str, str, str]) -> None:
        self.table.blockSignals(True)
        r = self.table.rowCount()
        self.table.insertRow(r)
        for c, text in enumerate(row):
            self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.blockSignals(False)

    def add_host(self) -> None:
        self._append(("", "", ""))
        r = self.table.rowCount() - 1
        self.table.setCurrentCell(r, 0)
        self.table.editItem(self.table.item(r, 0))
        self._refresh_buttons()

    def remove_selected(self) -> None:
        for r in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(r)
        self.save()

    def save(self) -> None:
        """Write hosts.json from the table."""
        try:
            write_hostfile(self.path, self._extra, self.rows())
        except OSError as e:
            self._set_message(f"The hosts could not be saved to {self.path}: {e}")
        self._refresh_buttons()

    # ------------------------------------------------------------ testing

    def test_connection(self) -> None:
        """Check every host on a worker thread (up to CHECK_TIMEOUT_S)."""
        if self.checking:
            return
        self.save()
        self.checking = True
        self._show_results([])
        n = len(self.rows())
        self._set_message(f"Checking {n} host{'s' if n != 1 else ''}\u2026")
        path = self.path
        run_blocking(
            lambda: check_hosts(path, timeout_s=CHECK_TIMEOUT_S),
            self._on_worker_checked,
            self._on_worker_check_failed,
            "check-hosts",
        )
        self._refresh_buttons()

    def _on_worker_checked(self, results: list[HostStatus]) -> None:
        self.checking = False
        self._show_results(results)
        bad = [s for s in results if not s.ok]
        if not bad:
            total = sum(s.memory_gb for s in results)
            self._set_message(
                f"All {len(results)} hosts answered and run the same versions "
                f"({total:.0f} GB of memory together)."
            )
        else:
            self._set_message(
                f"{len(bad)} of {len(results)} host{'s' if len(results) != 1 else ''} "
                "cannot take part yet; see below."
            )
        self._refresh_buttons()

    def _on_worker_check_failed(self, exc: BaseException) -> None:
        self.checking = False
        self._set_message(f"Cannot test these hosts: {exc}")
        self._refresh_buttons()

    def _show_results(self, results: list[HostStatus]) -> None:
        self.results = list(results)
        while (item := self._results_box.takeAt(0)) is not None:
            if w := item.widget():
                w.deleteLater()
        for status in results:
            self._results_box.addWidget(HostResult(status, self))

    # ------------------------------------------------------------ slots

    def _on_table_item_changed(self, _item: QTableWidgetItem) -> None:
        self.save()

    def _set_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def _refresh_buttons(self) -> None:
        # As tall as its rows (at least three), so the card does not grow empty space.
        rows = max(3, self.table.rowCount())
        header = self.table.horizontalHeader().sizeHint().height()
        self.table.setFixedHeight(
            header + rows * self.table.verticalHeader().defaultSectionSize() + 4
        )
        n = len(self.rows())
        self.test_button.setEnabled(n >= 2 and not self.checking)
        self.test_button.setToolTip(
            "" if n >= 2 else "Add at least one more host: the first one is this computer"
        )
        self.test_button.setText("Testing\u2026" if self.checking else "Test connection")
        hint = "Add at least one more computer to test the connection."
        if n < 2 and not self.checking and self.message.text() in ("", hint):
            self._set_message(hint)
        elif self.message.text() == hint:
            self._set_message("")
        self.remove_button.setEnabled(self.table.rowCount() > 0)


__all__ = ["DistributedSettings", "read_hostfile", "write_hostfile"]
