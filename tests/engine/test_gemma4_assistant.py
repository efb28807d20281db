"""Gemma 4 assistant drafters (``gemma4_assistant`` repos) for mlx-lm's ``gemma4``
behind the one verification loop: drafts are mlx-vlm's for the same weights, target
K/V and hidden; output is plain decoding's at temperature 0 for k = 1..4 and beyond
(with a sliding window that wraps, and with KV-shared target layers); refusals say
why."""

from __future__ import annotations

import json
import shutil
import threading

import mlx.core as mx
import pytest
from mlx_lm.models.cache import RotatingKVCache

from engine.chat import Prompt
from engine.decoder_catalog import verdict
from engine.drafters import registry
from engine.drafters.policy import DraftLengthPolicy
from engine.errors import DecoderError
from engine.events import Finished, Generate
from engine.generate import Generation
from engine.model_loader import load_model
from engine.settings import DecoderSettings, SamplingSettings
from tests.feature_models import make_assistant, make_gemma4_target, make_target

PROMPTS = ("Hello world, the", "def f(x):\n    return")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("gemma4-assistant")


@pytest.fixture(scope="module")
def target(root):
    return make_gemma4_target(root / "gemma4")


class _Spy:
    """Our drafter, checked at each proposal against mlx-vlm's assistant loaded by
    mlx-vlm, given the shared K/V mlx-vlm itself reads from the target's cache."""

    def __init__(self, ours, reference, lm):
        self.ours, self.ref, self.lm = ours, reference, lm
        self.name, self.needs_hidden = ours.name, True
        self.max_draft_tokens = ours.max_draft_tokens
        self.target_cache = None
        self.sampling = None
        self.rounds = 0

    def begin(self, prompt_ids, hidden, reused):
        self.ours.target_cache = self.target_cache
        self.ours.begin(prompt_ids, hidden, reused)
        self.hidden = hidden[-1:][None]

    def propose(self, last, k):
        from mlx_vlm.speculative.mtp import _mtp_shared_kv_from_prompt_cache

        mine = self.ours.propose(last, k)
        kv = _mtp_shared_kv_from_prompt_cache(self.lm, self.target_cache)
        # mlx-vlm puts a ring buffer in temporal order only for its own cache class;
        # the target here is mlx-lm's, so do what it would do for one of its own.
        for layer, c in zip(self.lm.model.layers, self.target_cache, strict=False):
            if isinstance(c, RotatingKVCache):
                keys, values = c.state[:2]
                kv[layer.layer_type] = (c._temporal_order(keys), c._temporal_order(values))
        offset = self.target_cache[0].offset
        self.ref.set_shared_kv(kv, offset, position=offset - 1, kv_valid_len=offset)
        theirs = self.ref.draft_block(last, self.hidden, None, k + 1, lambda x: mx.argmax(x, -1))
        assert mx.array(mine).tolist() == theirs[0].tolist(), (self.rounds, k)
        self.rounds += 1
        return mine

    def draft_logprobs(self):
        return None

    def commit(self, verified, next_token, hidden):
        self.ours.commit(verified, next_token, hidden)
        self.hidden = hidden[-1:][None]

    def memory_bytes(self):
        return 0

    def close(self):
        self.ours.close()


def test_drafts_equal_mlx_vlm(root, target):
    from mlx_vlm.utils import load_model as vlm_load

    folder = make_assistant(root / "random", target, seed=4)
    loaded = load_model(str(target["path"]))
    ref = vlm_load(folder)
    ref.bind(loaded.model)
    for k in (1, 4):
        for prompt in PROMPTS:
            spy = _Spy(registry.open_drafter(loaded, str(folder)), ref, loaded.model.language_model)
            ids = tuple(loaded.tokenizer.encode(prompt))
            Generation(
                "t", loaded, Prompt(ids, prompt, False), SamplingSettings(max_tokens=20),
                lambda e: None, threading.Event(), drafter=spy,
                policy=DraftLengthPolicy(k=k, adaptive=False),
            ).run()  # fmt: skip
            assert spy.rounds >= 4


def _generate(service, model, prompt, decoder="none", k=None, rid="r", max_tokens=24):
    events = list(
        service.stream(
            Generate(
                rid, model, prompt=prompt,
                sampling=SamplingSettings(max_tokens=max_tokens, max_loop_count=0),
                decoder=DecoderSettings(decoder, draft_tokens=k, adaptive=k is None),
            )
        )
    )  # fmt: skip
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1]


@pytest.mark.parametrize("shared", [0, 2], ids=["own-kv", "kv-shared-layers"])
def test_greedy_output_is_identical_with_an_assistant(service, root, shared):
    types = ["sliding_attention", "full_attention"] * 2  # both types before the shared ones
    built = make_gemma4_target(
        root / f"target-{shared}", seed=2, num_kv_shared_layers=shared, layer_types=types
    )
    path = str(built["path"])
    decoders = {
        "copy": str(make_assistant(root / f"copy-{shared}", built, copy=True, scale=0.2)),
        "random": str(make_assistant(root / f"rand-{shared}", built, seed=6)),
    }
    accepted = rejected = 0
    for p, prompt in enumerate(PROMPTS):
        plain = _generate(service, path, prompt)
        for name, decoder in decoders.items():
            for k in (1, 2, 3, 4, 8, None):
                out = _generate(service, path, prompt, decoder, k, f"g4-{shared}-{name}-{k}-{p}")
                assert out.token_ids == plain.token_ids, (name, k, prompt)
                assert out.stats.decoder.startswith("Gemma 4 assistant")
                accepted += out.stats.accepted
                rejected += out.stats.drafted - out.stats.accepted
    assert accepted > 0 and rejected > 0, (accepted, rejected)


def _copy(src, dst, **over):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(over)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_refused_pairings_say_why(root, target):
    good = make_assistant(root / "good", target)
    assert verdict(target["path"], good).ok
    qwen = make_target(root / "qwen3")
    v = verdict(qwen["path"], good)
    assert not v.ok and "made for gemma4 models" in v.reason, v
    wide = _copy(good, root / "wide", backbone_hidden_size=128)
    assert "hidden size 128" in verdict(target["path"], wide).reason
    loaded = load_model(str(target["path"]))
    with pytest.raises(DecoderError, match="hidden size 128"):
        registry.open_drafter(loaded, str(wide))
    corrupt = _copy(good, root / "corrupt")
    data = (corrupt / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(data[:100])
    with pytest.raises(DecoderError, match="corrupt"):
        registry.open_drafter(loaded, str(corrupt))
