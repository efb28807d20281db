"""Downloads that started and did not finish, remembered across app restarts.

``<repo folder>/.lookahead/download.json`` exists from the moment a download starts
until its snapshot is linked. While it exists that commit is not a ready model, and
the app can offer to resume it (the bytes themselves are the ``.incomplete`` blobs).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from engine.hub.cache import STATE_DIR, cached_repos, repo_folder
from engine.hub.files import RemoteFile
from engine.hub.transfer import present_bytes

STATE_FILE = "download.json"


@dataclass(frozen=True)
class PendingDownload:
    repo_id: str
    revision: str  # what the user asked for ("main", a tag, a commit)
    commit: str
    files: tuple[RemoteFile, ...]
    bytes_done: int  # on disk now: finished blobs plus resumable parts
    bytes_total: int
    started_at: float

    @property
    def fraction(self) -> float:
        return self.bytes_done / self.bytes_total if self.bytes_total else 0.0


def state_path(repo_id: str) -> Path:
    return repo_folder(repo_id) / STATE_DIR / STATE_FILE


def write_state(repo_id: str, revision: str, commit: str, files: list[RemoteFile]) -> None:
    path = state_path(repo_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "repo_id": repo_id,
        "revision": revision,
        "commit": commit,
        "started_at": time.time(),
        "files": [
            {"name": f.name, "size": f.size, "blob_id": f.blob_id, "sha256": f.sha256}
            for f in files
        ],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)  # never a half-written state file


def clear_state(repo_id: str) -> None:
    state_path(repo_id).unlink(missing_ok=True)


def read_state(repo_id: str) -> PendingDownload | None:
    path = state_path(repo_id)
    try:
        data = json.loads(path.read_text())
        files = tuple(
            RemoteFile(f["name"], int(f["size"]), f["blob_id"], f.get("sha256"))
            for f in data["files"]
        )
        blob_dir = repo_folder(repo_id) / "blobs"
        return PendingDownload(
            repo_id=data["repo_id"],
            revision=data["revision"],
            commit=data["commit"],
            files=files,
            bytes_done=sum(present_bytes(blob_dir, f) for f in files),
            bytes_total=sum(f.size for f in files),
            started_at=float(data.get("started_at", 0.0)),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # Unreadable bookkeeping: still an unfinished download, details unknown.
        return PendingDownload(repo_id, "main", "", (), 0, 0, 0.0)


def pending_downloads() -> list[PendingDownload]:
    """Unfinished downloads, oldest first; pull the same repo again to resume one."""
    found = [p for repo in cached_repos() if (p := read_state(repo.repo_id)) is not None]
    return sorted(found, key=lambda p: p.started_at)


def pending_commits(repo_id: str) -> set[str]:
    state = read_state(repo_id)
    return {state.commit} if state is not None else set()
