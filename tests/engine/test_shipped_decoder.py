"""The starter's MTP head ships in resources/decoders: every surface offers it."""

from __future__ import annotations

import shutil

import pytest

from engine.decoder_catalog import auto_choice, decoders_for
from engine.library import find_model, local_models
from engine.server.catalog import DECODER_TAG, ModelCatalog

pytestmark = pytest.mark.starter
HEAD = "SmolLM2-135M-Instruct-MTP"


@pytest.fixture
def library_with_starter(starter_model_dir, tmp_path, monkeypatch):
    models = tmp_path / "models"
    shutil.copytree(starter_model_dir, models / starter_model_dir.name)
    monkeypatch.setenv("LOOKAHEAD_MODELS_DIR", str(models))
    return find_model(starter_model_dir.name)


def test_the_shipped_head_is_the_starters_auto_choice(library_with_starter):
    choices = decoders_for(library_with_starter, local_models())
    head = next(c for c in choices if c.value == HEAD)
    assert head.ok and head.kind == "mtp" and head.origin == "shipped", head.reason
    assert head.size_bytes > 1_000_000  # its weights, shown as the decoder's memory
    assert auto_choice(choices) == head
    assert choices[-1].value == "lookup"


def test_the_api_lists_the_shipped_head(library_with_starter):
    ids = [m.id for m in ModelCatalog(ttl_s=0).listing()]
    assert f"{library_with_starter.id}{DECODER_TAG}{HEAD}" in ids
    assert f"{library_with_starter.id}{DECODER_TAG}lookup" in ids


def test_lookahead_models_lists_it_under_the_starter(library_with_starter, capsys):
    from engine.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(library_with_starter.id))
    assert row.rstrip().endswith("decoder")  # the MTP column
    assert f"decoder {HEAD} (shipped with Lookahead) pairs with it" in out


def test_a_shipped_decoder_cannot_be_deleted(library_with_starter):
    from engine.errors import EngineError
    from engine.library import delete_model

    with pytest.raises(EngineError, match="ships with Lookahead"):
        delete_model(HEAD)
