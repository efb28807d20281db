"""Training jobs (engine/mtp_train/job.py): a drafter trained from stored chats, end to
end in its own process, paused and resumed, and each bad input a clear message."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine import decoder_catalog, library
from engine.model_loader import load_model
from engine.mtp_train import job as J
from engine.mtp_train.chats import chat_text, summarize
from engine.storage import ConversationStore
from tests.tiny_models import make_tiny_model
from tests.train_chats import store_chats

TRAIN = dict(steps=40, batch=4, window=64, lr=3e-3, warmup=4, val_every=10, draft_vocab=128)


@pytest.fixture
def home(tmp_path, monkeypatch, no_shipped_decoders):
    monkeypatch.setenv("LOOKAHEAD_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture(scope="module")
def chatted(tmp_path_factory):
    """A tiny model in a models folder and a database of 12 chats (24 replies) with it."""
    root = tmp_path_factory.mktemp("train-job")
    model_dir = make_tiny_model(root / "models" / "tiny-chat", seed=5)
    loaded = load_model(str(model_dir))
    db = root / "conversations.sqlite3"
    assert store_chats(loaded, db, "tiny-chat") == 24
    return root, model_dir, db


def _spec(model_dir: Path, db: Path, out: Path, **train) -> J.JobSpec:
    return J.JobSpec(
        model=str(model_dir),
        out=str(out),
        data=J.DataChoice(chats_of="tiny-chat", database=str(db)),
        train={**TRAIN, **train},
    )


def test_chat_text_keeps_each_reply_once(chatted) -> None:
    _, _, db = chatted
    with ConversationStore(db) as store:
        summary = summarize(store, "tiny-chat")
        text = chat_text(store, "tiny-chat")
        assert summarize(store, "another-model").replies == 0
    assert (summary.conversations, summary.replies) == (12, 24)
    assert summary.lines[0].startswith("write a poem \u2014 2 replies: ")
    # The first reply of each chat is inside the second one's prompt: kept once.
    assert len(text.sequences) == 12
    assert text.tokens < summary.tokens


def test_a_job_trains_from_chats_and_the_decoder_pairs(chatted, home) -> None:
    _, model_dir, db = chatted
    out = home / "home" / "models" / "tiny-chat-MTP-mine"
    folder = J.create_job(_spec(model_dir, db, out))
    seen: list[dict] = []
    assert J.run_job(folder, seen.append) == "done"
    status = J.read_status(folder)
    kinds = [e["kind"] for e in seen]
    assert {"data", "step", "val"} <= set(kinds) and seen[-1]["state"] == "done"
    result = status["result"]
    # Training beats the untrained head on the held-out replies.
    assert result["acceptance"] > result["baseline"]
    assert status["expected"]["speedup"] > 0 and status["sources"]["chats"]["replies"] == 24
    cfg = json.loads((out / "config.json").read_text())["lookahead_decoder"]
    assert cfg["trained"]["data"]["tokens_by_kind"].keys() == {"chats"}
    assert cfg["trained"]["untrained_validation"]["acc1"] == result["baseline"]
    # The catalog pairs it with its model.
    models = library.local_models() + [library.describe_folder(model_dir)]
    choices = decoder_catalog.decoders_for(model_dir, models)
    mine = [c for c in choices if c.path == str(out)]
    assert mine and mine[0].ok and mine[0].kind == "mtp", choices
    # Retraining continues from it and keeps the earlier round on record.
    again = J.create_job(_spec(model_dir, db, out, steps=10, init=str(out)))
    assert J.run_job(again) == "done"
    cfg = json.loads((out / "config.json").read_text())["lookahead_decoder"]
    assert cfg["trained"]["init"] == "continued from the decoder"
    assert len(cfg["trained"]["earlier_rounds"]) == 1
    assert not list(out.parent.glob(".*partial")) and not list(out.parent.glob(".*old"))


def _wait(predicate, seconds: float = 120.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_pause_and_resume_in_its_own_process(chatted, home) -> None:
    _, model_dir, db = chatted
    out = home / "home" / "models" / "tiny-chat-MTP-paused"
    folder = J.create_job(_spec(model_dir, db, out, steps=400, val_every=50))
    proc = J.launch(folder)
    try:
        _wait(lambda: J.read_status(folder).get("step", 0) >= 10)
        assert J.is_running(folder) and J.load_job(folder).state == "training"
        J.request_stop(folder, "pause")
        assert proc.wait(60) == 0
        paused = J.read_status(folder)
        assert paused["state"] == "paused" and not J.is_running(folder)
        stopped_at = json.loads((folder / "run" / "state.json").read_text())["state"]["step"]
        assert 10 <= stopped_at < 400
        assert not out.exists()  # nothing half-written is in the library
        # Resume with fewer steps left to run: the checkpoint's step carries on.
        spec = J.read_spec(folder)
        spec.train["steps"] = stopped_at + 20
        J.create_job(spec, folder)
        proc = J.launch(folder)
        assert proc.wait(120) == 0
        status = J.read_status(folder)
        assert status["state"] == "done", status
        assert status["step"] == stopped_at + 20 and out.is_dir()
        steps = [e["step"] for e in J.read_events(folder)[0] if e["kind"] == "step"]
        assert steps == sorted(steps)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_crashed_run_shows_as_interrupted(chatted, home) -> None:
    _, model_dir, db = chatted
    folder = J.create_job(_spec(model_dir, db, home / "x"))
    J._update(folder, state="training", pid=999_999)
    assert J.load_job(folder).state == "interrupted"
    J.request_stop(folder, "cancel")
    assert J.load_job(folder).state == "cancelled"
    J.remove_job(folder)
    assert not folder.exists()


def test_bad_inputs_fail_with_a_message(chatted, home, monkeypatch) -> None:
    root, model_dir, db = chatted
    few = J.create_job(
        J.JobSpec(
            model=str(model_dir),
            out=str(home / "few"),
            data=J.DataChoice(chats_of="nobody", database=str(db)),
            train=TRAIN,
        )
    )
    assert J.run_job(few) == "failed"
    assert "Too little text to train on: 0 tokens of chats" in J.read_status(few)["message"]

    decoder = J.create_job(_spec(Path(__file__).parents[2] / "resources/decoders/SmolLM2-135M-Instruct-MTP", db, home / "d"))  # fmt: skip
    assert J.run_job(decoder) == "failed"
    assert "It is a decoder itself" in J.read_status(decoder)["message"]

    missing = J.create_job(
        J.JobSpec(model=str(model_dir), out=str(home / "m"), data=J.DataChoice(folders=["/nope"]))
    )
    assert J.run_job(missing) == "failed"
    assert "/nope does not exist" in J.read_status(missing)["message"]

    class Full:
        free = 10_000

    monkeypatch.setattr(J.shutil, "disk_usage", lambda _: Full)
    full = J.create_job(_spec(model_dir, db, home / "full"))
    assert J.run_job(full) == "failed"
    assert "Not enough disk" in J.read_status(full)["message"]
    assert not (home / "full").exists()


def test_trainable_says_why_not() -> None:
    moe = {"model_type": "qwen3_moe", "num_experts": 8, "hidden_size": 64}
    assert "mixture-of-experts" in J.trainable(Path("/nonexistent"), moe)
    assert "not one mlx-lm can run" in J.trainable(Path("/nonexistent"), {"model_type": "zzz"})
    assert J.trainable(Path("/nonexistent"), {"model_type": "llama"}) is None


def test_expected_speedup_from_costs() -> None:
    from engine.bench import expected_speedup

    verify = {1: 1.0, 2: 1.1, 3: 1.2, 4: 1.3}
    # k = 2: (1 + 0.6 + 0.36) / (1.2 + 2 * 0.05) = 1.508 beats k = 1 (1.6 / 1.15) and 3.
    k, x = expected_speedup(verify, 0.05, [0.6, 0.6])
    assert k == 2 and x == pytest.approx(1.96 / 1.3)
    k, x = expected_speedup(verify, 1.0, [0.1])  # a slow drafter: below 1, best k = 1
    assert k == 1 and x < 1
    assert expected_speedup({1: 1.0}, 0.1, [0.9]) == (0, 1.0)
