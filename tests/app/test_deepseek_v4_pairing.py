"""A tiny DeepSeek-V4 target and its deepseek_v4_mtp decoder repo, downloaded from the
test hub: they pair on the Models page, and decode identically with the decoder on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("mlx_vlm.models.deepseek_v4")

from app.library.models_page import ModelsPage
from engine.deepseek_v4.mtp import V4MTPDrafter
from engine.drafters import create_drafter
from engine.hub import download_model
from engine.model_loader import load_model
from engine.settings import DecoderSettings
from tests import deepseek_v4_models as V4
from tests.drafting import generate
from tests.hubserver import folder_files, hub  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("no_shipped_decoders")

TARGET = "mlx-community/DeepSeek-V4-Flash-tiny-4bit"
DECODER = "mlx-community/DeepSeek-V4-Flash-tiny-MTP"
WAIT_MS = 20000


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("v4hub")
    raw = V4.make_raw(root / "raw", **V4.QUANT_SIZES)["path"]
    return {
        "target": V4.convert_mlx(raw, root / "target", quantize=True, q_bits=4),
        "decoder": V4.split_mtp(raw, root / "decoder"),
    }


def test_pair_downloads_pairs_on_the_models_page_and_decodes_identically(
    qtbot,
    themed,
    hub,  # noqa: F811
    folders,
):
    hub.add_repo(TARGET, folder_files(folders["target"]), downloads=100)
    hub.add_repo(DECODER, folder_files(folders["decoder"]), downloads=10)
    download_model(TARGET)
    download_model(DECODER)

    page = ModelsPage()
    qtbot.addWidget(page)
    page.resize(1200, 800)
    with qtbot.waitSignals([page.results.sig_results, page.library.sig_snapshot], timeout=WAIT_MS):
        page.show()
    library = page.library
    qtbot.waitUntil(lambda: TARGET in library.rows, timeout=WAIT_MS)
    assert DECODER not in library.rows  # it pairs, so it is listed under its model
    (line,) = library.rows[TARGET].decoder_rows
    assert line.match.decoder.id == DECODER and line.badge.text() == "pairs with it"
    assert "deepseek_v4 family" in line.note.text()
    shot = Path(os.environ.get("LOOKAHEAD_TEST_SHOTS", str(Path.cwd() / "build")))
    shot.mkdir(parents=True, exist_ok=True)
    assert page.grab().save(str(shot / "deepseek_v4_pair.png"))
    page.shutdown()

    loaded = load_model(TARGET)
    drafter, note = create_drafter(loaded, DecoderSettings("auto"))
    assert isinstance(drafter, V4MTPDrafter), note
    prompt = "def f(x):\n    return f(x) + f(x)"
    off = generate(loaded, prompt, max_tokens=30).finished
    on = generate(loaded, prompt, drafter, k=2, max_tokens=30).finished
    assert on.token_ids == off.token_ids
    assert on.stats.drafted > 0


V41 = "deepseek-ai/DeepSeek-V4.1-tiny"
V41_DSPARK = "mlx-community/DeepSeek-V4.1-tiny-DSpark"


def test_v41_and_its_dspark_repo_pair_on_the_models_page(
    qtbot,
    themed,
    hub,  # noqa: F811
    tmp_path,
):
    from engine.drafters.dspark import DSparkDrafter
    from tests.deepseek_v41_models import make_deepseek_v41
    from tests.dspark_models import split_v4_dspark

    built = make_deepseek_v41(tmp_path / "v41", dspark=True, layer_scale=0.1, bigram=0.1)
    hub.add_repo(V41, folder_files(built["path"]), downloads=100)
    hub.add_repo(V41_DSPARK, folder_files(split_v4_dspark(built["path"], tmp_path / "ds")))
    download_model(V41)
    download_model(V41_DSPARK)

    page = ModelsPage()
    qtbot.addWidget(page)
    with qtbot.waitSignals([page.results.sig_results, page.library.sig_snapshot], timeout=WAIT_MS):
        page.show()
    library = page.library
    qtbot.waitUntil(lambda: V41 in library.rows, timeout=WAIT_MS)
    assert V41_DSPARK not in library.rows  # it pairs, so it is listed under its model
    (line,) = library.rows[V41].decoder_rows
    assert line.match.decoder.id == V41_DSPARK and line.badge.text() == "pairs with it"
    assert "DSpark block drafter" in line.note.text()
    page.shutdown()

    loaded = load_model(V41)
    drafter = create_drafter(loaded, DecoderSettings(V41_DSPARK))[0]
    assert isinstance(drafter, DSparkDrafter)
    prompt = "def f(x):\n    return f(x) + f(x)"
    off = generate(loaded, prompt, max_tokens=30).finished
    on = generate(loaded, prompt, drafter, k=5, max_tokens=30).finished
    assert on.token_ids == off.token_ids and on.stats.drafted > 0
