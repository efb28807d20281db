"""One file from the hub into the cache's blob store: resumable, checked, cancellable.

Bytes go to ``blobs/<etag>.incomplete`` and stay there across failures, cancels and
restarts; the next attempt asks for the rest with an HTTP Range. The file becomes
``blobs/<etag>`` only after its sha256 (LFS) or git blob id matches, so a blob in
the cache is always a verified one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from engine.hub.errors import CorruptDownload, DownloadCancelled, DownloadInterrupted, hub_error
from engine.hub.files import RemoteFile, expected_digest, new_hasher

RETRY_WAIT_S = 0.5  # first wait before retrying a broken transfer; doubles each time
TIMEOUT_S = 60.0  # no byte for this long means the connection is dead


def resolve_url(repo_id: str, commit: str, filename: str) -> str:
    from huggingface_hub import constants

    return (
        f"{constants.ENDPOINT.rstrip('/')}/{repo_id}/resolve/"
        f"{quote(commit, safe='')}/{quote(filename)}"
    )


def auth_headers(token: str | None = None) -> dict[str, str]:
    from huggingface_hub.utils import build_hf_headers

    headers = build_hf_headers(token=token, library_name="lookahead", library_version=_version())
    headers["Accept-Encoding"] = "identity"  # byte offsets must be offsets in the file
    return headers


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lookahead")
    except PackageNotFoundError:
        return "dev"


def fetch_bytes(repo_id: str, commit: str, filename: str, token: str | None = None) -> bytes:
    """A small file's content (config.json, an index), straight into memory."""
    from huggingface_hub.utils import get_session, hf_raise_for_status

    try:
        response = get_session().get(
            resolve_url(repo_id, commit, filename),
            headers=auth_headers(token),
            follow_redirects=True,
            timeout=TIMEOUT_S,
        )
        hf_raise_for_status(response)
    except Exception as e:  # httpx2 and huggingface_hub errors alike
        raise hub_error(e, repo_id, commit) from None
    return response.content


def partial_path(blob_dir: Path, file: RemoteFile) -> Path:
    return blob_dir / f"{file.etag}.incomplete"


def present_bytes(blob_dir: Path, file: RemoteFile) -> int:
    """How much of the file is already on disk (all of it, or a resumable part)."""
    if (blob_dir / file.etag).is_file():
        return file.size
    part = partial_path(blob_dir, file)
    try:
        return min(part.stat().st_size, file.size)
    except OSError:
        return 0


def fetch_file(
    repo_id: str,
    commit: str,
    file: RemoteFile,
    blob_dir: Path,
    *,
    token: str | None = None,
    on_bytes: Callable[[int], None] = lambda n: None,
    cancel: threading.Event | None = None,
    retries: int = 3,
) -> Path:
    """Download ``file`` into ``blob_dir/<etag>`` and return that path.

    Runs on the caller's thread. Raises DownloadCancelled, DownloadInterrupted (after
    ``retries`` resumed attempts), CorruptDownload (bad checksum; the partial is
    deleted) or another EngineError from the hub.
    """
    final = blob_dir / file.etag
    if final.is_file() and final.stat().st_size == file.size:
        return final
    part = partial_path(blob_dir, file)
    hasher, have = _resume_state(part, file)
    url = resolve_url(repo_id, commit, file.name)
    attempt = 0
    while have < file.size or file.size == 0:
        try:
            have, hasher = _transfer(url, file, part, hasher, have, token, on_bytes, cancel)
            if have >= file.size:
                break
            raise DownloadInterrupted(f"{file.name}: the server stopped sending early")
        except DownloadCancelled:
            raise
        except Exception as e:  # sorted into retryable or not below
            if not _retryable(e):
                raise hub_error(e, repo_id, commit) from None
            reason = e if isinstance(e, DownloadInterrupted) else hub_error(e, repo_id, commit)
            attempt += 1
            if attempt > retries:
                kept = part.stat().st_size if part.exists() else 0
                raise DownloadInterrupted(
                    f"download of {file.name} from {repo_id} stopped ({reason}); "
                    f"{kept:,} bytes kept, pull again to resume"
                ) from None
            _wait(RETRY_WAIT_S * 2 ** (attempt - 1), cancel)
            hasher, have = _resume_state(part, file)  # what really reached the disk
    if hasher.hexdigest().lower() != expected_digest(file):
        part.unlink(missing_ok=True)
        raise CorruptDownload(
            f"{file.name} of {repo_id} arrived corrupted (checksum mismatch); "
            "the bad copy was deleted, pull again to fetch it afresh"
        )
    os.replace(part, final)
    os.chmod(final, 0o644)
    return final


def _retryable(exc: BaseException) -> bool:
    """A broken connection or a hub hiccup (5xx, 429): worth resuming."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, (DownloadInterrupted, httpx2.TransportError)):
        return True
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return False


def _resume_state(part: Path, file: RemoteFile):
    """A hasher fed with the bytes already on disk, and their count."""
    hasher = new_hasher(file)
    if not part.exists():
        return hasher, 0
    if part.stat().st_size > file.size:  # not a prefix of this file: start again
        part.unlink()
        return hasher, 0
    have = 0
    with part.open("rb") as f:
        while block := f.read(1 << 20):
            hasher.update(block)
            have += len(block)
    return hasher, have


def _transfer(url, file, part, hasher, have, token, on_bytes, cancel):
    """One HTTP request for bytes ``have..`` of the file, appended to ``part``."""
    from huggingface_hub.utils import get_session, hf_raise_for_status

    headers = auth_headers(token)
    if have:
        headers["Range"] = f"bytes={have}-"
    with get_session().stream(
        "GET", url, headers=headers, follow_redirects=True, timeout=TIMEOUT_S
    ) as response:
        if response.status_code == 416 and have:  # our part is no prefix of theirs
            part.unlink(missing_ok=True)
            raise DownloadInterrupted(f"{file.name}: the server refused to resume")
        if response.status_code >= 400:
            response.read()  # hf_raise_for_status reads the error body
            hf_raise_for_status(response)
        mode = "ab"
        if have and response.status_code != 206:
            # The server ignored the Range and sends everything: start the file over.
            mode, have, hasher = "wb", 0, new_hasher(file)
        elif have and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            part.unlink(missing_ok=True)
            raise DownloadInterrupted(f"{file.name}: the server resumed at the wrong offset")
        with part.open(mode) as out:
            for chunk in response.iter_bytes():  # as it arrives: a cut keeps every byte
                if cancel is not None and cancel.is_set():
                    raise DownloadCancelled("download cancelled; pull again to resume")
                out.write(chunk)
                hasher.update(chunk)
                have += len(chunk)
                on_bytes(len(chunk))
                if have > file.size:
                    break
    if have > file.size:
        part.unlink(missing_ok=True)
        raise CorruptDownload(
            f"{file.name}: the server sent more than its {file.size:,} bytes; the copy was deleted"
        )
    return have, hasher


def _wait(seconds: float, cancel: threading.Event | None) -> None:
    if cancel is None:
        time.sleep(seconds)
    elif cancel.wait(seconds):
        raise DownloadCancelled("download cancelled; pull again to resume")
