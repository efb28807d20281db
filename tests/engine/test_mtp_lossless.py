"""MTP drafting on tiny models of every family: at temperature 0 the output is the
plain decoding's, token for token, with the built-in module and with each separate
decoder format, for k = 1..4; drafts are both accepted and rejected."""

from __future__ import annotations

import pytest

from engine.events import Finished, Generate
from engine.settings import DecoderSettings, SamplingSettings
from tests.mtp_models import (
    FAMILIES,
    make_target,
    write_lookahead,
    write_mlx_vlm,
    write_nextn,
    write_sidecar_file,
)

PROMPTS = ("Hello world, the", "def f(x):\n    return")
LAYER_SCALE: dict[str, float] = {}
COUNTS: dict[str, tuple[int, int]] = {}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("mtp-lossless")


def separate_decoders(built: dict, root) -> dict[str, str]:
    """The same module written in each separate format its family is published in."""
    fam, name = built["family"], built["family"]
    out: dict[str, str] = {}
    if fam in ("deepseek_v3", "deepseek_v32", "glm4_moe"):
        out["nextn"] = str(write_nextn(built, root / f"{name}-nextn"))
    if fam.startswith("qwen3"):
        out["mlx-vlm"] = str(write_mlx_vlm(built, root / f"{name}-mlx-vlm"))
    if fam in ("mimo", "deepseek_v3"):
        out["sidecar"] = str(write_sidecar_file(built, root / f"{name}-sidecar"))
    if fam == "llama":
        out["own"] = str(write_lookahead(built, root / "llama-head"))
        half = list(range(0, built["config"]["vocab_size"], 2))
        out["own-draft-vocab"] = str(write_lookahead(built, root / "llama-head-dv", half))
    return out


def generate(service, model, prompt, decoder="none", k=None, rid="r", max_tokens=16):
    sampling = SamplingSettings(max_tokens=max_tokens, max_loop_count=0)
    adaptive = k is None
    events = list(
        service.stream(
            Generate(
                rid,
                model,
                prompt=prompt,
                sampling=sampling,
                decoder=DecoderSettings(decoder, draft_tokens=k, adaptive=adaptive),
            )
        )
    )
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1]


@pytest.mark.parametrize("family", FAMILIES + ("llama",))
def test_greedy_output_is_identical_with_mtp(service, root, family):
    built = make_target(root / family, family, layer_scale=LAYER_SCALE.get(family, 0.3))
    target = str(built["path"])
    forms = {} if family == "llama" else {"built-in": "auto"}
    forms.update(separate_decoders(built, root))
    accepted = rejected = 0
    for p, prompt in enumerate(PROMPTS):
        plain = generate(service, target, prompt)
        assert len(plain.token_ids) >= 8  # long enough to say something
        for form, decoder in forms.items():
            for k in (1, 2, 3, 4):
                out = generate(service, target, prompt, decoder, k, f"{family}-{form}-{k}-{p}")
                assert out.token_ids == plain.token_ids, (form, k, prompt)
                assert out.stats.decoder.startswith("MTP ("), out.stats.decoder
                assert out.stats.drafted > 0
                assert len(out.stats.per_position_acceptance) <= k
                accepted += out.stats.accepted
                rejected += out.stats.drafted - out.stats.accepted
        # adaptive k (the default): undrafted calibration rounds resync the head too
        out = generate(service, target, prompt, next(iter(forms.values())), None, f"{family}-a{p}")
        assert out.token_ids == plain.token_ids
    COUNTS[family] = (accepted, rejected)
    print(f"\n{family}: forms {sorted(forms)}, accepted {accepted}, rejected {rejected}")
    assert accepted > 0 and rejected > 0


@pytest.mark.parametrize("family", FAMILIES + ("llama",))
def test_copy_head_on_bigram_target_accepts_every_draft(service, root, family):
    """layer_scale = mtp_scale = 0: the head provably drafts the target's greedy token."""
    built = make_target(root / f"{family}-bigram", family, seed=2, layer_scale=0.0, mtp_scale=0.0)
    target = str(built["path"])
    decoder = (
        str(write_lookahead(built, root / "llama-bigram-head")) if family == "llama" else "auto"
    )
    plain = generate(service, target, PROMPTS[0], max_tokens=20)
    out = generate(service, target, PROMPTS[0], decoder, 3, f"{family}-bigram", max_tokens=20)
    assert out.token_ids == plain.token_ids
    assert out.stats.drafted >= 12
    assert out.stats.acceptance_rate == 1.0, out.stats
    assert out.stats.mean_accepted_length > 3.0  # k accepted + the bonus, per round
