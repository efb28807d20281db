"""DFlash and DFlash2 block drafters (z-lab layouts) behind the one verification loop:
the target's layer outputs are captured exactly, the drafts are mlx-vlm's for the
same weights and inputs, output is plain decoding's at temperature 0 for k = 1..4,
the block (15) and beyond it (16, clamped), sampling keeps the target's
distribution, and bad pairings or checkpoints are refused with a reason."""

from __future__ import annotations

import json
import threading

import mlx.core as mx
import pytest

from engine.chat import Prompt
from engine.decoder_catalog import verdict
from engine.drafters import registry
from engine.drafters.policy import DraftLengthPolicy
from engine.errors import DecoderError
from engine.events import Finished, Generate
from engine.generate import Generation
from engine.model_loader import load_model
from engine.settings import DecoderSettings, ModelSettings, SamplingSettings
from engine.target import capture_layers, forward, prefill_chunk
from tests.drafting import first_tokens, total_variation
from tests.feature_models import (
    dflash2_config,
    dflash_config,
    make_dflash,
    make_sticky,
    make_target,
)

PROMPTS = ("Hello world, the", "def f(x):\n    return")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("dflash")


@pytest.fixture(scope="module")
def plain_target(root):
    return make_target(root / "target")


@pytest.fixture(scope="module")
def sticky(root):
    """A target that falls into repeating token c, and drafters that draft c."""
    built = make_target(root / "sticky-target")
    loaded = load_model(str(built["path"]))
    ids = loaded.tokenizer.encode(PROMPTS[0])
    out = _greedy(loaded, ids, 8)
    c = out[3]
    make_sticky(built, c, strength=10.0)
    return {
        "target": built,
        "c": c,
        "dflash": make_dflash(root / "sticky-dflash", dflash_config(built, mask=c), scale=0.05),
        "dflash2": make_dflash(root / "sticky-dflash2", dflash2_config(built, mask=c), scale=0.05),
    }


def _greedy(loaded, ids, n):
    toks = []
    cache = None
    from engine.kv_cache import new_cache

    cache = new_cache(loaded.model)
    logits, _ = forward(loaded.model, mx.array(ids)[None], cache, False)
    for _ in range(n):
        t = int(mx.argmax(logits[0, -1]).item())
        toks.append(t)
        logits, _ = forward(loaded.model, mx.array([[t]]), cache, False)
    return toks


# -- capture


def test_captured_layer_outputs_are_the_layers_outputs(plain_target):
    loaded = load_model(str(plain_target["path"]))
    model = loaded.model
    ids = mx.array(loaded.tokenizer.encode(PROMPTS[0]))[None]
    logits, hidden = forward(model, ids, None, (0, 2))
    # By hand: the same layers run one by one.
    from mlx_lm.models.base import create_attention_mask

    h = model.model.embed_tokens(ids)
    mask = create_attention_mask(h, None)
    outs = []
    for layer in model.model.layers:
        h = layer(h, mask, None)
        outs.append(h)
    want = mx.concatenate([outs[0], outs[2]], axis=-1)
    assert hidden.shape == (1, ids.shape[1], 2 * 64)
    assert mx.allclose(hidden, want, atol=1e-5).item()
    assert mx.array_equal(logits, model(ids)).item()  # logits untouched by the capture
    assert prefill_chunk(model, ids, None, (3,)).shape == (1, ids.shape[1], 64)
    assert not any(type(x).__name__ == "_Tap" for x in model.model.layers)  # restored
    with pytest.raises(Exception, match="outside"):
        capture_layers(model, (4,))


# -- drafts equal mlx-vlm's


class _Spy:
    """Our drafter, checked at every proposal against mlx-vlm's model loaded by
    mlx-vlm itself, fed the same context and the same block."""

    def __init__(self, ours, reference, fmt):
        self.ours, self.ref, self.fmt = ours, reference, fmt
        self.ref_cache = reference.make_cache()
        self.context = None
        self.rounds = 0
        for name in ("name", "needs_hidden", "hidden_layers", "max_draft_tokens"):
            setattr(self, name, getattr(ours, name))
        self.sampling = None

    def begin(self, prompt_ids, hidden, reused):
        self.ours.begin(prompt_ids, hidden, reused)
        self.context = hidden[None]

    def propose(self, last, k):
        mine = self.ours.propose(last, k)
        n = min(k, self.ours.max_draft_tokens)
        theirs = self.ref.draft_block(
            last, self.context, self.ref_cache, n + 1, lambda x: mx.argmax(x, -1)
        )
        self.context = None
        assert mx.array(mine).tolist() == theirs[0].tolist(), (self.rounds, k)
        self.rounds += 1
        return mine

    def draft_logprobs(self):
        return None

    def commit(self, verified, next_token, hidden):
        self.ours.commit(verified, next_token, hidden)
        h = hidden[None]
        self.context = h if self.context is None else mx.concatenate([self.context, h], 1)

    def memory_bytes(self):
        return 0

    def close(self):
        self.ours.close()


def _reference(folder, loaded, fmt):
    """mlx-vlm's own loader and class for the folder, bound to the target."""
    from mlx_vlm.speculative.drafters.qwen3_dflash import DFlashDraftModel
    from mlx_vlm.utils import load_model as vlm_load

    model = vlm_load(folder)
    DFlashDraftModel.bind(model, loaded.model)  # DFlash2's bind wants mlx-vlm's verifier
    return model


@pytest.mark.parametrize("fmt", ["dflash", "dflash2"])
def test_drafts_equal_mlx_vlm(root, plain_target, fmt):
    cfg = (dflash_config if fmt == "dflash" else dflash2_config)(plain_target)
    folder = make_dflash(root / f"random-{fmt}", cfg, seed=3)
    # fp32 as mlx-vlm's copy: with the native kernel built, CPU models default to bf16.
    loaded = load_model(str(plain_target["path"]), ModelSettings(dtype="float32"))
    ref = _reference(folder, loaded, fmt)
    for k in (3, 15):
        for prompt in PROMPTS:
            spy = _Spy(registry.open_drafter(loaded, str(folder)), ref, fmt)
            ids = tuple(loaded.tokenizer.encode(prompt))
            gen = Generation(
                "t", loaded, Prompt(ids, prompt, False), SamplingSettings(max_tokens=20),
                lambda e: None, threading.Event(), drafter=spy,
                policy=DraftLengthPolicy(k=k, adaptive=False),
            )  # fmt: skip
            gen.run()
            assert spy.rounds >= 3


# -- lossless


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


@pytest.mark.parametrize("fmt", ["dflash", "dflash2"])
def test_greedy_output_is_identical_with_a_block_drafter(service, sticky, root, fmt):
    target = str(sticky["target"]["path"])
    decoders = {"sticky": str(sticky[fmt])}
    cfg = (dflash_config if fmt == "dflash" else dflash2_config)(sticky["target"])
    decoders["random"] = str(make_dflash(root / f"lossless-{fmt}", cfg, seed=5))
    block = 15 if fmt == "dflash" else 7
    accepted = rejected = 0
    for p, prompt in enumerate(PROMPTS):
        plain = _generate(service, target, prompt)
        for name, decoder in decoders.items():
            for k in (1, 2, 3, 4, block, 16, None):
                out = _generate(service, target, prompt, decoder, k, f"{fmt}-{name}-{k}-{p}")
                assert out.token_ids == plain.token_ids, (name, k, prompt)
                assert out.stats.decoder.startswith("DFlash"), out.stats.decoder
                assert len(out.stats.per_position_acceptance) <= min(k or block, block)
                accepted += out.stats.accepted
                rejected += out.stats.drafted - out.stats.accepted
    assert accepted > 0 and rejected > 0, (accepted, rejected)


def test_block_drafter_fills_its_block(service, sticky):
    """Once the target repeats c, whole blocks of 15 drafts are accepted."""
    target = str(sticky["target"]["path"])
    out = _generate(service, target, PROMPTS[0], str(sticky["dflash"]), 15, "full", 40)
    s = out.stats
    assert len(s.per_position_acceptance) == 15
    assert s.per_position_acceptance[14] > 0
    assert s.mean_accepted_length > 4


@pytest.mark.parametrize("sampled", [True, False], ids=["sampled-drafts", "greedy-drafts"])
def test_sampling_distribution_is_unchanged_by_dflash(sticky, sampled):
    loaded = load_model(str(sticky["target"]["path"]))
    folder = str(sticky["dflash"])

    def make():
        return registry.open_drafter(loaded, folder)

    # Plain and drafted runs share seeds (different seed ranges alone differ by ~0.09
    # here); drafting draws from the key stream differently, so outputs still differ.
    runs, bound = 400, 0.1
    prompt = PROMPTS[0]
    plain = first_tokens(loaded, prompt, lambda: None, runs, 1.0, seed0=5000)
    drafted = first_tokens(loaded, prompt, make, runs, 1.0, seed0=5000, sampled=sampled)
    assert drafted != plain
    assert total_variation(plain, drafted, runs) < bound, (
        plain.most_common(4),
        drafted.most_common(4),
    )
    hotter = first_tokens(loaded, prompt, lambda: None, runs, 2.5, seed0=9000)
    assert total_variation(plain, hotter, runs) > bound


# -- refusals


def _copy(src, dst, **cfg_over):
    import shutil

    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    for k, v in cfg_over.items():
        if v is None:
            cfg.pop(k, None)
        elif isinstance(v, dict):
            cfg[k] = {**cfg.get(k, {}), **v}
        else:
            cfg[k] = v
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_refused_pairings_say_why(root, sticky, plain_target):
    target = sticky["target"]["path"]
    good = sticky["dflash"]
    assert verdict(target, good).ok
    assert "DFlash block drafter" in verdict(target, good).reason
    cases = {
        "hidden": (dict(hidden_size=32), "hidden size 32"),
        "layers": (dict(num_target_layers=8), "made for a target with 8 layers"),
        "ids": (
            dict(dflash_config={"target_layer_ids": [0, 6]}, num_target_layers=None),
            "made for a target with 7 layers",
        ),  # fmt: skip
        "vocab": (dict(vocab_size=1000), "vocabulary of 1000"),
    }
    loaded = load_model(str(target))
    for name, (over, reason) in cases.items():
        folder = _copy(good, root / f"bad-{name}", **over)
        v = verdict(target, folder)
        assert not v.ok and reason in v.reason, (name, v)
        with pytest.raises(DecoderError, match=reason):
            registry.open_drafter(loaded, str(folder))


def test_broken_checkpoints_are_decoder_errors(root, sticky):
    target = sticky["target"]["path"]
    loaded = load_model(str(target))
    good = sticky["dflash"]
    corrupt = _copy(good, root / "corrupt")
    data = (corrupt / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(DecoderError, match="corrupt"):
        registry.open_drafter(loaded, str(corrupt))
    empty = _copy(good, root / "no-weights")
    (empty / "model.safetensors").unlink()
    assert "no .safetensors" in verdict(target, empty).reason
    with pytest.raises(DecoderError, match="no .safetensors"):
        registry.open_drafter(loaded, str(empty))
    wrong = _copy(good, root / "wrong-shape", intermediate_size=48)
    with pytest.raises(DecoderError, match="shape"):
        registry.open_drafter(loaded, str(wrong))
