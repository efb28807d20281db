"""Downloads against the fake hub: resume, corruption, gating, 404s, disk and cancel."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from engine.errors import ModelNotFound
from engine.hub import (
    CorruptDownload,
    DownloadCancelled,
    DownloadInterrupted,
    GatedModelError,
    HubError,
    download_model,
    pending_downloads,
)
from engine.hub import cache as hub_cache
from engine.hub import download as download_mod
from engine.library import local_models, resolve_model
from tests.hubserver import folder_files, hub  # noqa: F401 - the fixture
from tests.tiny_models import make_tiny_model

pytestmark = pytest.mark.usefixtures("no_shipped_decoders")

REPO = "org/tiny-llama"
WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> dict[str, bytes]:
    folder = make_tiny_model(tmp_path_factory.mktemp("src") / "tiny")
    files = folder_files(folder)
    files["README.md"] = b"---\nlicense: apache-2.0\n---\n# tiny\n"
    # Files a pull must leave behind: PyTorch weights, originals in subfolders.
    files["pytorch_model.bin"] = b"\0" * 4096
    files["original/params.json"] = b"{}"
    files["onnx/model.onnx"] = b"\0" * 1024
    return files


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    from engine.hub import transfer

    monkeypatch.setattr(transfer, "RETRY_WAIT_S", 0.01)


@pytest.fixture
def repo(hub, tiny_files):  # noqa: F811
    hub.add_repo(REPO, tiny_files)
    return hub


def ready_ids() -> list[str]:
    return [m.id for m in local_models()]


def test_pull_fetches_only_what_mlx_needs_into_the_hf_cache(repo, tiny_files):
    updates = []
    result = download_model(REPO, on_progress=updates.append)

    names = sorted(p.name for p in result.path.iterdir())
    assert names == ["README.md", "config.json", WEIGHTS, "tokenizer.json", "tokenizer_config.json"]
    for name in names:
        assert (result.path / name).read_bytes() == tiny_files[name]
    assert result.bytes_downloaded == result.bytes_total == sum(len(tiny_files[n]) for n in names)
    # The HF cache layout, so huggingface_hub (and mlx-lm) find the files offline.
    from huggingface_hub import try_to_load_from_cache

    assert try_to_load_from_cache(REPO, "config.json") == str(result.path / "config.json")
    root = hub_cache.repo_folder(REPO)
    assert (root / "refs" / "main").read_text() == result.commit
    sha = repo.file(REPO, WEIGHTS).sha256
    assert (root / "blobs" / sha).is_file() and (result.path / WEIGHTS).resolve().name == sha
    # Progress: monotonic, ends complete with a rate, reported per file.
    done = [u.bytes_done for u in updates]
    assert done == sorted(done) and done[-1] == result.bytes_total
    assert updates[-1].finished and updates[-1].files_done == 5 and updates[-1].eta_s == 0
    assert max(u.rate_bps for u in updates) > 0
    assert {u.current_file for u in updates} >= set(names)

    assert ready_ids() == [REPO] and resolve_model(REPO) == result.path
    assert pending_downloads() == []


def test_huggingface_hubs_own_downloads_work_and_are_listed(repo, tiny_files):
    from huggingface_hub import hf_hub_download, snapshot_download

    folder = Path(snapshot_download(REPO, allow_patterns=["*.json", "*.safetensors"]))
    assert (folder / WEIGHTS).read_bytes() == tiny_files[WEIGHTS]
    assert Path(hf_hub_download(REPO, "README.md")).read_bytes() == tiny_files["README.md"]
    assert ready_ids() == [REPO] and resolve_model(REPO) == folder
    assert download_model(REPO).bytes_downloaded == 0  # every file MLX needs is here


def test_a_pulled_model_loads_by_its_repo_id(repo):
    from engine.model_loader import load_model

    result = download_model(REPO)
    loaded = load_model(REPO)
    assert loaded.path == result.path


def test_a_second_pull_fetches_nothing(repo):
    download_model(REPO)
    repo.requests.clear()
    again = download_model(REPO)
    assert again.bytes_downloaded == 0
    assert not [r for r in repo.requests if "/resolve/" in r.path]


def test_a_broken_connection_resumes_with_range_in_the_same_pull(repo, tiny_files):
    repo.fail_after(REPO, WEIGHTS, 50_000)
    result = download_model(REPO)
    assert (result.path / WEIGHTS).read_bytes() == tiny_files[WEIGHTS]
    ranges = [r.headers.get("range") for r in repo.requests if r.path.startswith("/__cdn/")]
    assert ranges == [None, "bytes=50000-"]
    assert repo.sent_bytes(REPO, WEIGHTS) == len(tiny_files[WEIGHTS])  # nothing sent twice


def test_an_interrupted_pull_is_never_ready_and_resumes_after_a_restart(repo, tiny_files):
    repo.fail_after(REPO, WEIGHTS, 60_000, times=3)
    with pytest.raises(DownloadInterrupted, match="pull again to resume"):
        download_model(REPO, retries=2)

    assert ready_ids() == []
    with pytest.raises(ModelNotFound):
        resolve_model(REPO)
    (pending,) = pending_downloads()
    assert pending.repo_id == REPO and pending.bytes_total > pending.bytes_done >= 3 * 60_000 - 1
    assert list((hub_cache.repo_folder(REPO) / "snapshots").iterdir()) == []

    # A new process (nothing in memory) picks up the partial file where it stopped.
    repo.requests.clear()
    result = download_model(REPO)
    (get,) = [r for r in repo.requests if r.path.startswith("/__cdn/")]
    assert get.headers["range"] == f"bytes={3 * 60_000}-"
    assert repo.sent_bytes(REPO, WEIGHTS) == len(tiny_files[WEIGHTS])
    assert (result.path / WEIGHTS).read_bytes() == tiny_files[WEIGHTS]
    assert ready_ids() == [REPO] and pending_downloads() == []


def test_a_corrupted_file_is_rejected_and_never_listed(repo, tiny_files):
    repo.corrupt(REPO, WEIGHTS)
    with pytest.raises(CorruptDownload, match="checksum"):
        download_model(REPO)
    blobs = hub_cache.repo_folder(REPO) / "blobs"
    sha = repo.file(REPO, WEIGHTS).sha256
    assert not (blobs / sha).exists() and not list(blobs.glob(f"{sha}*"))
    assert repo.sent_bytes(REPO, WEIGHTS) == 2 * len(tiny_files[WEIGHTS])  # one fresh retry
    assert ready_ids() == []

    repo.corrupt(REPO, WEIGHTS, on=False)
    result = download_model(REPO)
    assert (result.path / WEIGHTS).read_bytes() == tiny_files[WEIGHTS]


def test_a_corrupted_small_file_fails_its_git_blob_check(hub, tiny_files):  # noqa: F811
    hub.add_repo(REPO, tiny_files)
    hub.corrupt(REPO, "config.json")
    with pytest.raises(CorruptDownload, match="config.json"):
        download_model(REPO)
    assert ready_ids() == []


def test_gated_repo_explains_the_token(hub, tiny_files, monkeypatch):  # noqa: F811
    hub.add_repo("corp/gated-llama", tiny_files, gated="manual")
    with pytest.raises(GatedModelError) as err:
        download_model("corp/gated-llama")
    message = str(err.value)
    assert "HF_TOKEN" in message and "huggingface-cli login" in message and "\n" not in message
    assert "corp/gated-llama" not in ready_ids()

    monkeypatch.setenv("HF_TOKEN", "hf_no_access")
    with pytest.raises(GatedModelError, match="no access"):
        download_model("corp/gated-llama")

    hub.grant("hf_granted", "corp/gated-llama")
    monkeypatch.setenv("HF_TOKEN", "hf_granted")
    download_model("corp/gated-llama")
    assert hub.requests[-1].headers["authorization"] == "Bearer hf_granted"
    assert "corp/gated-llama" in ready_ids()


def test_gated_repo_works_with_a_stored_login(hub, tiny_files, tmp_path):  # noqa: F811
    from huggingface_hub import constants

    hub.add_repo("corp/gated-llama", tiny_files, gated="auto")
    hub.grant("hf_stored")
    Path(constants.HF_TOKEN_PATH).parent.mkdir(parents=True, exist_ok=True)
    Path(constants.HF_TOKEN_PATH).write_text("hf_stored")
    assert download_model("corp/gated-llama").bytes_downloaded > 0


def test_unknown_repo_revision_and_weightless_repos(hub, tiny_files):  # noqa: F811
    with pytest.raises(HubError, match="no model 'org/nope' on the hub"):
        download_model("org/nope")
    hub.add_repo(REPO, tiny_files)
    with pytest.raises(HubError, match="no revision 'v9'"):
        download_model(REPO, "v9")
    hub.add_repo("org/gguf-only", {"config.json": b"{}", "tiny-Q4_K_M.gguf": b"GGUF" + b"\0" * 64})
    with pytest.raises(HubError, match="import-gguf"):
        download_model("org/gguf-only")
    with pytest.raises(HubError, match="not a hub repo id"):
        download_model("../etc")
    assert ready_ids() == []


def test_pull_a_revision(hub, tiny_files):  # noqa: F811
    hub.add_repo(REPO, tiny_files)
    v2 = dict(tiny_files)
    v2["config.json"] = json.dumps({**json.loads(tiny_files["config.json"]), "v": 2}).encode()
    hub.add_repo(REPO, v2, revision="v2")
    main = download_model(REPO)
    tagged = download_model(REPO, "v2")
    assert tagged.commit != main.commit
    assert json.loads((tagged.path / "config.json").read_text())["v"] == 2
    assert (hub_cache.repo_folder(REPO) / "refs" / "v2").read_text() == tagged.commit
    # Shared weights are stored once.
    assert tagged.bytes_downloaded == len(v2["config.json"])
    assert resolve_model(REPO) == main.path  # refs/main stays the default


def test_parts_of_files_the_repo_no_longer_has_are_dropped(repo):
    blobs = hub_cache.repo_folder(REPO) / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{'e' * 64}.incomplete").write_bytes(b"old")  # ours, from an older commit
    (blobs / f"{'e' * 64}.0123abcd.incomplete").write_bytes(b"hf")  # huggingface_hub's
    download_model(REPO)
    assert sorted(p.name for p in blobs.glob("*.incomplete")) == [f"{'e' * 64}.0123abcd.incomplete"]


def test_cancel_keeps_the_partial_for_later(repo, tiny_files):
    cancel = threading.Event()

    began: dict[str, int] = {}
    listed_mid_download: list[list[str]] = []

    def progress(p):
        if p.current_file == WEIGHTS and p.bytes_done > began.setdefault("at", p.bytes_done):
            listed_mid_download.append(ready_ids())
            cancel.set()

    repo.throttle(2_000_000)  # slow enough that the cancel lands mid-file
    with pytest.raises(DownloadCancelled):
        download_model(REPO, on_progress=progress, cancel=cancel)
    repo.throttle(None)
    assert listed_mid_download == [[]]  # a download in progress is not a ready model
    (pending,) = pending_downloads()
    assert 0 < pending.bytes_done < pending.bytes_total
    assert ready_ids() == []
    result = download_model(REPO)
    assert (result.path / WEIGHTS).read_bytes() == tiny_files[WEIGHTS]
    assert repo.sent_bytes(REPO, WEIGHTS) < 2 * len(tiny_files[WEIGHTS])


def test_free_disk_is_checked_before_any_transfer(repo, monkeypatch):
    class Usage:
        free = 1024

    monkeypatch.setattr(download_mod.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(HubError, match="not enough free disk space"):
        download_model(REPO)
    assert not [r for r in repo.requests if "/resolve/" in r.path]
    assert pending_downloads() == []


def test_one_download_per_repo_at_a_time(repo):
    with download_mod.repo_lock(REPO), pytest.raises(HubError, match="another lookahead process"):
        download_model(REPO)
