"""DeepSeek-V4.1 targets: caches that cannot be trimmed, and a drafter that is not MTP.

Every layer cache of mlx-lm's ``deepseek_v41`` (sliding window, compressed groups,
indexer keys) is restored from a snapshot and the verified tokens replayed after a
rejection; the tiny model's window is 8 tokens and two of its layers compress in
groups of 4, so these generations evict and compress across rollbacks.
"""

from __future__ import annotations

import mlx.core as mx
import pytest

from engine.drafters import create_drafter, registry
from engine.drafters.draft_model import DraftModelDrafter
from engine.drafters.lookup import PromptLookupDrafter
from engine.generate import Generation
from engine.model_loader import load_model
from engine.settings import DecoderSettings, ModelSettings
from tests.deepseek_v41_models import make_deepseek_v41
from tests.drafting import generate, next_token_logits

PROMPTS = ("abc abc abc abc abc abc", "def f(x):\n    return f(x) + f(x)")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return make_deepseek_v41(tmp_path_factory.mktemp("v41") / "DeepSeek-V4.1-tiny", dspark=True)


@pytest.fixture(scope="module")
def loaded(built):
    return load_model(str(built["path"]))


@pytest.fixture(scope="module")
def draft(tmp_path_factory):
    path = tmp_path_factory.mktemp("v41-draft") / "DeepSeek-V4.1-tiny-draft"
    return load_model(str(make_deepseek_v41(path, perturb=0.3)["path"]))


def run(loaded, prompt, drafter=None, k=3, adaptive=False, max_tokens=40) -> Generation:
    return generate(loaded, prompt, drafter, k, adaptive, max_tokens)


def test_checkpoint_in_deepseek_naming_loads_as_built(built):
    from mlx_lm.models import deepseek_v41

    # The checkpoint's own dtype: every weight must land where it was built, bit for bit
    # (the default CPU policy would cast to bf16 and multiply through the native kernel).
    as_stored = load_model(str(built["path"]), ModelSettings(dtype="native"))
    ref = deepseek_v41.Model(deepseek_v41.ModelArgs.from_dict(built["config"]))
    ref.load_weights(list(built["params"].items()))
    x = mx.array([list(range(3, 30))])
    assert mx.array_equal(ref(x), as_stored.model(x)).item()


def test_drafting_is_lossless_through_snapshot_and_replay(loaded, draft):
    accepted = rejected = 0
    for prompt in PROMPTS:
        plain = run(loaded, prompt).finished
        assert plain.reason == "length"
        cases = [(PromptLookupDrafter(), k, False) for k in (1, 2, 3, 4)]
        cases += [(DraftModelDrafter(loaded, draft), k, False) for k in (1, 3)]
        cases += [(DraftModelDrafter(loaded, draft), 4, True)]
        for drafter, k, adaptive in cases:
            out = run(loaded, prompt, drafter, k, adaptive).finished
            assert out.token_ids == plain.token_ids, (drafter.name, k, prompt)
            accepted += out.stats.accepted
            rejected += out.stats.drafted - out.stats.accepted
    assert accepted > 20 and rejected > 20, (accepted, rejected)


def test_target_cache_after_drafting_matches_plain_decoding(loaded, draft):
    plain = run(loaded, PROMPTS[1], max_tokens=48)
    spec = run(loaded, PROMPTS[1], DraftModelDrafter(loaded, draft), k=3, max_tokens=48)
    stats = spec.finished.stats
    assert spec.finished.token_ids == plain.finished.token_ids
    assert 0 < stats.accepted < stats.drafted
    from_plain, from_spec, fresh = next_token_logits(loaded, plain, spec)
    assert mx.allclose(from_plain, from_spec, atol=1e-4).item()
    assert mx.allclose(from_spec, fresh, atol=1e-4).item()


def test_draft_model_memory_counts_its_window_cache(loaded, draft):
    drafter = DraftModelDrafter(loaded, draft)
    empty = drafter.memory_bytes()
    drafter.begin(list(loaded.tokenizer.encode(PROMPTS[0])), None, 0)
    drafter.propose(5, 3)
    assert drafter.memory_bytes() > empty


def test_dspark_module_is_not_taken_for_mtp_and_auto_picks_dspark(built, loaded):
    from engine.drafters.dspark import DSparkDrafter
    from engine.drafters.mtp.sources import builtin_source

    _, note = builtin_source(loaded)
    assert "carries a DSpark drafter, not an MTP module" in note and "blocks of 5" in note
    drafter, note = create_drafter(loaded, DecoderSettings("auto"))
    assert isinstance(drafter, DSparkDrafter), note
    assert isinstance(registry.open_drafter(loaded, str(built["path"])), DSparkDrafter)


def test_library_and_api_do_not_offer_dspark_as_built_in_mtp(built):
    from engine.compat import carries_mtp
    from engine.hub.describe import mtp_layers

    assert carries_mtp(built["path"]) == ""
    assert mtp_layers(built["config"]) == 0
    assert mtp_layers({**built["config"], "dspark_block_size": None}) == 3
