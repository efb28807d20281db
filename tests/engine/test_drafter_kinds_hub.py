"""Each new drafter kind downloads from the (fake) hub, pairs in the catalog by its
repo id, and drafts for its target with output identical to plain decoding."""

from __future__ import annotations

import pytest

from engine.decoder_catalog import decoders_for
from engine.events import Finished, Generate
from engine.hub import download_model
from engine.library import local_models
from engine.settings import DecoderSettings, SamplingSettings
from tests.feature_models import (
    dflash_config,
    make_assistant,
    make_dflash,
    make_gemma4_target,
    make_target,
)
from tests.hubserver import folder_files, hub  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("no_shipped_decoders")


def _run(service, model, decoder, k):
    events = list(
        service.stream(
            Generate(
                f"{decoder}-{k}", model, prompt="Hello world, the",
                sampling=SamplingSettings(max_tokens=16, max_loop_count=0),
                decoder=DecoderSettings(decoder, draft_tokens=k, adaptive=k is None),
            )
        )
    )  # fmt: skip
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1]


def test_dflash_and_assistant_repos_download_pair_and_draft(hub, tmp_path):  # noqa: F811
    qwen = make_target(tmp_path / "src-qwen")
    gemma = make_gemma4_target(tmp_path / "src-gemma")
    repos = {
        "org/tiny-qwen3": qwen["path"],
        "z-lab/tiny-qwen3-DFlash-b16": make_dflash(tmp_path / "src-df", dflash_config(qwen)),
        "org/tiny-gemma4": gemma["path"],
        "org/tiny-gemma4-assistant": make_assistant(tmp_path / "src-as", gemma, copy=True),
    }
    for repo_id, folder in repos.items():
        hub.add_repo(repo_id, folder_files(folder))
        download_model(repo_id)
    models = {m.id: m for m in local_models()}
    for target, decoder, kind in (
        ("org/tiny-qwen3", "z-lab/tiny-qwen3-DFlash-b16", "dflash"),
        ("org/tiny-gemma4", "org/tiny-gemma4-assistant", "assistant"),
    ):
        assert models[decoder].is_decoder and models[decoder].decoder_kind == kind
        choices = {c.value: c for c in decoders_for(models[target].path, list(models.values()))}
        assert choices[decoder].ok and choices[decoder].kind == kind, choices[decoder]
        from engine.service import EngineService

        service = EngineService().start()
        try:
            plain = _run(service, target, "none", None)
            for k in (1, 4, None):
                out = _run(service, target, decoder, k)
                assert out.token_ids == plain.token_ids
                assert out.stats.drafted > 0
            auto = _run(service, target, "auto", 2)  # auto picks it too
            assert auto.stats.decoder == out.stats.decoder
        finally:
            service.close()
