"""`lookahead search | pull | models | rm` against the fake hub."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli import main
from engine.hub import cache, pending_downloads
from tests.hubserver import hub, safetensors_bytes  # noqa: F401 - the fixture
from tests.tiny_models import llama_config

V, H = 300, 64
REPO = "org/tiny-llama"


def repo_files(config: dict, shapes: dict) -> dict[str, bytes]:
    return {
        "config.json": json.dumps(config).encode(),
        "model.safetensors": safetensors_bytes(shapes),
    }


def head_config(hidden: int) -> dict:
    """A trained llama MTP head in our decoder format (one Lookahead runs)."""
    own = {"family": "llama", "hidden_size": hidden, "vocab_size": V}
    text = {"model_type": "llama", "hidden_size": hidden, "vocab_size": V}
    return {"model_type": "lookahead_mtp", "lookahead_decoder": own, "text_config": text}


@pytest.fixture
def published(hub):  # noqa: F811
    hub.add_repo(
        REPO, repo_files(llama_config(V), {"model.embed_tokens.weight": (V, 4 * H)}), downloads=9
    )
    hub.add_repo(
        "org/tiny-llama-mtp",
        repo_files(head_config(H), {"eh_proj.weight": (H, 2 * H)}),
        downloads=3,
    )
    hub.add_repo("org/wide-mtp", repo_files(head_config(2 * H), {"eh_proj.weight": (2 * H, 4 * H)}))
    hub.add_repo("corp/gated", repo_files(llama_config(V), {"w": (2, 2)}), gated="manual")
    return hub


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_search_prints_a_table(published, capsys):
    code, out, _ = run(capsys, "search", "tiny")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "MODEL", "PARAMS", "QUANT", "SIZE", "MTP", "LICENSE", "ACCESS", "DL", "LIKES", "UPDATED",
    ]  # fmt: skip
    assert lines[1].split()[:5] == [REPO, "77K", "fp32", "307.2", "KB"]
    assert lines[2].split()[0] == "org/tiny-llama-mtp" and " decoder " in lines[2]
    code, out, _ = run(capsys, "search", "--json", "--author", "corp")
    assert code == 0 and json.loads(out)["gated"] == "manual"
    assert run(capsys, "search", "zzz")[1].startswith("no models found")


def test_pull_models_and_rm(published, capsys):
    code, out, err = run(capsys, "pull", REPO)
    assert code == 0 and f"ready: {REPO}" in out
    assert "100%" in err and "/s" in err and "ETA" in err  # the final progress line
    assert run(capsys, "pull", REPO)[1].startswith(f"{REPO} is already here")

    code, out, _ = run(capsys, "pull", "org/tiny-llama-mtp")
    assert f"decoder org/tiny-llama-mtp pairs with {REPO}" in out
    run(capsys, "pull", "org/wide-mtp")

    code, out, _ = run(capsys, "models")
    assert code == 0
    model_line = next(line for line in out.splitlines() if line.startswith(REPO + " "))
    assert model_line.split()[1:3] == ["llama", "fp32"]
    lines = out.splitlines()
    below = lines[lines.index(model_line) + 1 : lines.index(model_line) + 3]
    assert below[0].startswith("  └ decoder org/tiny-llama-mtp pairs with it: trained MTP head")
    wide = "hidden size 128, but org/tiny-llama has hidden size 64"
    assert below[1] == f"  └ decoder org/wide-mtp does not pair: {wide}"
    assert "org/wide-mtp (lookahead mtp, " in out
    assert f"pairs with nothing here: {REPO}: {wide}" in out

    code, out, _ = run(capsys, "rm", "org/wide-mtp", "--yes")
    assert code == 0 and out.startswith("deleted org/wide-mtp, freed")
    assert not cache.repo_folder("org/wide-mtp").exists()
    code, _, err = run(capsys, "rm", "org/wide-mtp")
    assert code == 2 and "no local model called 'org/wide-mtp'" in err


def test_pull_errors_are_one_line(published, capsys):
    code, _, err = run(capsys, "pull", "corp/gated")
    assert code == 2 and "HF_TOKEN" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "pull", "org/missing")
    assert code == 2 and "no model 'org/missing'" in err
    code, out, _ = run(capsys, "models")
    assert "corp/gated" not in out and "org/missing" not in out


def test_ctrl_c_leaves_a_resumable_partial(published, tmp_path, capsys):
    published.throttle(100_000)  # ~3 s for the weights: time to press Ctrl-C
    env = {
        **os.environ,
        "HF_ENDPOINT": published.url,
        "HF_HOME": os.environ["HF_HOME"],
        "HF_HUB_CACHE": os.environ["HF_HUB_CACHE"],
        "LOOKAHEAD_HOME": os.environ["LOOKAHEAD_HOME"],
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "pull", REPO],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    blobs = cache.repo_folder(REPO) / "blobs"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        parts = list(blobs.glob("*.incomplete")) if blobs.is_dir() else []
        if parts and parts[0].stat().st_size > 50_000:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the download never started")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert f"run `lookahead pull {REPO}` to resume" in err and "Traceback" not in err
    (pending,) = pending_downloads()
    assert pending.repo_id == REPO and pending.bytes_done > 50_000
    partial = sum(p.stat().st_size for p in blobs.glob("*.incomplete"))

    published.throttle(None)
    published.requests.clear()
    code, out, _ = run(capsys, "pull", REPO)
    assert code == 0 and "ready:" in out
    (get,) = [r for r in published.requests if r.path.startswith("/__cdn/")]
    assert get.headers["range"] == f"bytes={partial}-"
