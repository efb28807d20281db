"""MTP head training on a tiny random model: data, loss, resume, export, pairing."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from engine.model_loader import load_model
from engine.mtp_train import data as D
from engine.mtp_train.corpus import TextFile
from engine.mtp_train.export import export_decoder, head_weights_from
from engine.mtp_train.train import TrainConfig, Trainer
from tests.tiny_models import make_tiny_model

PROMPTS = [
    ("code", "def add(a, b):"),
    ("chat", "hello there"),
    ("story", "once upon a time"),
    ("code", "for i in range(10):"),
    ("chat", "what is a cat?"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple:
    """A tiny target and its cached training data (built once for the module)."""
    root = tmp_path_factory.mktemp("mtp")
    model = load_model(str(make_tiny_model(root / "tiny", seed=3)))
    text = root / "text.txt"
    text.write_text(("the quick brown fox jumps over the lazy dog. " * 40) + "x = 1\n" * 80)
    folder = D.prepare(model, files=[TextFile("code", text)], prompts=PROMPTS, max_new=24)
    return model, folder


def test_dataset_rows_are_the_targets_own_predictions(tiny) -> None:
    model, folder = tiny
    data = D.load_dataset(folder)
    assert data.n_sequences == len(PROMPTS) + data.manifest["text_windows"]
    assert data.hidden.shape == (len(data.tokens), 64)
    # In a greedy reply each generated token is the target's argmax one step before.
    s = data.sequence(0)
    toks, top = data.tokens[s], data.top_ids[s]
    n_prompt = len(model.chat.render([_msg(PROMPTS[0][1])]).token_ids)
    assert np.array_equal(toks[n_prompt:], top[n_prompt - 1 : -1, 0])
    # Building again computes nothing new, and a recipe sharing the replies reuses them.
    manifest = folder.parent / "manifest.json"
    before = json.loads(manifest.read_text())["units"]
    other = D.build_dataset(model, folder.parent, PROMPTS, [], max_new=24)
    assert json.loads(manifest.read_text())["units"] == before
    assert D.load_dataset(other).n_sequences == len(PROMPTS)


def _msg(text: str):
    from engine.events import ChatMessage

    return ChatMessage("user", text)


def _config(**over) -> TrainConfig:
    base = dict(steps=30, batch=4, window=32, lr=3e-3, warmup=2, val_every=10, draft_vocab=128)
    base.update(over)
    return TrainConfig(**base)


def test_loss_decreases_and_validation_reports_acceptance(tiny, tmp_path) -> None:
    model, folder = tiny
    trainer = Trainer(model, D.load_dataset(folder), tmp_path / "run", _config())
    losses: list[float] = []
    state = trainer.run(lambda st, info: losses.append(info["loss"]))
    assert state.step == 30 and len(state.history) == 3
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    val = state.history[-1]
    assert 0.0 <= val["all"]["acc1"] <= 1.0 and val["all"]["positions"] > 0
    assert len(trainer.draft_ids) == 128 and (tmp_path / "run" / "best.safetensors").exists()


def test_resume_continues_from_the_saved_step(tiny, tmp_path) -> None:
    model, folder = tiny
    data = D.load_dataset(folder)
    straight = Trainer(model, data, tmp_path / "a", _config(steps=20))
    straight.run()
    first = Trainer(model, data, tmp_path / "b", _config(steps=20, val_every=10, minutes=1e-6))
    assert first.run().step == 1  # out of time after one step: checkpointed and stopped
    again = Trainer(model, data, tmp_path / "b", _config(steps=20))
    assert again.state.step == 1
    steps: list[int] = []
    again.run(lambda st, info: steps.append(st.step))
    assert steps[0] == 2 and again.state.step == 20
    a = dict(_flat(straight.head))
    for name, value in _flat(again.head):
        assert mx.allclose(a[name], value, atol=1e-4).item(), name


def _flat(module):
    from mlx.utils import tree_flatten

    return tree_flatten(module.parameters())


def test_export_pairs_and_decodes_losslessly(tiny, tmp_path) -> None:
    model, folder = tiny
    trainer = Trainer(model, D.load_dataset(folder), tmp_path / "run", _config(steps=10))
    state = trainer.run()
    out = export_decoder(
        tmp_path / "tiny-MTP",
        head_weights_from(trainer.best_head_path()),
        trainer.draft_ids,
        "tiny",
        model.path,
        model.config,
        {"steps": state.step, "validation": state.best, "files": ["text.txt"]},
    )
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["lookahead_decoder"]["draft_vocab_size"] == 128
    assert "first draft" in (out / "README.md").read_text()
    _check_lossless(model, out)


def _check_lossless(model, decoder: Path) -> None:
    registry = pytest.importorskip("engine.drafters.registry")
    from engine.events import Finished, Generate
    from engine.service import EngineService
    from engine.settings import DecoderSettings, SamplingSettings

    drafter = registry.open_drafter(model, str(decoder))
    assert drafter.needs_hidden
    service = EngineService().start()
    try:
        outputs = []
        for name, k in (("none", None), (str(decoder), 3)):
            request = Generate(
                request_id=f"t-{name[-4:]}-{k}",
                model=str(model.path),
                prompt="def add(a, b):",
                sampling=SamplingSettings(max_tokens=40, max_loop_count=0),
                decoder=DecoderSettings(decoder=name, draft_tokens=k, adaptive=False),
            )
            done = service.run(request)
            assert isinstance(done, Finished)
            outputs.append(done)
        assert outputs[0].token_ids == outputs[1].token_ids
        assert outputs[1].stats.drafted > 0
    finally:
        service.close()


@pytest.mark.starter
@pytest.mark.slow
def test_shipped_head_is_the_starters_default_and_lossless(starter_model_dir) -> None:
    from engine.library import shipped_models
    from engine.settings import DecoderSettings

    shipped = [m.path for m in shipped_models() if m.id == "SmolLM2-135M-Instruct-MTP"]
    if not shipped:
        pytest.skip("the starter's MTP head is not in resources/decoders")
    from engine.drafters import create_drafter

    model = load_model(str(starter_model_dir))
    drafter, _note = create_drafter(model, DecoderSettings(decoder="auto"))
    assert drafter is not None and drafter.name.startswith("MTP")
    _check_lossless(model, shipped[0])
