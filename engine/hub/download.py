"""Pull a model repo into the Hugging Face cache, the files MLX needs and nothing else.

``download_model`` plans from the hub's file list (sizes and checksums), checks the
free disk, fetches each file resumably (engine.hub.transfer) and, only when every file
is verified, links the snapshot and its ref. Until then the repo is a pending download
(engine.hub.state), never a ready model.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from engine.hub.cache import STATE_DIR, repo_folder, snapshot_problem
from engine.hub.errors import CorruptDownload, HubError, hub_error
from engine.hub.files import RemoteFile, select_files, weight_files
from engine.hub.net import ensure_reachable
from engine.hub.progress import ProgressCallback, ProgressTracker, human_bytes
from engine.hub.state import clear_state, write_state
from engine.hub.transfer import fetch_file, present_bytes

# Room left free after a download: a full disk breaks the OS and the app's database.
DISK_HEADROOM = 100 * 1024 * 1024
REPO_ID = re.compile(r"^(?:[\w.\-]+/)?[\w.\-]+$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
PARTIAL = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?\.incomplete$")  # ours, not hf's temp names


@dataclass(frozen=True)
class DownloadPlan:
    repo_id: str
    revision: str
    commit: str
    files: tuple[RemoteFile, ...]
    gated: str  # "" | "auto" | "manual"

    @property
    def bytes_total(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class DownloadResult:
    repo_id: str
    revision: str
    commit: str
    path: Path  # the ready snapshot folder
    files: tuple[str, ...]
    bytes_total: int
    bytes_downloaded: int  # fetched by this call (0 when everything was already here)


class RepoBusy(HubError):
    """Another process is downloading or deleting the same repo."""


def check_repo_id(repo_id: str) -> str:
    repo_id = repo_id.strip().strip("/")
    if not REPO_ID.match(repo_id) or ".." in repo_id:
        raise HubError(f"{repo_id!r} is not a hub repo id (expected owner/name)")
    return repo_id


def plan_download(
    repo_id: str, revision: str | None = None, token: str | None = None
) -> DownloadPlan:
    """What a pull of ``repo_id`` at ``revision`` would fetch (asks the hub)."""
    from huggingface_hub import HfApi

    repo_id = check_repo_id(repo_id)
    revision = revision or "main"
    ensure_reachable()
    try:
        info = HfApi(token=token).model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as e:
        raise hub_error(e, repo_id, revision) from None
    siblings = {s.rfilename: s for s in info.siblings or []}
    names = select_files(list(siblings))
    if not weight_files(names):
        others = sorted(n for n in siblings if n.endswith((".gguf", ".bin", ".pth", ".pt")))
        hint = ""
        if any(n.endswith(".gguf") for n in others):
            hint = " (it has GGUF files: download one and use `lookahead import-gguf FILE`)"
        elif others:
            hint = " (only PyTorch weights; MLX needs safetensors, try an mlx-community conversion)"
        raise HubError(f"{repo_id} has no safetensors weights that MLX can load{hint}")
    files = []
    for name in names:
        s = siblings[name]
        if s.size is None or s.blob_id is None:
            raise HubError(f"the hub gave no size or checksum for {name} of {repo_id}")
        files.append(RemoteFile(name, int(s.size), s.blob_id, s.lfs.sha256 if s.lfs else None))
    if not info.sha:
        raise HubError(f"the hub gave no commit for {repo_id}@{revision}")
    gated = info.gated if isinstance(info.gated, str) else ""
    return DownloadPlan(repo_id, revision, info.sha, tuple(files), gated)


def download_model(
    repo_id: str,
    revision: str | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    token: str | None = None,
    retries: int = 3,
) -> DownloadResult:
    """Download (or resume, or just re-link) a model; returns the ready snapshot.

    Runs on the caller's thread; ``on_progress`` is called on it too, about ten times a
    second. Setting ``cancel`` stops between chunks with DownloadCancelled; the bytes
    already fetched stay on disk and the next call resumes from them.
    """
    plan = plan_download(repo_id, revision, token)
    root = repo_folder(plan.repo_id)
    blob_dir = root / "blobs"
    for sub in (blob_dir, root / "snapshots", root / STATE_DIR):
        sub.mkdir(parents=True, exist_ok=True)
    with repo_lock(plan.repo_id):
        ready = _ready_snapshot(root, plan)
        if ready is not None:
            _write_ref(root, plan)
            clear_state(plan.repo_id)
            return _result(plan, ready, 0)
        _drop_stale_partials(blob_dir, plan)
        present = _present_total(plan, blob_dir)
        check_free_disk(blob_dir, plan.bytes_total - present)
        write_state(plan.repo_id, plan.revision, plan.commit, list(plan.files))
        tracker = ProgressTracker(
            plan.repo_id, plan.bytes_total, present, len(plan.files), on_progress
        )
        try:
            for f in plan.files:
                tracker.start_file(f.name)
                _fetch_verified(plan, f, blob_dir, tracker, cancel, token, retries)
                tracker.file_done()
        except BaseException:
            if _present_total(plan, blob_dir) == 0:
                clear_state(plan.repo_id)  # nothing to resume: not an unfinished download
            raise
        snapshot = _link_snapshot(root, plan)
        _write_ref(root, plan)
        clear_state(plan.repo_id)
        tracker.emit(finished=True)
        return _result(plan, snapshot, tracker.transferred)


def _fetch_verified(plan, f, blob_dir, tracker, cancel, token, retries) -> None:
    """One file; a corrupted arrival is fetched once more from scratch before failing."""
    for last_try in (False, True):
        try:
            fetch_file(
                plan.repo_id,
                plan.commit,
                f,
                blob_dir,
                token=token,
                on_bytes=tracker.add,
                cancel=cancel,
                retries=retries,
            )
            return
        except CorruptDownload:
            # The bad bytes were deleted: progress falls back to what is really on disk.
            tracker.bytes_done = _present_total(plan, blob_dir)
            if last_try:
                raise


def _drop_stale_partials(blob_dir: Path, plan: DownloadPlan) -> None:
    """Parts of files this commit no longer has (the repo moved on) only waste disk."""
    wanted = {f"{f.etag}.incomplete" for f in plan.files}
    for part in blob_dir.glob("*.incomplete"):
        if PARTIAL.match(part.name) and part.name not in wanted:
            part.unlink(missing_ok=True)


def _present_total(plan: DownloadPlan, blob_dir: Path) -> int:
    return sum(present_bytes(blob_dir, f) for f in plan.files)


def check_free_disk(where: Path, needed: int) -> None:
    """Refuse to start a download that cannot fit (with headroom left for the system)."""
    free = shutil.disk_usage(where).free
    if needed + DISK_HEADROOM > free:
        raise HubError(
            f"not enough free disk space: the download needs {human_bytes(needed)} "
            f"(plus {human_bytes(DISK_HEADROOM)} headroom) and {where} has {human_bytes(free)} free"
        )


class repo_lock:
    """An exclusive lock on one repo folder across processes (download, delete)."""

    def __init__(self, repo_id: str) -> None:
        from filelock import FileLock

        path = repo_folder(repo_id) / STATE_DIR / "lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.repo_id = repo_id
        self._lock = FileLock(str(path), timeout=0)

    def __enter__(self) -> repo_lock:
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            raise RepoBusy(
                f"{self.repo_id} is being downloaded or deleted by another lookahead process"
            ) from None
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()


def _ready_snapshot(root: Path, plan: DownloadPlan) -> Path | None:
    snap = root / "snapshots" / plan.commit
    if not snap.is_dir() or snapshot_problem(snap) is not None:
        return None
    if all((snap / f.name).is_file() for f in plan.files):
        return snap
    return None


def _link_snapshot(root: Path, plan: DownloadPlan) -> Path:
    """Make ``snapshots/<commit>`` show every planned file, appearing all at once."""
    snapshots = root / "snapshots"
    final = snapshots / plan.commit
    build = snapshots / f".{plan.commit}.{uuid.uuid4().hex[:8]}"
    build.mkdir()
    try:
        names = {f.name for f in plan.files}
        if final.is_dir():  # keep what an earlier, different selection linked
            for old in final.iterdir():
                if old.name not in names and old.exists():
                    _place(old.resolve(), build / old.name)
        for f in plan.files:
            _place(root / "blobs" / f.etag, build / f.name)
        if final.exists():
            stale = snapshots / f".{plan.commit}.old.{uuid.uuid4().hex[:8]}"
            final.rename(stale)
            build.rename(final)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            build.rename(final)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    return final


def _place(blob: Path, link: Path) -> None:
    """A relative symlink like huggingface_hub makes; a hard link or copy where not."""
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(os.path.relpath(blob, link.parent), link)
    except OSError:
        try:
            os.link(blob, link)
        except OSError:
            shutil.copy2(blob, link)


def _write_ref(root: Path, plan: DownloadPlan) -> None:
    if COMMIT.match(plan.revision) and plan.revision == plan.commit:
        return  # a commit needs no ref
    ref = root / "refs" / plan.revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    if not ref.is_file() or ref.read_text().strip() != plan.commit:
        ref.write_text(plan.commit)


def _result(plan: DownloadPlan, path: Path, fetched: int) -> DownloadResult:
    return DownloadResult(
        plan.repo_id,
        plan.revision,
        plan.commit,
        path,
        tuple(f.name for f in plan.files),
        plan.bytes_total,
        fetched,
    )
