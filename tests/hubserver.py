"""A fake Hugging Face hub on 127.0.0.1 for tests: nothing reaches the internet.

It speaks the endpoints huggingface_hub 2.x calls, with the headers it reads:

- ``GET /api/models`` (search: search, author, filter, pipeline_tag, gated, sort, limit,
  expand) and ``GET /api/models/<repo>[/revision/<rev>]`` (``blobs=true`` adds sizes,
  blob ids and LFS sha256), ``GET /api/models/<repo>/tree/<rev>``;
- ``HEAD/GET /<repo>/resolve/<rev>/<file>``: ``X-Repo-Commit``, ``ETag`` (git blob id) or
  ``X-Linked-Etag``/``X-Linked-Size`` (LFS sha256) and, like the real hub, a 302 for LFS
  files to a separate "CDN" origin; Range requests answer 206 (or 416);
- errors with ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo)
  as huggingface_hub maps them to its exception classes.

Switches for failure tests: ``fail_after`` (close the connection mid-body),
``corrupt`` (flip a byte), ``throttle`` (slow bodies), gated/private repos with
``grant``. ``requests`` logs every request (method, path, query, headers).

Use the ``hub`` fixture (import it into a test module), or ``HubServer`` with
``point_at(server, monkeypatch, tmp_path)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".npz", ".onnx", ".model")
CONFIG_KEYS = ("architectures", "model_type", "quantization_config")  # what the hub lists


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


@dataclass
class FakeFile:
    name: str
    data: bytes
    lfs: bool

    @property
    def blob_id(self) -> str:
        return git_blob_id(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id


@dataclass
class FakeRepo:
    repo_id: str
    refs: dict[str, str] = field(default_factory=dict)  # ref -> commit
    snapshots: dict[str, dict[str, FakeFile]] = field(default_factory=dict)  # commit -> files
    gated: str | bool = False  # False | "auto" | "manual"
    private: bool = False
    downloads: int = 0
    likes: int = 0
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str = "text-generation"
    library_name: str = "mlx"
    license: str = "apache-2.0"
    created_at: str = "2025-01-01T00:00:00.000Z"
    last_modified: str = "2025-01-01T00:00:00.000Z"

    def files(self, rev: str = "main") -> dict[str, FakeFile] | None:
        commit = self.refs.get(rev, rev)
        return self.snapshots.get(commit)


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names


@dataclass
class Fault:
    fail_after: int | None = None  # body bytes sent before the connection is cut
    fail_times: int = 0
    corrupt: bool = False


class HubServer:
    """The fake hub (and its CDN origin), each on a random 127.0.0.1 port."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.grants: dict[str, set[str] | None] = {}  # token -> repos (None: all)
        self.faults: dict[str, Fault] = {}  # by etag
        self.requests: list[LoggedRequest] = []
        self.sent: dict[str, int] = {}  # body bytes sent, by etag
        self.bytes_per_s: float | None = None
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []

    # -- lifecycle

    def start(self) -> HubServer:
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, role))
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    # -- content

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes] | Path,
        *,
        revision: str = "main",
        lfs: set[str] | None = None,
        **meta,
    ) -> FakeRepo:
        """Publish files (a dict, or every file under a folder) as ``revision``."""
        if isinstance(files, Path):
            files = {
                p.relative_to(files).as_posix(): p.read_bytes()
                for p in sorted(files.rglob("*"))
                if p.is_file()
            }
        fakes = {
            name: FakeFile(name, data, (name in lfs) if lfs is not None else _is_lfs(name))
            for name, data in files.items()
        }
        seed = json.dumps([repo_id, revision, sorted((n, f.etag) for n, f in fakes.items())])
        commit = hashlib.sha1(seed.encode()).hexdigest()
        with self._lock:
            repo = self.repos.get(repo_id) or FakeRepo(repo_id)
            for key, value in meta.items():
                setattr(repo, key, value)
            repo.snapshots[commit] = fakes
            repo.refs[revision] = commit
            self.repos[repo_id] = repo
        return repo

    def grant(self, token: str, *repo_ids: str) -> None:
        """``token`` may read these gated/private repos (all of them when none named)."""
        self.grants[token] = set(repo_ids) or None

    def file(self, repo_id: str, filename: str, revision: str = "main") -> FakeFile:
        return self.repos[repo_id].files(revision)[filename]

    def fail_after(self, repo_id: str, filename: str, nbytes: int, times: int = 1) -> None:
        """The next ``times`` transfers of the file stop after ``nbytes`` body bytes."""
        fault = self.faults.setdefault(self.file(repo_id, filename).etag, Fault())
        fault.fail_after, fault.fail_times = nbytes, times

    def corrupt(self, repo_id: str, filename: str, on: bool = True) -> None:
        """Flip the middle byte of the file in every transfer that includes it."""
        self.faults.setdefault(self.file(repo_id, filename).etag, Fault()).corrupt = on

    def throttle(self, bytes_per_s: float | None) -> None:
        self.bytes_per_s = bytes_per_s

    def sent_bytes(self, repo_id: str, filename: str) -> int:
        return self.sent.get(self.file(repo_id, filename).etag, 0)

    # -- answers (the handler calls these)

    def can_read(self, repo: FakeRepo, token: str | None) -> bool:
        if not repo.gated and not repo.private:
            return True
        if token is None or token not in self.grants:
            return False
        allowed = self.grants[token]
        return allowed is None or repo.repo_id in allowed

    def listing(self, repo: FakeRepo, rev: str, fields: set[str] | None, blobs: bool) -> dict:
        commit = repo.refs.get(rev, rev)
        files = repo.snapshots[commit]
        item = {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else None,
            "sha": commit,
            "lastModified": repo.last_modified,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": repo.downloads,
            "likes": repo.likes,
            "trendingScore": repo.likes,
            "library_name": repo.library_name,
            "pipeline_tag": repo.pipeline_tag,
            "tags": sorted({*repo.tags, repo.library_name, f"license:{repo.license}"}),
            "cardData": {"license": repo.license, "tags": list(repo.tags)},
            "siblings": [_sibling(f, blobs) for f in files.values()],
            "usedStorage": sum(len(f.data) for f in files.values()),
            "config": _config_subset(files),
        }
        if params := _safetensors_params(files):
            item["safetensors"] = {"parameters": params, "total": sum(params.values())}
        if fields is not None:
            item = {k: v for k, v in item.items() if k in fields or k in ("_id", "id")}
        return item


def _is_lfs(name: str) -> bool:
    return name.endswith(LFS_SUFFIXES)


def _sibling(f: FakeFile, blobs: bool) -> dict:
    entry: dict = {"rfilename": f.name}
    if blobs:
        entry.update(size=len(f.data), blobId=f.blob_id)
        if f.lfs:
            entry["lfs"] = {"sha256": f.sha256, "size": len(f.data), "pointerSize": 134}
    return entry


def _config_subset(files: dict[str, FakeFile]) -> dict:
    if "config.json" not in files:
        return {}
    try:
        cfg = json.loads(files["config.json"].data)
    except ValueError:
        return {}
    return {k: cfg[k] for k in CONFIG_KEYS if k in cfg}


def _safetensors_params(files: dict[str, FakeFile]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in files.values():
        if not f.name.endswith(".safetensors") or len(f.data) < 8:
            continue
        (n,) = struct.unpack("<Q", f.data[:8])
        for name, t in json.loads(f.data[8 : 8 + n]).items():
            if name != "__metadata__":
                counts[t["dtype"]] = counts.get(t["dtype"], 0) + math.prod(t["shape"])
    return counts


SORT_KEYS = {"downloads": "downloads", "likes": "likes", "lastModified": "last_modified",
             "createdAt": "created_at", "trendingScore": "likes"}  # fmt: skip


def _handler(hub: HubServer, role: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the hub does

        def log_message(self, *args) -> None:  # quiet test output
            pass

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        # -- routing

        def _route(self, head: bool) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            hub.requests.append(
                LoggedRequest(
                    self.command, parts.path, query, {k.lower(): v for k, v in self.headers.items()}
                )
            )
            path = unquote(parts.path)
            if role == "cdn":
                return self._cdn(path, head)
            if path == "/api/agent-harnesses":  # huggingface_hub's user-agent registry
                return self._json(200, {"standardEnvVars": [], "harnesses": {}})
            if path == "/api/models":
                return self._search(query)
            if path.startswith("/api/models/"):
                return self._api(path[len("/api/models/") :], query)
            if "/resolve/" in path:
                repo_id, rest = path.strip("/").split("/resolve/", 1)
                rev, _, filename = rest.partition("/")
                return self._resolve(repo_id, rev, filename, head)
            self._error(404, None, "Not Found")

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization", "")
            return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None

        # -- api

        def _search(self, q: dict[str, list[str]]) -> None:
            repos = list(hub.repos.values())
            if search := q.get("search", [""])[0].lower():
                repos = [r for r in repos if search in r.repo_id.lower()]
            if author := q.get("author", [""])[0]:
                repos = [r for r in repos if r.repo_id.split("/")[0] == author]
            for wanted in q.get("filter", []):
                repos = [r for r in repos if wanted in {*r.tags, r.library_name, r.pipeline_tag}]
            if task := q.get("pipeline_tag", [""])[0]:
                repos = [r for r in repos if r.pipeline_tag == task]
            if "gated" in q:
                want = q["gated"][0].lower() == "true"
                repos = [r for r in repos if bool(r.gated) == want]
            repos = [r for r in repos if not r.private or hub.can_read(r, self._token())]
            if sort := q.get("sort", [""])[0]:
                key = SORT_KEYS[sort]
                repos.sort(key=lambda r: getattr(r, key), reverse=True)
            if limit := q.get("limit", [""])[0]:
                repos = repos[: int(limit)]
            expand = set(q["expand"]) if "expand" in q else None
            default = {"likes", "downloads", "tags", "pipeline_tag", "library_name", "private"}
            fields = expand or default | {"createdAt", "modelId"}
            self._json(200, [hub.listing(r, "main", fields, blobs=False) for r in repos])

        def _api(self, rest: str, q: dict[str, list[str]]) -> None:
            rev = "main"
            kind = "info"
            for marker, k in (("/revision/", "info"), ("/tree/", "tree")):
                if marker in rest:
                    rest, rev = rest.split(marker, 1)
                    kind = k
            repo = hub.repos.get(rest)
            if repo is None or (repo.private and not hub.can_read(repo, self._token())):
                return self._error(401, "RepoNotFound", "Repository not found")
            if kind == "tree":
                rev = rev.split("/", 1)[0]
            if repo.files(rev) is None:
                return self._error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            if kind == "tree":
                return self._json(200, [_tree_entry(f) for f in repo.files(rev).values()])
            expand = set(q["expand"]) if "expand" in q else None
            blobs = q.get("blobs", ["false"])[0].lower() == "true"
            self._json(200, hub.listing(repo, rev, expand, blobs))

        # -- files

        def _resolve(self, repo_id: str, rev: str, filename: str, head: bool) -> None:
            repo = hub.repos.get(repo_id)
            token = self._token()
            if repo is None or (repo.private and not hub.can_read(repo, token)):
                return self._error(401, "RepoNotFound", "Repository not found")
            files = repo.files(rev)
            if files is None:
                return self._error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            commit = repo.refs.get(rev, rev)
            if repo.gated and not hub.can_read(repo, token):
                if token is None:
                    msg = (
                        f"Access to model {repo_id} is restricted. You must have access to it"
                        " and be authenticated to access it. Please log in."
                    )
                    return self._error(401, "GatedRepo", msg)
                msg = (
                    f"Access to model {repo_id} is restricted and you are not in the authorized"
                    f" list. Visit {hub.url}/{repo_id} to ask for access."
                )
                return self._error(403, "GatedRepo", msg)
            f = files.get(filename)
            if f is None:
                return self._error(404, "EntryNotFound", f"{filename} does not exist", commit)
            hub_headers = {"X-Repo-Commit": commit}
            if f.lfs:
                hub_headers.update(
                    {
                        "X-Linked-Etag": f'"{f.sha256}"',
                        "X-Linked-Size": str(len(f.data)),
                        "ETag": f'"{f.blob_id}"',
                        "Location": f"{hub.cdn_url}/__cdn/{f.sha256}",
                    }
                )
                return self._send(302, b"", hub_headers, head)
            hub_headers["ETag"] = f'"{f.blob_id}"'
            self._body(f, hub_headers, head)

        def _cdn(self, path: str, head: bool) -> None:
            sha = path.rsplit("/", 1)[-1]
            for repo in hub.repos.values():
                for files in repo.snapshots.values():
                    for f in files.values():
                        if f.lfs and f.sha256 == sha:
                            return self._body(f, {"ETag": f'"{sha}"'}, head)
            self._send(404, b"NoSuchKey", {}, head)

        def _body(self, f: FakeFile, headers: dict[str, str], head: bool) -> None:
            size = len(f.data)
            start, end, status = 0, size - 1, 200
            if rng := self.headers.get("Range"):
                spec = rng.split("=", 1)[1]
                first, _, last = spec.partition("-")
                start = int(first) if first else max(size - int(last), 0)
                end = min(int(last), size - 1) if first and last else size - 1
                if start >= size:
                    headers["Content-Range"] = f"bytes */{size}"
                    return self._send(416, b"", headers, head)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            headers["Accept-Ranges"] = "bytes"
            data = f.data[start : end + 1]
            fault = hub.faults.get(f.etag)
            if fault is not None and fault.corrupt and start <= size // 2 <= end:
                k = size // 2 - start
                data = data[:k] + bytes([data[k] ^ 0xFF]) + data[k + 1 :]
            cut = None
            if fault is not None and fault.fail_times > 0 and fault.fail_after is not None:
                with hub._lock:
                    if fault.fail_times > 0:
                        fault.fail_times -= 1
                        cut = fault.fail_after
            self._send(status, data, headers, head, cut=cut, etag=f.etag)

        # -- wire

        def _json(self, status: int, payload) -> None:
            self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

        def _error(self, status: int, code: str | None, message: str, commit: str = "") -> None:
            headers = {"Content-Type": "application/json", "X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            if commit:
                headers["X-Repo-Commit"] = commit
            self._send(status, json.dumps({"error": message}).encode(), headers)

        def _send(self, status, data, headers, head=False, cut=None, etag=None) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if head or self.command == "HEAD":
                return
            body = data if cut is None else data[:cut]
            self._write(body, etag)
            if cut is not None:  # an interrupted transfer: the connection just dies
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

        def _write(self, body: bytes, etag: str | None) -> None:
            step = 16384
            for i in range(0, len(body), step):
                piece = body[i : i + step]
                try:
                    self.wfile.write(piece)
                except OSError:  # the client went away (a cancel, a Ctrl-C)
                    self.close_connection = True
                    return
                if etag is not None:
                    with hub._lock:
                        hub.sent[etag] = hub.sent.get(etag, 0) + len(piece)
                if hub.bytes_per_s:
                    time.sleep(len(piece) / hub.bytes_per_s)

    return Handler


def _tree_entry(f: FakeFile) -> dict:
    entry = {"type": "file", "oid": f.blob_id, "size": len(f.data), "path": f.name}
    if f.lfs:
        entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}
    return entry


def point_at(server: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Send huggingface_hub to ``server`` and every cache and app dir into ``tmp_path``.

    huggingface_hub reads HF_ENDPOINT and HF_HOME at import time, so its constants are
    patched as well as the environment. Returns the hub cache folder.
    """
    from huggingface_hub import constants

    hf_home = tmp_path / "hf"
    cache = hf_home / "hub"
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("LOOKAHEAD_HOME", str(tmp_path / "home"))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        server.url + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return cache


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A running fake hub with huggingface_hub and all caches pointed at it."""
    with HubServer() as server:
        point_at(server, monkeypatch, tmp_path)
        yield server


# -- tiny repos to publish


def safetensors_bytes(
    shapes: dict[str, tuple[int, ...]], dtype: str = "float32", seed: int = 0
) -> bytes:
    """Random tensors of the given shapes as a safetensors file's bytes."""
    import numpy as np
    from safetensors.numpy import save

    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in shapes.items():
        if dtype == "uint32":
            arrays[name] = rng.integers(0, 2**32, size=shape, dtype=np.uint32)
        else:
            arrays[name] = rng.standard_normal(shape).astype(dtype)
    return save(arrays)


def folder_files(path: Path) -> dict[str, bytes]:
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }
