"""The local library: what is listed as ready, sizes, delete, decoders under targets."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from engine import paths
from engine.decoder_catalog import decoder_matches, unpaired_reason
from engine.errors import ModelNotFound
from engine.hub import cache
from engine.hub.files import RemoteFile, git_blob_id
from engine.hub.state import write_state
from engine.library import delete_model, find_model, local_models, resolve_model
from tests.hubserver import safetensors_bytes
from tests.tiny_models import llama_config

VOCAB = 300
H = 64


pytestmark = pytest.mark.usefixtures("no_shipped_decoders")


@pytest.fixture(autouse=True)
def library_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKAHEAD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


def model_files(config: dict, weights: dict | None = None, name: str = "model.safetensors") -> dict:
    return {
        "config.json": json.dumps(config).encode(),
        name: safetensors_bytes(weights or {"model.embed_tokens.weight": (VOCAB, H)}),
    }


def put_in_cache(
    repo_id: str, files: dict[str, bytes], commit: str, ref: str | None = "main"
) -> Path:
    """A snapshot laid out exactly as huggingface_hub writes one."""
    root = cache.repo_folder(repo_id)
    snap = root / "snapshots" / commit
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        etag = (
            hashlib.sha256(data).hexdigest() if name.endswith(".safetensors") else git_blob_id(data)
        )
        (root / "blobs" / etag).write_bytes(data)
        os.symlink(os.path.relpath(root / "blobs" / etag, snap), snap / name)
    if ref:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return snap


def imported(name: str, files: dict[str, bytes]) -> Path:
    folder = paths.models_dir() / name
    folder.mkdir(parents=True)
    for n, data in files.items():
        (folder / n).write_bytes(data)
    return folder


def test_imported_and_hub_models_are_listed_with_their_size():
    files = model_files(llama_config(VOCAB))
    folder = imported("my-llama", files)
    snap = put_in_cache("org/tiny", files, "a" * 40)
    models = {m.id: m for m in local_models()}
    assert set(models) == {"my-llama", "org/tiny"}
    mine, hub = models["my-llama"], models["org/tiny"]
    assert (mine.source, mine.path, mine.model_type) == ("imported", folder, "llama")
    assert mine.size_bytes == sum(len(d) for d in files.values())
    assert (hub.source, hub.path, hub.revision) == ("hub", snap, "a" * 40)
    assert hub.size_bytes == sum(len(d) for d in files.values())
    assert hub.quantization == "fp32" and not hub.is_decoder
    assert resolve_model("org/tiny") == snap and resolve_model("ORG/TINY") == snap
    assert resolve_model(str(folder)) == folder.resolve()


def test_incomplete_snapshots_are_not_ready():
    cfg = llama_config(VOCAB)
    index = {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        }
    }
    half = {
        "config.json": json.dumps(cfg).encode(),
        "model.safetensors.index.json": json.dumps(index).encode(),
        "model-00001-of-00002.safetensors": safetensors_bytes({"a": (2, 2)}),
    }
    put_in_cache("org/half", half, "b" * 40)
    dangling = put_in_cache("org/dangling", model_files(cfg), "c" * 40)
    for blob in (cache.repo_folder("org/dangling") / "blobs").iterdir():
        if blob.stat().st_size > 1000:
            blob.unlink()
    imported("half-import", half)
    assert cache.snapshot_problem(dangling) == "model.safetensors is missing (dangling link)"
    assert local_models() == []
    with pytest.raises(ModelNotFound, match="lookahead pull"):
        resolve_model("org/half")


def test_a_download_in_progress_is_not_ready_but_an_older_snapshot_is():
    files = model_files(llama_config(VOCAB))
    old = put_in_cache("org/tiny", files, "1" * 40, ref=None)
    os.utime(old, (1, 1))
    put_in_cache("org/tiny", files, "2" * 40)  # linked by another tool, ours still pending
    write_state("org/tiny", "main", "2" * 40, [RemoteFile("config.json", 1, "x")])
    (model,) = local_models()
    assert model.revision == "1" * 40


def test_decoders_are_flagged_and_paired_with_targets():
    put_in_cache("org/tiny", model_files(llama_config(VOCAB)), "a" * 40)
    put_in_cache("org/big", model_files(llama_config(VOCAB, hidden_size=128)), "b" * 40)
    text = {"model_type": "llama", "hidden_size": H, "vocab_size": VOCAB}
    own = {"family": "llama", "hidden_size": H, "vocab_size": VOCAB}
    mtp = {"model_type": "lookahead_mtp", "lookahead_decoder": own, "text_config": text}
    put_in_cache("org/tiny-mtp", model_files(mtp, {"eh_proj.weight": (H, 2 * H)}), "c" * 40)
    # mlx-vlm's layout for a family Lookahead has no mlx-vlm loader for: refused, with why
    vlm = {"model_type": "llama_mtp", "text_config": {"hidden_size": H, "vocab_size": VOCAB}}
    put_in_cache("org/vlm-mtp", model_files(vlm, {"fc.weight": (H, 2 * H)}), "e" * 40)
    qwen = {"model_type": "qwen3_mtp", "text_config": {"hidden_size": H, "vocab_size": VOCAB}}
    put_in_cache("org/qwen-mtp", model_files(qwen, {"fc.weight": (H, 2 * H)}), "d" * 40)

    models = local_models()
    by_id = {m.id: m for m in models}
    dec = by_id["org/tiny-mtp"]
    assert (dec.is_decoder, dec.decoder_format, dec.decoder_kind) == (True, "lookahead", "mtp")
    matches = decoder_matches(models)
    ok = {(m.decoder.id, m.target.id) for m in matches if m.pairing.ok}
    assert ok == {("org/tiny-mtp", "org/tiny")}
    big = next(m for m in matches if m.target.id == "org/big" and m.decoder.id == "org/tiny-mtp")
    assert "hidden size 64, but org/big has hidden size 128" in big.pairing.reason
    vlm_tiny = next(
        m for m in matches if (m.decoder.id, m.target.id) == ("org/vlm-mtp", "org/tiny")
    )
    assert "llama_mtp is not supported" in vlm_tiny.pairing.reason
    assert unpaired_reason(dec, matches) == ""
    assert unpaired_reason(by_id["org/qwen-mtp"], matches) == "no local qwen3 model to pair with"


def test_delete_an_imported_model_a_hub_repo_and_a_partial_download():
    files = model_files(llama_config(VOCAB))
    folder = imported("my-llama", files)
    put_in_cache("org/tiny", files, "a" * 40)
    partial = cache.repo_folder("org/partial") / "blobs"
    partial.mkdir(parents=True)
    (partial / "abc.incomplete").write_bytes(b"x" * 1000)

    removed = delete_model("my-llama")
    assert removed.freed_bytes == sum(len(d) for d in files.values()) and not folder.exists()
    removed = delete_model("org/tiny")
    assert removed.freed_bytes >= sum(len(d) for d in files.values())
    assert not cache.repo_folder("org/tiny").exists()
    assert delete_model("org/partial").freed_bytes == 1000
    assert not cache.repo_folder("org/partial").exists()
    assert local_models() == []
    with pytest.raises(ModelNotFound):
        delete_model("org/tiny")
    with pytest.raises(ModelNotFound):
        find_model("nothing")
