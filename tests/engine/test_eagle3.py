"""EAGLE-3 heads (Speculators and SGLang/EAGLE layouts) for Llama targets behind the
one verification loop: drafts are those of mlx-vlm's own EAGLE-3 loop for the same
weights, round by round; output is plain decoding's at temperature 0 for k = 1..4
and adaptive k, with drafts both accepted and rejected; refused pairings say why;
heads download from the hub, pair in the catalog and the API, and ``auto`` picks one."""

from __future__ import annotations

import json
import shutil
import threading
from types import SimpleNamespace

import mlx.core as mx
import pytest

from engine.chat import Prompt
from engine.decoder_catalog import decoders_for, verdict
from engine.drafters import registry
from engine.drafters.base import draft_ids
from engine.drafters.policy import DraftLengthPolicy
from engine.errors import DecoderError
from engine.events import Finished, Generate
from engine.generate import Generation
from engine.model_loader import load_model
from engine.settings import DecoderSettings, ModelSettings, SamplingSettings
from tests.eagle3_models import build, make_llama_target, sglang_config, speculators_config
from tests.feature_models import make_sticky
from tests.hubserver import folder_files, hub  # noqa: F401 - the fixture

PROMPTS = ("Hello world, the", "def f(x):\n    return")
L = 6  # target layers
DRAFT_VOCAB = 64  # of the target's 259
LAST = [0, 1, L - 1]  # layer outputs the copy heads read (their fc passes the last one)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("eagle3")


@pytest.fixture(scope="module")
def plain_target(root):
    return make_llama_target(root / "target", layers=L)


def _greedy(loaded, ids, n):
    from engine.kv_cache import new_cache
    from engine.target import forward

    cache = new_cache(loaded.model)
    logits, _ = forward(loaded.model, mx.array(ids)[None], cache, False)
    out = []
    for _ in range(n):
        out.append(int(mx.argmax(logits[0, -1]).item()))
        logits, _ = forward(loaded.model, mx.array([[out[-1]]]), cache, False)
    return out


@pytest.fixture(scope="module")
def sticky(root):
    """A target that falls into repeating token c, and copy heads in both layouts."""
    built = make_llama_target(root / "sticky-target", layers=L)
    loaded = load_model(str(built["path"]))
    c = _greedy(loaded, loaded.tokenizer.encode(PROMPTS[0]), 8)[3]
    make_sticky(built, c, strength=10.0)
    spec = speculators_config(built, DRAFT_VOCAB, aux_ids=[i + 1 for i in LAST])
    sgl = sglang_config(built, DRAFT_VOCAB, layer_ids=LAST)
    heads = {
        "speculators": build(root / "sticky-spec", spec, built, LAST, keep=(c,), copy=True,
                             scale=0.05),
        "sglang": build(root / "sticky-sgl", sgl, built, LAST, keep=(c,), copy=True, scale=0.05),
    }  # fmt: skip
    return {"target": built, "c": c, "heads": heads, "configs": {"speculators": spec,
            "sglang": sgl}}  # fmt: skip


# -- drafts equal mlx-vlm's, round by round


class _VlmTarget:
    """mlx-lm's llama as mlx-vlm's EAGLE-3 loop calls a target: layer by layer, the
    captured layers' outputs returned with the logits; rollback trims the caches."""

    def __init__(self, model):
        self._lm = model

    def __call__(self, inputs, cache=None, capture_layer_ids=(), **_):
        from mlx_lm.models.base import create_attention_mask

        body = self._lm.model
        h = body.embed_tokens(inputs)
        mask = create_attention_mask(h, cache[0])
        outs = []
        for layer, c in zip(body.layers, cache, strict=True):
            h = layer(h, mask, c)
            outs.append(h)
        logits = self._lm.lm_head(body.norm(h))
        hidden = [outs[i] for i in capture_layer_ids]
        return SimpleNamespace(logits=logits, hidden_states=hidden, gdn_states=None)

    def rollback_speculative_cache(self, caches, state, accepted, block_size):
        for c in caches:
            c.trim(block_size - 1 - int(accepted))


def _vlm_run(loaded, ref, ids, k, n):
    """mlx-vlm's own greedy EAGLE-3 loop (``_eagle3_rounds``): tokens, and each round's
    drafts."""
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_vlm.speculative.eagle3 import _eagle3_rounds

    lm = _VlmTarget(loaded.model)
    cache = make_prompt_cache(loaded.model)
    out = lm(mx.array([ids]), cache, list(ref.config.capture_layer_ids))
    first = int(mx.argmax(out.logits[0, -1]).item())
    rounds = []
    block = ref.draft_block

    def record(*args, **kwargs):
        drafts = block(*args, **kwargs)
        rounds.append(drafts[0].tolist())
        return drafts

    ref.draft_block = record
    try:
        tokens = [first] + [
            t
            for t, _ in _eagle3_rounds(
                lm, ref, cache, mx.concatenate(out.hidden_states, axis=-1),
                prompt_tokens=mx.array([ids]), first_bonus=first, max_tokens=n,
                sampler=lambda x: mx.argmax(x, axis=-1), draft_block_size=k + 1,
                greedy_sampling=True,
            )
        ]  # fmt: skip
    finally:
        vars(ref).pop("draft_block", None)
    return tokens, rounds


class _Recorder:
    """Our drafter, its proposals recorded."""

    def __init__(self, drafter):
        self.__dict__["d"] = drafter
        self.__dict__["rounds"] = []

    def __getattr__(self, name):
        return getattr(self.d, name)

    def __setattr__(self, name, value):
        setattr(self.d, name, value)

    def propose(self, last, k):
        proposal = self.d.propose(last, k)
        self.rounds.append(draft_ids(proposal))
        return proposal


def _our_run(loaded, drafter, ids, k, n):
    rec = _Recorder(drafter)
    gen = Generation(
        "t", loaded, Prompt(tuple(ids), "", False), SamplingSettings(max_tokens=n, max_loop_count=0),
        lambda e: None, threading.Event(), drafter=rec, policy=DraftLengthPolicy(k=k, adaptive=False),
    )  # fmt: skip
    return list(gen.run().token_ids), rec.rounds


def _references(root, plain_target, sticky):
    """(name, target folder, head folder, mlx-vlm model holding its tensors, the layer
    outputs it reads) for random heads in each layout and the copy heads."""
    from mlx_vlm.utils import load_model as vlm_load

    t = plain_target
    spec_cfg = speculators_config(t, DRAFT_VOCAB, aux_ids=[2, 3, 5])  # layers 1, 2, 4
    spec, _ = build(root / "ref-spec", spec_cfg, t, [1, 2, 4], seed=3)
    prefixed = build(root / "ref-spec-prefixed", speculators_config(t, t["config"]["vocab_size"],
                     aux_ids=[1, 3, 6]), t, [0, 2, 5], seed=4, prefix="model.")  # fmt: skip
    default = build(root / "ref-sgl-default", sglang_config(t, DRAFT_VOCAB), t,
                    [1, L // 2 - 1, L - 4], seed=5)  # fmt: skip  # EAGLE-3's 2, L // 2, L - 3
    return [
        ("speculators", t["path"], spec, vlm_load(spec), (1, 2, 4)),  # mlx-vlm loads it itself
        ("speculators-prefixed", t["path"], *prefixed, (0, 2, 5)),
        ("sglang-default-layers", t["path"], *default, (1, 2, 2)),
        ("speculators-copy", sticky["target"]["path"], *sticky["heads"]["speculators"],
         tuple(LAST)),
        ("sglang-copy", sticky["target"]["path"], *sticky["heads"]["sglang"], tuple(LAST)),
    ]  # fmt: skip


def test_drafts_equal_mlx_vlm_eagle3_loop(root, plain_target, sticky):
    compared = accepted = 0
    targets = {}
    for name, target, folder, ref, layers in _references(root, plain_target, sticky):
        # fp32 like the references (with the native kernel built, CPU models default to bf16)
        if target not in targets:
            targets[target] = load_model(str(target), ModelSettings(dtype="float32"))
        loaded = targets[target]
        ref.bind(loaded.model)
        drafter = registry.open_drafter(loaded, str(folder))
        assert drafter.hidden_layers == layers, name
        assert tuple(ref.config.capture_layer_ids) == layers, name
        for k in (1, 3):
            for prompt in PROMPTS:
                ids = loaded.tokenizer.encode(prompt)
                mine, my_rounds = _our_run(loaded, drafter, ids, k, 20)
                theirs, their_rounds = _vlm_run(loaded, ref, ids, k, 20)
                assert mine == theirs[: len(mine)], (name, k, prompt)
                n = min(len(my_rounds), len(their_rounds))
                for i in range(n):  # near the end mlx-vlm drafts fewer (its budget)
                    a, b = my_rounds[i], their_rounds[i]
                    m = min(len(a), len(b))
                    assert a[:m] == b[:m], (name, k, prompt, i)
                    assert len(a) == len(b) or i >= n - 3, (name, k, prompt, i)
                assert n >= 4, (name, k, n)
                compared += n
                accepted += sum(1 for r in ref.accept_lens if r)
    print(f"rounds compared with mlx-vlm: {compared}, rounds with an accepted draft: {accepted}")
    assert accepted > 0


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


@pytest.mark.parametrize("layout", ["speculators", "sglang"])
def test_greedy_output_is_identical_with_an_eagle3_head(service, sticky, root, layout):
    target = str(sticky["target"]["path"])
    random_cfg = dict(sticky["configs"][layout])
    random_head, _ = build(root / f"lossless-{layout}", random_cfg, sticky["target"], LAST,
                           seed=7)  # fmt: skip
    heads = {"copy": str(sticky["heads"][layout][0]), "random": str(random_head)}
    counts = {}
    for p, prompt in enumerate(PROMPTS):
        plain = _generate(service, target, prompt)
        for name, head in heads.items():
            for k in (1, 2, 3, 4, None):
                out = _generate(service, target, prompt, head, k, f"{layout}-{name}-{k}-{p}")
                assert out.token_ids == plain.token_ids, (name, k, prompt)
                assert out.stats.decoder.startswith("EAGLE-3"), out.stats.decoder
                a, d = counts.get((name, k), (0, 0))
                counts[name, k] = (a + out.stats.accepted, d + out.stats.drafted)
    print(layout, {f"{n} k={k}": f"{a}/{d}" for (n, k), (a, d) in counts.items()})
    for k in (1, 2, 3, 4):
        a, d = counts["copy", k]
        assert 0 < a < d, (k, a, d)  # accepted and rejected drafts at every k


def test_a_qwen3_target_decodes_identically_with_an_eagle3_head(service, root):
    """The same heads for mlx-lm's qwen3 (the layers are captured the same way)."""
    from tests.feature_models import make_target

    built = make_target(root / "qwen3-target", num_hidden_layers=L)
    loaded = load_model(str(built["path"]))
    c = _greedy(loaded, loaded.tokenizer.encode(PROMPTS[0]), 8)[3]
    make_sticky(built, c, strength=10.0)
    cfg = sglang_config(built, DRAFT_VOCAB, layer_ids=LAST)
    head, _ = build(root / "qwen3-sgl", cfg, built, LAST, keep=(c,), copy=True, scale=0.05)
    target = str(built["path"])
    accepted = drafted = 0
    for prompt in PROMPTS:
        plain = _generate(service, target, prompt)
        for k in (1, 3):
            out = _generate(service, target, prompt, str(head), k, f"qwen3-{k}-{prompt}")
            assert out.token_ids == plain.token_ids, (k, prompt)
            accepted, drafted = accepted + out.stats.accepted, drafted + out.stats.drafted
    assert 0 < accepted < drafted, (accepted, drafted)


def test_interleaved_requests_keep_their_own_head_state(sticky):
    """Two requests on one shared head, their rounds alternating, draft as each alone."""
    loaded = load_model(str(sticky["target"]["path"]))
    folder = str(sticky["heads"]["speculators"][0])
    alone = [_our_run(loaded, registry.open_drafter(loaded, folder), loaded.tokenizer.encode(p),
                      3, 20) for p in PROMPTS]  # fmt: skip
    recs = [_Recorder(registry.open_drafter(loaded, folder)) for _ in PROMPTS]
    assert recs[0].model is recs[1].model  # one model per target
    gens = [
        Generation(
            f"i{i}", loaded, Prompt(tuple(loaded.tokenizer.encode(p)), p, False),
            SamplingSettings(max_tokens=20, max_loop_count=0), lambda e: None,
            threading.Event(), drafter=rec, policy=DraftLengthPolicy(k=3, adaptive=False),
        )
        for i, (p, rec) in enumerate(zip(PROMPTS, recs, strict=True))
    ]  # fmt: skip
    steps = [g.steps() for g in gens]
    live = list(range(len(steps)))
    while live:
        for i in list(live):
            try:
                next(steps[i])
            except StopIteration:
                live.remove(i)
    for i, gen in enumerate(gens):
        assert list(gen.finished.token_ids) == alone[i][0]
        assert recs[i].rounds == alone[i][1]


def test_sampled_drafts_carry_their_distribution_over_the_target_vocabulary(sticky):
    from engine.drafters.base import DraftSampling

    loaded = load_model(str(sticky["target"]["path"]))
    d = registry.open_drafter(loaded, str(sticky["heads"]["sglang"][0]))
    keys = iter(mx.random.split(mx.random.key(0), 64))
    d.sampling = DraftSampling(1.0, lambda: next(keys))
    ids = loaded.tokenizer.encode(PROMPTS[0])
    from engine.target import forward

    logits, hidden = forward(loaded.model, mx.array([ids]), None, d.hidden_layers)
    d.begin(ids, hidden[0], 0)
    drafts = draft_ids(d.propose(int(mx.argmax(logits[0, -1]).item()), 3))
    q = d.draft_logprobs()
    assert q.shape == (3, loaded.config["vocab_size"])
    assert mx.allclose(mx.exp(q).sum(-1), mx.ones(3), atol=1e-4).item()
    allowed = set((mx.arange(DRAFT_VOCAB) + d.model.d2t).tolist())
    for row, tok in zip(mx.exp(q).tolist(), drafts, strict=True):
        assert tok in allowed
        assert {i for i, p in enumerate(row) if p > 0} <= allowed


def test_sampling_distribution_is_unchanged_by_an_eagle3_head(sticky):
    """Drafts sampled in the reduced vocabulary keep the target's distribution (as
    DFlash's test: same seeds with and without the head; greedy drafts take the loop's
    one-hot rule, tested with the other drafters)."""
    from tests.drafting import first_tokens, total_variation

    loaded = load_model(str(sticky["target"]["path"]))
    folder = str(sticky["heads"]["sglang"][0])

    def make():
        return registry.open_drafter(loaded, folder)

    runs, bound = 400, 0.1
    plain = first_tokens(loaded, PROMPTS[0], lambda: None, runs, 1.0, seed0=5000)
    drafted = first_tokens(loaded, PROMPTS[0], make, runs, 1.0, seed0=5000, sampled=True)
    assert drafted != plain
    assert total_variation(plain, drafted, runs) < bound, (
        plain.most_common(4),
        drafted.most_common(4),
    )
    hotter = first_tokens(loaded, PROMPTS[0], lambda: None, runs, 2.5, seed0=9000)
    assert total_variation(plain, hotter, runs) > bound


# -- refusals


def _copy(src, dst, weights=None, **over):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    for k, v in over.items():
        if v is None:
            cfg.pop(k, None)
        elif isinstance(v, dict):
            cfg[k] = {**cfg.get(k, {}), **v}
        else:
            cfg[k] = v
    (dst / "config.json").write_text(json.dumps(cfg))
    if weights is not None:
        file = dst / "model.safetensors"
        tensors = weights(mx.load(str(file)))
        if tensors is None:  # only PyTorch weights
            file.unlink()
            (dst / "pytorch_model.bin").write_bytes(b"\0" * 64)
        elif isinstance(tensors, bytes):
            file.write_bytes(tensors)
        else:
            mx.save_safetensors(str(file), tensors)
    return dst


def _without(name):
    return lambda t: {k: v for k, v in t.items() if k != name}


def test_refused_pairings_say_why(root, sticky):
    target = sticky["target"]["path"]
    spec, sgl = sticky["heads"]["speculators"][0], sticky["heads"]["sglang"][0]
    for good in (spec, sgl):
        v = verdict(target, good)
        assert v.ok and "EAGLE-3 head" in v.reason, v
    layer = "transformer_layer_config"
    cases = {
        "hidden": (spec, {layer: {"hidden_size": 32}}, None, "hidden size 32"),
        "target-hidden": (spec, {"target_hidden_size": 48}, None, "hidden size 48"),
        "sgl-hidden": (sgl, {"hidden_size": 32}, None, "hidden size 32"),
        "vocab": (spec, {layer: {"vocab_size": 1000}}, None, "vocabulary of 1000"),
        "deep": (spec, {"eagle_aux_hidden_state_layer_ids": [1, 2, 9]}, None,
                 "reads the output of target layer 8, this model has 6 layers"),
        "sgl-deep": (sgl, {"eagle_config": {"eagle_aux_hidden_state_layer_ids": [0, 1, 6]}},
                     None, "target layer 6, this model has 6 layers"),
        "four": (spec, {"eagle_aux_hidden_state_layer_ids": [1, 2, 3, 4]}, None,
                 "reads 4 target layers"),
        "draft-vocab": (sgl, {"draft_vocab_size": 5000}, None,
                        "draft vocabulary (5000) is larger than the target vocabulary (259)"),
        "no-d2t": (spec, {}, _without("d2t"), "has no d2t tensor"),
        "no-fc": (sgl, {}, _without("fc.weight"), "no fc tensor"),
        "unreadable": (spec, {}, lambda t: b"", "no fc tensor (a corrupted file"),
        "bin-only": (spec, {}, lambda t: None, "ships PyTorch .bin weights only"),
    }  # fmt: skip
    loaded = load_model(str(target))
    for name, (src, over, weights, reason) in cases.items():
        folder = _copy(src, root / f"bad-{name}", weights, **over)
        v = verdict(target, folder)
        assert not v.ok and reason in v.reason, (name, v)
        with pytest.raises(DecoderError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            registry.open_drafter(loaded, str(folder))


def test_broken_checkpoints_are_decoder_errors(root, sticky):
    loaded = load_model(str(sticky["target"]["path"]))
    good = sticky["heads"]["speculators"][0]

    def far_d2t(t):
        return {**t, "d2t": t["d2t"] + 1000}

    cases = {
        "d2t-range": (far_d2t, "outside the model's vocabulary of 259"),
        "no-norm": (_without("norm.weight"), "weights missing: norm.weight"),
        "no-layer": (_without("layers.0.self_attn.q_proj.weight"), "weights missing"),
    }
    for name, (weights, reason) in cases.items():
        folder = _copy(good, root / f"broken-{name}", weights)
        with pytest.raises(DecoderError, match=reason):
            registry.open_drafter(loaded, str(folder))
    corrupt = _copy(good, root / "broken-corrupt")
    data = (corrupt / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(DecoderError, match="corrupt"):
        registry.open_drafter(loaded, str(corrupt))
    shape = _copy(good, root / "broken-shape", transformer_layer_config={"intermediate_size": 48})
    with pytest.raises(DecoderError, match="shape"):
        registry.open_drafter(loaded, str(shape))


# -- from the hub


@pytest.mark.usefixtures("no_shipped_decoders")
def test_heads_download_pair_and_draft(hub, tmp_path):  # noqa: F811
    """Both layouts from the (fake) hub: listed as EAGLE-3 decoders, paired with their
    target in the catalog and the API's model ids, drafting losslessly; ``auto`` picks
    the head while it is the only one paired."""
    from engine.hub import download_model
    from engine.library import local_models
    from engine.server.catalog import DECODER_TAG, ModelCatalog
    from engine.service import EngineService

    built = make_llama_target(tmp_path / "src-llama", layers=L)
    loaded = load_model(str(built["path"]))
    c = _greedy(loaded, loaded.tokenizer.encode(PROMPTS[0]), 8)[3]
    make_sticky(built, c, strength=10.0)
    spec = speculators_config(built, DRAFT_VOCAB, aux_ids=[i + 1 for i in LAST])
    sgl = sglang_config(built, DRAFT_VOCAB, layer_ids=LAST)
    target, heads = "org/tiny-llama", {
        "RedHatAI/tiny-llama-speculator.eagle3": build(
            tmp_path / "src-spec", spec, built, LAST, keep=(c,), copy=True, scale=0.05)[0],
        "yuhuili/EAGLE3-tiny-llama": build(
            tmp_path / "src-sgl", sgl, built, LAST, keep=(c,), copy=True, scale=0.05)[0],
    }  # fmt: skip
    hub.add_repo(target, folder_files(built["path"]))
    download_model(target)
    for n, (repo_id, folder) in enumerate(heads.items()):
        hub.add_repo(repo_id, folder_files(folder))
        download_model(repo_id)
        models = {m.id: m for m in local_models()}
        assert models[repo_id].is_decoder and models[repo_id].decoder_kind == "eagle3"
        choices = {c.value: c for c in decoders_for(models[target].path, list(models.values()))}
        assert choices[repo_id].ok and choices[repo_id].kind == "eagle3", choices[repo_id]
        ids = {x.id for x in ModelCatalog(ttl_s=0).listing()}
        assert f"{target}{DECODER_TAG}{repo_id}" in ids
        service = EngineService().start()
        try:
            plain = _generate(service, target, PROMPTS[0], max_tokens=16)
            for k in (1, 4, None):
                out = _generate(service, target, PROMPTS[0], repo_id, k, f"{n}-{k}", 16)
                assert out.token_ids == plain.token_ids
                assert out.stats.drafted > 0 and out.stats.accepted > 0
            if n == 0:  # the only decoder paired so far
                auto = _generate(service, target, PROMPTS[0], "auto", 2, "auto", 16)
                assert auto.stats.decoder == f"EAGLE-3 ({repo_id})"
                assert auto.token_ids == plain.token_ids
        finally:
            service.close()
