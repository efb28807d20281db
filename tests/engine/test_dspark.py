"""DSpark block drafters on a DeepSeek-V4.1 target, checked against mlx-vlm itself.

Drafters are built with mlx-vlm's classes (tests/dspark_models.py) in each layout
users get: V4.1's ``mtp.*`` stages inside the checkpoint, the ``deepseek_v4_dspark``
repo mlx-vlm's splitter writes from it, and a ``dspark`` repo (Qwen-style backbone).
The target's window is 8 tokens and two layers compress, so rejected drafts roll back
across evictions (tests/deepseek_v41_models.py).
"""

from __future__ import annotations

import mlx.core as mx
import pytest

pytest.importorskip("mlx_vlm.speculative.drafters.deepseek_v4_dspark")

from engine.decoder_catalog import auto_choice, decoders_for, verdict
from engine.drafters import create_drafter, registry
from engine.drafters.base import DraftSampling
from engine.drafters.dspark import DSparkDrafter
from engine.errors import DecoderError
from engine.model_loader import load_model
from engine.settings import DecoderSettings
from tests import dspark_models as DS
from tests.deepseek_v41_models import make_deepseek_v41
from tests.drafting import generate
from tests.hubserver import folder_files, hub  # noqa: F401 - the fixture

PROMPTS = ("abc abc abc abc abc abc", "def f(x):\n    return f(x) + f(x)")
BLOCK = DS.V41_DSPARK["dspark_block_size"]


@pytest.fixture(scope="module")
def random_v41(tmp_path_factory):
    """Random target and drafter: drafts rarely match, every weight is exercised."""
    root = tmp_path_factory.mktemp("dspark-rand")
    return make_deepseek_v41(root / "DeepSeek-V4.1-tiny", seed=4, dspark=True)


@pytest.fixture(scope="module")
def bigram_v41(tmp_path_factory):
    """A target whose layers add little and a drafter whose Markov head is its bigram
    table: drafts are accepted and rejected; the split repo and a ``dspark`` repo too."""
    root = tmp_path_factory.mktemp("dspark-bigram")
    built = make_deepseek_v41(
        root / "DeepSeek-V4.1-tiny-bg", seed=1, dspark=True, layer_scale=0.1, bigram=0.1
    )
    built["split"] = DS.split_v4_dspark(built["path"], root / "DeepSeek-V4.1-tiny-DSpark")
    cfg = DS.dspark_config(built["config"], layers=(0, 2), block_size=4)
    built["qwen"] = DS.make_dspark(
        root / "tiny-Qwen-DSpark", cfg, target=built["params"], base_scale=0.1
    )
    return built


@pytest.fixture(scope="module")
def bigram_loaded(bigram_v41):
    return load_model(str(bigram_v41["path"]))


def _source(built, which: str) -> str:
    return str(built["path"] if which == "built-in" else built[which])


# -- the same drafts as mlx-vlm's drafter


class _Recorder:
    """The drafter's mlx-vlm model, recording every ``draft_block`` call."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def draft_block(self, last, hidden, cache, block, sampler, dtype):
        out = self.model.draft_block(last, hidden, cache, block, sampler, dtype)
        self.calls.append((last, hidden, block, out))
        return out

    def __getattr__(self, name):
        return getattr(self.model, name)


def _record_contexts(drafter) -> list[mx.array]:
    """Every context block the drafter derives from the target's hidden states."""
    seen, context_of = [], drafter._context_of

    def record(hidden):
        seen.append(context_of(hidden))
        return seen[-1]

    drafter._context_of = record
    return seen


def _reference(built, which: str, loaded):
    """The same weights loaded by mlx-vlm alone, bound to the same target."""
    from mlx_vlm.speculative.drafters import load_drafter
    from mlx_vlm.speculative.drafters.deepseek_v4_dspark.split import DeepseekV4DsparkSplitter

    if which == "built-in":
        model = DeepseekV4DsparkSplitter().load(built["path"], source_config=built["config"])
    else:
        model, kind = load_drafter(str(built[which]))
        assert kind == "dflash"  # mlx-vlm drives DSpark with its DFlash round loop
    if which == "qwen":  # its own bind also wants mlx-vlm's verifier hooks
        type(model).__mro__[1].bind(model, loaded.model)
    else:
        model.bind(loaded.model)
    return model


def _stream_means(loaded, ids: list[int], layers) -> mx.array:
    """The mean of the target's hyper-connection streams after ``layers``, one pass."""
    owner = loaded.model.model
    saved, out = owner.layers, {}

    def tap(i, layer):
        def run(*a, **kw):
            streams, pre_mix = layer(*a, **kw)
            out[i] = streams.mean(axis=2)
            return streams, pre_mix

        return run

    owner.layers = [tap(i, layer) if i in layers else layer for i, layer in enumerate(saved)]
    try:
        loaded.model(mx.array([ids]))
    finally:
        owner.layers = saved
    return mx.concatenate([out[i] for i in layers], axis=-1)[0]


@pytest.mark.parametrize("which", ["built-in", "split", "qwen"])
def test_drafts_equal_mlx_vlm_drafter_for_the_same_context(random_v41, bigram_v41, which):
    built = random_v41 if which == "built-in" else bigram_v41
    loaded = load_model(str(built["path"]))
    rounds = 0
    for prompt in PROMPTS:
        drafter = registry.open_drafter(loaded, _source(built, which))
        assert isinstance(drafter, DSparkDrafter)
        recorder = _Recorder(drafter.model)
        drafter.model = recorder
        contexts = _record_contexts(drafter)
        gen = generate(loaded, prompt, drafter, k=drafter.max_draft_tokens, max_tokens=30)
        # The context is the stream means after its target layers, every verified position.
        seen = mx.concatenate(contexts, axis=0)
        assert seen.shape[0] == len(gen.cache_tokens)
        ref = _stream_means(loaded, gen.cache_tokens, drafter.layers)
        assert mx.allclose(seen, ref, atol=1e-4).item()
        # Fed the same contexts and anchors, mlx-vlm's own drafter drafts the same blocks.
        model, cache = _reference(built, which, loaded), None
        cache = model.make_cache()
        for last, hidden, block, out in recorder.calls:
            want = model.draft_block(last, hidden, cache, block, _argmax, mx.int32)
            assert want.tolist() == out.tolist(), (which, rounds)
            rounds += 1
    assert rounds > 10


def _argmax(logits):
    return mx.argmax(logits, axis=-1)


# -- decoder on == decoder off


@pytest.mark.parametrize("which", ["built-in", "split", "qwen"])
def test_drafting_is_lossless_at_every_k(bigram_v41, bigram_loaded, which):
    loaded, accepted, rejected = bigram_loaded, 0, 0
    block = registry.open_drafter(loaded, _source(bigram_v41, which)).max_draft_tokens
    assert block == (BLOCK if which != "qwen" else 4)
    for prompt in PROMPTS:
        plain = generate(loaded, prompt, max_tokens=30).finished
        for k, adaptive in [(k, False) for k in range(1, block + 1)] + [(block, True)]:
            drafter = registry.open_drafter(loaded, _source(bigram_v41, which))
            out = generate(loaded, prompt, drafter, k=k, adaptive=adaptive, max_tokens=30)
            stats = out.finished.stats
            assert out.finished.token_ids == plain.token_ids, (which, k, prompt)
            accepted += stats.accepted
            rejected += stats.drafted - stats.accepted
            assert stats.decoder_memory_gb > 0
    assert accepted > 20 and rejected > 20, (which, accepted, rejected)


def test_sampled_drafts_carry_their_markov_distributions(bigram_loaded, bigram_v41):
    drafter = registry.open_drafter(bigram_loaded, str(bigram_v41["path"]))
    keys = iter(mx.random.split(mx.random.key(3), 8))
    drafter.sampling = DraftSampling(0.8, lambda: next(keys))
    ids = bigram_loaded.tokenizer.encode(PROMPTS[0])
    from engine.target import forward

    _, hidden = forward(bigram_loaded.model, mx.array([ids]), None, drafter.hidden_layers)
    drafter.begin(ids, hidden[0], 0)
    drafts = drafter.propose(ids[-1], 3)
    lq = drafter.draft_logprobs()
    assert drafts.shape == (3,) and lq.shape == (3, bigram_v41["config"]["vocab_size"])
    assert mx.allclose(mx.exp(lq).sum(-1), mx.ones(3), atol=1e-4).item()


# -- pairing, auto, refusals


def test_catalog_pairs_each_layout_and_auto_picks_the_built_in_block(bigram_v41, bigram_loaded):
    own = verdict(bigram_v41["path"], bigram_v41["path"])
    assert own.ok and "built-in DSpark drafter" in own.reason and "blocks of 5" in own.reason
    split = verdict(bigram_v41["path"], bigram_v41["split"])
    assert split.ok and "DSpark block drafter" in split.reason
    assert "deepseek_v41 family" in split.reason and "same tokenizer" in split.reason
    assert verdict(bigram_v41["path"], bigram_v41["qwen"]).ok
    choices = decoders_for(bigram_v41["path"], [])
    assert choices[0].kind == "dspark" and choices[0].label == "Built-in DSpark drafter"
    assert auto_choice(choices) == choices[0]
    drafter, note = create_drafter(bigram_loaded, DecoderSettings("auto"))
    assert isinstance(drafter, DSparkDrafter) and drafter.name == "DSpark (built-in)", note


def test_library_lists_dspark_repos_as_dspark(bigram_v41):
    from engine.library import describe_folder

    for which in ("split", "qwen"):
        m = describe_folder(bigram_v41[which])
        assert m.is_decoder and m.decoder_kind == "dspark", which
    assert describe_folder(bigram_v41["split"]).decoder_family == "deepseek_v41"
    target = describe_folder(bigram_v41["path"])
    assert target.dspark and not target.is_decoder and target.mtp == ""


def test_mismatched_dspark_pairings_are_refused_with_the_reason(bigram_v41, tmp_path):
    from tests.mtp_models import make_target

    qwen = make_target(tmp_path / "Qwen3.5-tiny", "qwen3_5")["path"]
    back = verdict(qwen, bigram_v41["split"])
    assert not back.ok and "made for deepseek_v41 models" in back.reason
    import json
    import shutil

    far = tmp_path / "DSpark-far"
    shutil.copytree(bigram_v41["qwen"], far)
    cfg = json.loads((far / "config.json").read_text())
    cfg["dflash_config"]["target_layer_ids"] = [0, 7]
    (far / "config.json").write_text(json.dumps(cfg))
    pairing = verdict(bigram_v41["path"], far)
    assert not pairing.ok and "reads target layer 7, this model has 3 layers" in pairing.reason
    loaded = load_model(str(bigram_v41["path"]))
    with pytest.raises(DecoderError, match="reads target layer 7"):
        registry.open_drafter(loaded, str(far))


def test_converted_checkpoint_without_its_dspark_tensors_says_so(bigram_v41, tmp_path):
    import json
    import shutil

    bare = tmp_path / "DeepSeek-V4.1-no-mtp"
    shutil.copytree(bigram_v41["path"], bare)
    weights = mx.load(str(bare / "model.safetensors"))
    kept = {k: v for k, v in weights.items() if not k.startswith("mtp.")}
    mx.save_safetensors(str(bare / "model.safetensors"), kept, metadata={"format": "pt"})
    json.loads((bare / "config.json").read_text())
    own = verdict(bare, bare)
    assert not own.ok and "deepseek_v4_dspark decoder repo" in own.reason
    drafter, note = create_drafter(load_model(str(bare)), DecoderSettings("auto"))
    assert "weights are missing" in note and note.endswith("using prompt lookup")


# -- a DeepSeek-V4 target (mlx-vlm's classes): the body appends the stream means


@pytest.fixture(scope="module")
def v4(tmp_path_factory):
    """mlx-vlm's deepseek_v4 in DeepSeek's naming with a DSpark drafter under mtp.*."""
    import json

    from tests import deepseek_v4_models as V4

    path = tmp_path_factory.mktemp("dspark-v4") / "DeepSeek-V4-Flash-DSpark-tiny"
    built = V4.make_raw(path, seed=2, layer_scale=0.1, mtp=False)
    cfg = {**built["config"], **DS.V41_DSPARK, "dspark_target_layer_ids": [1, 3]}
    p = built["params"]
    names = {"model.embed_tokens.weight": "language_model.model.embed_tokens.weight",
             "model.norm.weight": "language_model.model.norm.weight",
             "lm_head.weight": "language_model.lm_head.weight"}  # fmt: skip
    target = {ours: p[theirs] for ours, theirs in names.items()}
    weights = {**mx.load(str(path / "model.safetensors"))}
    weights.update(DS.v4_dspark_raw(DS.build_v4_dspark(cfg, 2, target, 0.1), cfg))
    (path / "config.json").write_text(json.dumps(cfg))
    mx.save_safetensors(str(path / "model.safetensors"), weights, metadata={"format": "pt"})
    return {"path": path, "config": cfg}


def test_v4_target_context_is_mlx_vlm_capture_and_drafting_is_lossless(v4):
    from mlx_vlm.utils import load_model as vlm_load

    loaded = load_model(str(v4["path"]))
    assert verdict(v4["path"], v4["path"]).ok
    drafter, note = create_drafter(loaded, DecoderSettings("auto"))
    assert isinstance(drafter, DSparkDrafter) and drafter.hidden_layers == (), note
    contexts = _record_contexts(drafter)
    generate(loaded, PROMPTS[0], drafter, k=BLOCK, max_tokens=12)
    ids = loaded.tokenizer.encode(PROMPTS[0])[:-1]  # the prompt's first prefill chunk
    lm = vlm_load(v4["path"]).language_model
    out = lm(mx.array([ids]), cache=lm.make_cache(), capture_layer_ids=[1, 3])
    want = mx.concatenate(out.hidden_states, axis=-1)[0]
    assert mx.allclose(contexts[0][: len(ids)], want, atol=1e-5).item()
    accepted = drafted = 0
    for prompt in PROMPTS:
        plain = generate(loaded, prompt, max_tokens=30).finished
        for k in (1, 3, BLOCK):
            drafter = registry.open_drafter(loaded, str(v4["path"]))
            out = generate(loaded, prompt, drafter, k=k, max_tokens=30).finished
            assert out.token_ids == plain.token_ids, (k, prompt)
            accepted, drafted = accepted + out.stats.accepted, drafted + out.stats.drafted
    assert 0 < accepted < drafted, (accepted, drafted)


# -- from the hub


@pytest.mark.usefixtures("no_shipped_decoders")
def test_repos_download_from_the_hub_pair_and_draft(hub, bigram_v41):  # noqa: F811
    from engine.events import Finished, Generate
    from engine.hub import download_model
    from engine.library import local_models
    from engine.service import EngineService
    from engine.settings import SamplingSettings

    repos = {
        "deepseek-ai/DeepSeek-V4.1-tiny": bigram_v41["path"],
        "mlx-community/DeepSeek-V4.1-tiny-DSpark": bigram_v41["split"],
        "org/tiny-V4.1-Qwen-DSpark": bigram_v41["qwen"],
    }
    for repo_id, folder in repos.items():
        hub.add_repo(repo_id, folder_files(folder))
        download_model(repo_id)
    models = {m.id: m for m in local_models()}
    target, *decoders = repos
    choices = {c.value: c for c in decoders_for(models[target].path, list(models.values()))}
    assert choices["auto"].kind == "dspark" and choices["auto"].ok
    for decoder in decoders:
        assert models[decoder].decoder_kind == "dspark"
        assert choices[decoder].ok and choices[decoder].kind == "dspark", choices[decoder]

    def run(decoder, k):
        settings = SamplingSettings(max_tokens=16, max_loop_count=0)
        request = Generate(f"{decoder}-{k}", target, prompt=PROMPTS[1], sampling=settings,
                           decoder=DecoderSettings(decoder, draft_tokens=k, adaptive=k is None))  # fmt: skip
        events = list(service.stream(request))
        assert isinstance(events[-1], Finished), events[-1]
        return events[-1]

    service = EngineService().start()
    try:
        plain = run("none", None)
        for decoder in [*decoders, "auto"]:
            for k in (1, None):
                out = run(decoder, k)
                assert out.token_ids == plain.token_ids, (decoder, k)
                assert out.stats.drafted > 0 and "DSpark" in out.stats.decoder
    finally:
        service.close()
