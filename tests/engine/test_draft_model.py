"""Draft-model drafting: lossless at temperature 0, distribution-preserving above it."""

from __future__ import annotations

import shutil
from collections import Counter

import mlx.core as mx
import pytest

from engine.events import Failed, Finished, Generate
from engine.generate import Generation
from engine.settings import DecoderSettings, SamplingSettings
from tests.drafting import total_variation
from tests.tiny_models import make_tiny_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("draft")
    target = make_tiny_model(root / "target", seed=1)
    other = make_tiny_model(root / "other-draft", seed=2)  # random: mostly rejected
    twin = root / "twin-draft"  # same weights: always accepted at temperature 0
    shutil.copytree(target, twin)
    small_vocab = make_tiny_model(root / "foreign", seed=3)
    (small_vocab / "tokenizer.json").write_text(
        (small_vocab / "tokenizer.json").read_text().replace('"<|im_end|>"', '"<|im_stop|>"')
    )
    return {
        "target": str(target),
        "other": str(other),
        "twin": str(twin),
        "foreign": str(small_vocab),
    }


def generate(
    service, model, rid, prompt, decoder="none", k=None, sampling=None, sampled_drafts=True
):
    sampling = sampling or SamplingSettings(max_tokens=20, max_loop_count=0)
    events = list(
        service.stream(
            Generate(
                rid,
                model,
                prompt=prompt,
                sampling=sampling,
                decoder=DecoderSettings(
                    decoder, draft_tokens=k, adaptive=False, sampled_drafts=sampled_drafts
                ),
            )
        )
    )
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1]


@pytest.mark.parametrize("prompt", ["Hello world", "def f(x):\n    return", "1 2 3 4"])
def test_draft_model_greedy_is_lossless(service, models, prompt):
    plain = generate(service, models["target"], "p", prompt)
    accepted = rejected = 0
    for which in ("other", "twin"):
        for k in (1, 2, 3, 4):
            out = generate(service, models["target"], f"{which}{k}", prompt, models[which], k)
            assert out.token_ids == plain.token_ids, (which, k)
            accepted += out.stats.accepted
            rejected += out.stats.drafted - out.stats.accepted
            if which == "twin":
                assert out.stats.acceptance_rate > 0.9
    assert accepted > 0 and rejected > 0


def test_foreign_tokenizer_is_refused_with_reason(service, models):
    events = list(
        service.stream(
            Generate(
                "f",
                models["target"],
                prompt="hi",
                decoder=DecoderSettings(models["foreign"], draft_tokens=2),
            )
        )
    )
    assert isinstance(events[-1], Failed)
    message = events[-1].message
    assert "foreign cannot draft" in message and ("vocabulary" in message or "tokenizer" in message)
    assert service.alive


def test_auto_falls_back_to_prompt_lookup(service, models):
    out = generate(service, models["target"], "auto", "abc abc abc", "auto", 2)
    assert out.stats.decoder is not None


def _first_tokens(service, model, decoder, n_runs, temperature, seed0=1000, sampled=True):
    counts = Counter()
    for i in range(n_runs):
        s = SamplingSettings(
            temperature=temperature, seed=seed0 + i, max_tokens=2, max_loop_count=0
        )
        k = None if decoder == "none" else 3
        out = generate(service, model, f"s{i}", "The", decoder, k, s, sampled)
        counts[out.token_ids[:2]] += 1
    return counts


@pytest.mark.parametrize("sampled", [True, False], ids=["sampled-drafts", "greedy-drafts"])
def test_sampling_distribution_is_unchanged_by_drafting(service, models, sampled):
    """Joint distribution of the first two tokens with and without a draft model
    (a random one, so rejections and the residual draw happen; a twin, so
    acceptances do), at a fixed seed budget, with drafts drawn from the draft model's
    own distribution (accepted with min(1, p/q)) and with its greedy picks. A wrong
    temperature must be caught by the same statistic, so the test can fail."""
    n, bound = 250, 0.12
    plain = _first_tokens(service, models["target"], "none", n, 1.0)
    for which in ("other", "twin"):
        drafted = _first_tokens(
            service, models["target"], models[which], n, 1.0, seed0=5000, sampled=sampled
        )
        assert total_variation(plain, drafted, n) < bound, (
            which,
            plain.most_common(4),
            drafted.most_common(4),
        )
    hotter = _first_tokens(service, models["target"], "none", n, 2.0, seed0=9000)
    assert total_variation(plain, hotter, n) > bound


def test_sampled_drafts_from_a_twin_are_always_accepted(service, models):
    """Drawn from the same distribution the target samples from, a twin's drafts pass
    min(1, p/q) = 1; its greedy picks pass only with probability p(pick)."""
    s = SamplingSettings(temperature=1.5, seed=3, max_tokens=48, max_loop_count=0)
    twin = models["twin"]
    sampled = generate(service, models["target"], "tw-s", "Hello", twin, 3, s, True)
    greedy = generate(service, models["target"], "tw-g", "Hello", twin, 3, s, False)
    assert sampled.stats.drafted > 0 and greedy.stats.drafted > 0
    assert sampled.stats.acceptance_rate > 0.97
    assert greedy.stats.acceptance_rate < sampled.stats.acceptance_rate - 0.15


class _FixedDraft:
    """Always proposes the same token: isolates the acceptance rule."""

    name = "fixed"
    needs_hidden = False

    def __init__(self, token):
        self.token = token

    def begin(self, *a):
        pass

    def propose(self, last, k):
        return [self.token] * k

    def draft_logprobs(self):
        return None

    def commit(self, *a):
        pass

    def memory_bytes(self):
        return 0

    def close(self):
        pass


def test_rejection_rule_preserves_the_target_distribution():
    """Monte-Carlo check of `_accept` on a known distribution p: the first emitted
    token must follow p whether the (one-hot) draft is likely or unlikely."""
    p = mx.array([0.5, 0.25, 0.15, 0.1])
    lp = mx.log(p)[None]
    gen = Generation.__new__(Generation)
    gen.settings = SamplingSettings(temperature=1.0, seed=0)
    from engine.sampling import Sampler

    gen.sampler = Sampler(gen.settings)
    n = 4000
    for draft in (0, 3):
        counts = Counter()
        sampling_lp = mx.concatenate([lp, lp], axis=0)
        for _ in range(n):
            a, bonus = gen._accept([draft], sampling_lp, None)
            counts[draft if a == 1 else bonus] += 1
        for tok, prob in enumerate(p.tolist()):
            assert abs(counts[tok] / n - prob) < 0.03, (draft, tok, counts)


def test_sampled_draft_rule_preserves_p_and_accepts_min_p_q():
    """Monte-Carlo check of `_accept`'s q branch: drafts drawn from a known q, accepted
    with min(1, p/q), rejections drawn from norm(max(0, p - q)). The emitted token
    follows p, and drafts are accepted at sum(min(p, q)) = 0.55 (the one-hot rule on
    the same drafts would accept only E_q[p(d)] = 0.185)."""
    from engine.sampling import Sampler

    p = mx.array([0.5, 0.25, 0.15, 0.1])
    q = mx.array([0.1, 0.2, 0.3, 0.4])
    sampling_lp = mx.concatenate([mx.log(p)[None]] * 2, axis=0)
    gen = Generation.__new__(Generation)
    gen.settings = SamplingSettings(temperature=1.0, seed=0)
    gen.sampler = Sampler(gen.settings)
    draws = mx.random.categorical(mx.log(q), num_samples=6000, key=mx.random.key(1)).tolist()
    counts, accepted = Counter(), 0
    for draft in draws:
        a, bonus = gen._accept([draft], sampling_lp, mx.log(q)[None])
        accepted += a
        counts[draft if a == 1 else bonus] += 1
    n = len(draws)
    for tok, prob in enumerate(p.tolist()):
        assert abs(counts[tok] / n - prob) < 0.03, (tok, counts)
    assert abs(accepted / n - 0.55) < 0.03


def test_adaptive_k_pauses_a_poor_drafter_and_stays_lossless(service, models):
    """A random draft model loses to plain decoding: the policy pauses it (stretches
    decoded undrafted and handed to the drafter in one batch) and output is unchanged."""
    sampling = SamplingSettings(max_tokens=120, max_loop_count=0)
    plain = generate(service, models["target"], "ap", "Hello world", sampling=sampling)
    events = list(
        service.stream(
            Generate(
                "aa",
                models["target"],
                prompt="Hello world",
                sampling=sampling,
                decoder=DecoderSettings(models["other"]),  # adaptive by default
            )
        )
    )
    final = events[-1]
    assert isinstance(final, Finished)
    assert final.token_ids == plain.token_ids
    # Some rounds carried drafts, and more than the calibration went undrafted.
    from engine.drafters.policy import CALIBRATION_TOKENS

    assert final.stats.draft_rounds > 0
    assert final.stats.verify_rounds - final.stats.draft_rounds > CALIBRATION_TOKENS
