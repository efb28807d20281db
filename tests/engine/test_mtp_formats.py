"""Decoder repos in each published format load, pair and draft like the built-in
module; bad input (another model's decoder, corrupted files, weights missing, k out
of range) is refused with the reason; memory is counted honestly."""

from __future__ import annotations

import shutil
import threading

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten

from engine.chat import Prompt
from engine.compat import check_pairing as library_pairing
from engine.drafters import registry
from engine.drafters.base import draft_ids
from engine.drafters.mtp import MTPDrafter
from engine.drafters.mtp.sources import check_pairing, folder_source
from engine.drafters.policy import DraftLengthPolicy
from engine.errors import DecoderError
from engine.events import Failed, Finished, Generate, TokenEvent
from engine.generate import Generation
from engine.model_loader import load_model
from engine.settings import DecoderSettings, SamplingSettings
from engine.target import split_model
from tests.drafting import first_tokens, total_variation
from tests.mtp_models import (
    make_target,
    write_lookahead,
    write_mlx_vlm,
    write_nextn,
    write_sidecar_file,
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("mtp-formats")


@pytest.fixture(scope="module")
def built(root):
    """Targets with their MTP module built in, and each family's separate forms."""
    out = {f: make_target(root / f, f) for f in ("deepseek_v32", "glm4_moe", "qwen3_5")}
    out.update({f: make_target(root / f, f) for f in ("qwen3_5_moe", "qwen3_next", "mimo")})
    out["llama"] = make_target(root / "llama", "llama")
    return out


def loaded_of(b):
    return load_model(str(b["path"]))


def drafts_for(drafter, loaded, text="The quick brown fox", k=4) -> list[int]:
    ids = loaded.tokenizer.encode(text)
    body, _ = split_model(loaded.model)
    drafter.begin(ids, body(mx.array(ids)[None])[0], 0)
    return draft_ids(drafter.propose(7, k))


SEPARATE = [
    ("deepseek_v32", "nextn", write_nextn),
    ("glm4_moe", "nextn", write_nextn),
    ("qwen3_5", "mlx-vlm", write_mlx_vlm),
    ("qwen3_5_moe", "mlx-vlm", write_mlx_vlm),
    ("qwen3_next", "mlx-vlm", write_mlx_vlm),
    ("mimo", "sidecar", write_sidecar_file),
]


@pytest.mark.parametrize(("family", "fmt", "writer"), SEPARATE, ids=[s[0] for s in SEPARATE])
def test_separate_format_loads_pairs_and_equals_the_builtin_module(
    root, built, family, fmt, writer
):
    b = built[family]
    where = writer(b, root / f"{family}-{fmt}")
    loaded = loaded_of(b)
    if fmt != "sidecar":
        source = folder_source(where)
        assert source.kind == fmt and source.family == family
        check_pairing(source, loaded, where)  # no refusal
        assert library_pairing(b["path"], where).ok  # the library's view agrees
    separate = registry.open_drafter(loaded, str(where))
    builtin, note = registry.best_drafter(loaded)
    assert note is None and "built-in" in builtin.name
    assert family in separate.name and where.name in separate.name
    # Same tensors, however they were stored (names, layouts, norm offsets).
    a = dict(tree_flatten(separate.bundle.head.parameters()))
    c = dict(tree_flatten(builtin.bundle.head.parameters()))
    assert a.keys() == c.keys()
    for name in a:
        assert mx.allclose(a[name], c[name], atol=1e-6).item(), name
    assert drafts_for(separate, loaded) == drafts_for(builtin, loaded)


def test_sidecar_beside_the_main_weights_is_found(root):
    b = make_target(root / "mimo-sidecar-target", "mimo", mtp="sidecar")
    drafter, note = registry.best_drafter(loaded_of(b))
    assert note is None and drafter.name == "MTP (mimo, mtp.safetensors)"


def test_own_format_loads_with_and_without_a_draft_vocabulary(root, built):
    b, loaded = built["llama"], loaded_of(built["llama"])
    full = registry.open_drafter(loaded, str(write_lookahead(b, root / "own")))
    even = list(range(0, b["config"]["vocab_size"], 2))
    small = registry.open_drafter(loaded, str(write_lookahead(b, root / "own-dv", even)))
    assert full.name == "MTP (llama, own)"
    drafts = drafts_for(small, loaded, k=4)
    assert drafts and all(d % 2 == 0 for d in drafts)  # only ids of the draft vocabulary
    assert small.bundle.draft_rows.shape == (len(even), b["config"]["hidden_size"])
    # the draft vocabulary's rows are the target's output head rows, in id order
    lm = loaded.model.lm_head.weight
    assert mx.array_equal(small.bundle.draft_rows, lm[mx.array(even)]).item()
    assert full.bundle.draft_rows is None and len(drafts_for(full, loaded)) == 4


def refusal(fn) -> str:
    with pytest.raises(DecoderError) as e:
        fn()
    return str(e.value)


def test_decoder_of_another_model_is_refused_with_reason(root, built):
    ds = loaded_of(built["deepseek_v32"])
    glm_nextn = write_nextn(built["glm4_moe"], root / "glm-nextn-x")
    msg = refusal(lambda: registry.open_drafter(ds, str(glm_nextn)))
    assert "made for glm4_moe models" in msg and "deepseek_v32 model" in msg
    assert not library_pairing(built["deepseek_v32"]["path"], glm_nextn).ok
    q35 = write_mlx_vlm(built["qwen3_5"], root / "q35-mlx-vlm-x")
    msg = refusal(lambda: registry.open_drafter(loaded_of(built["qwen3_5_moe"]), str(q35)))
    assert "made for qwen3_5 models" in msg and "qwen3_5_moe model" in msg
    assert not library_pairing(built["qwen3_5_moe"]["path"], q35).ok
    head = write_lookahead(built["llama"], root / "own-x")
    assert library_pairing(built["llama"]["path"], head).ok
    wide = make_target(root / "llama-wide", "llama", hidden_size=64)
    msg = refusal(lambda: registry.open_drafter(loaded_of(wide), str(head)))
    assert "hidden size 32, but llama-wide has hidden size 64" in msg
    assert not library_pairing(wide["path"], head).ok
    # same sizes, another tokenizer (one special token renamed)
    other = root / "llama-other-tok"
    shutil.copytree(built["llama"]["path"], other)
    tok = other / "tokenizer.json"
    tok.write_text(tok.read_text().replace('"<|im_end|>"', '"<|im_stop|>"'))
    msg = refusal(lambda: registry.open_drafter(load_model(str(other)), str(head)))
    assert "trained with another tokenizer" in msg
    assert not library_pairing(other, head).ok
    nextn_other = write_nextn(built["deepseek_v32"], root / "ds-nextn-othertok")
    shutil.copy(tok, nextn_other / "tokenizer.json")
    msg = refusal(lambda: registry.open_drafter(ds, str(nextn_other)))
    assert "its tokenizer differs from the model's" in msg
    # a published format we do not run
    odd = write_mlx_vlm(built["qwen3_5"], root / "gemma-mtp")
    cfg = (odd / "config.json").read_text().replace("qwen3_5_mtp", "gemma4_mtp")
    (odd / "config.json").write_text(cfg.replace("qwen3_5_text", "gemma4_text"))
    assert "not supported" in refusal(lambda: registry.open_drafter(ds, str(odd)))


def test_refusal_reaches_the_user_through_the_service(root, built, service):
    glm_nextn = write_nextn(built["glm4_moe"], root / "glm-nextn-svc")
    events = list(
        service.stream(
            Generate(
                "bad", str(built["deepseek_v32"]["path"]), prompt="Hi",
                decoder=DecoderSettings(str(glm_nextn), draft_tokens=2, adaptive=False),
            )
        )
    )  # fmt: skip
    assert isinstance(events[-1], Failed)
    assert "made for glm4_moe models" in events[-1].message


@pytest.mark.parametrize("k", [0, 17])
def test_draft_tokens_out_of_range_are_refused(built, service, k):
    events = list(
        service.stream(
            Generate(
                f"k{k}", str(built["mimo"]["path"]), prompt="Hi",
                decoder=DecoderSettings("auto", draft_tokens=k, adaptive=False),
            )
        )
    )  # fmt: skip
    assert isinstance(events[-1], Failed)
    assert f"draft_tokens: {k} is outside [1, 16]" in events[-1].message


def test_corrupted_or_incomplete_decoders_are_refused(root, built):
    ds, b = loaded_of(built["deepseek_v32"]), built["deepseek_v32"]
    trunc = write_nextn(b, root / "trunc")
    data = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert "truncated" in refusal(lambda: registry.open_drafter(ds, str(trunc)))
    junk = write_nextn(b, root / "junk")
    (junk / "model.safetensors").write_bytes(b"\xff" * 64)
    assert "not a safetensors file" in refusal(lambda: registry.open_drafter(ds, str(junk)))
    missing = write_nextn(b, root / "missing")
    w = mx.load(str(missing / "model.safetensors"))
    del w["model.layers.0.eh_proj.weight"]
    mx.save_safetensors(str(missing / "model.safetensors"), w, metadata={"format": "pt"})
    msg = refusal(lambda: registry.open_drafter(ds, str(missing)))
    assert "incomplete (missing eh_proj.weight)" in msg
    bad = write_nextn(b, root / "bad-shape")
    w = mx.load(str(bad / "model.safetensors"))
    w["model.layers.0.eh_proj.weight"] = w["model.layers.0.eh_proj.weight"].T
    w["model.layers.0.self_attn.o_proj.weight"] = mx.zeros((3, 3))
    mx.save_safetensors(str(bad / "model.safetensors"), w, metadata={"format": "pt"})
    assert "eh_proj has shape [64, 32], expected [32, 64]" in refusal(
        lambda: registry.open_drafter(ds, str(bad))
    )
    w["model.layers.0.eh_proj.weight"] = w["model.layers.0.eh_proj.weight"].T
    mx.save_safetensors(str(bad / "model.safetensors"), w, metadata={"format": "pt"})
    msg = refusal(lambda: registry.open_drafter(ds, str(bad)))
    assert "weights do not match the deepseek_v32 MTP layout" in msg and "o_proj" in msg
    assert "not found" in refusal(lambda: registry.open_drafter(ds, "no-such-decoder"))


def test_declared_but_missing_mtp_weights_are_named(root, built, service):
    b = make_target(root / "ds-converted", "deepseek_v32", mtp="none")
    loaded = loaded_of(b)
    drafter, note = registry.best_drafter(loaded)
    assert drafter is None
    assert (
        "its config declares 1 MTP layer(s) (num_nextn_predict_layers) but the weights are "
        "missing (no model.layers.2.* tensors" in note
    )
    assert "weights are missing" in refusal(lambda: registry.open_drafter(loaded, str(b["path"])))
    events = list(
        service.stream(
            Generate(
                "conv", str(b["path"]), prompt="Hi",
                sampling=SamplingSettings(max_tokens=4, max_loop_count=0),
                decoder=DecoderSettings("auto", draft_tokens=2, adaptive=False),
            )
        )
    )  # fmt: skip
    assert isinstance(events[-1], Finished) and events[-1].stats.decoder == "Prompt lookup"


def test_auto_pairs_a_decoder_repo_from_the_library(root, built, monkeypatch):
    library = root / "library"
    library.mkdir()
    monkeypatch.setenv("LOOKAHEAD_MODELS_DIR", str(library))
    write_nextn(built["glm4_moe"], library / "glm-nextn")  # another family: skipped
    write_lookahead(built["llama"], library / "llama-head")  # another family: skipped
    b = make_target(root / "ds-converted-2", "deepseek_v32", mtp="none")
    loaded = loaded_of(b)
    assert registry.best_drafter(loaded)[0] is None
    write_nextn(built["deepseek_v32"], library / "ds-nextn")
    drafter, note = registry.best_drafter(loaded)
    assert isinstance(drafter, MTPDrafter) and drafter.name == "MTP (deepseek_v32, ds-nextn)"
    assert "weights are missing" in note  # says why the built-in module was not used
    llama = loaded_of(built["llama"])
    drafter, note = registry.best_drafter(llama)
    assert drafter.name == "MTP (llama, llama-head)" and note is None


def test_auto_finds_a_bundled_decoder(root, built, monkeypatch):
    bundled = root / "bundled"
    write_lookahead(built["llama"], bundled / "starter-head")
    monkeypatch.setenv("LOOKAHEAD_MODELS_DIR", str(root / "empty-library"))
    monkeypatch.setenv("LOOKAHEAD_SHIPPED_DECODERS", str(root / "nowhere"))
    assert registry.best_drafter(loaded_of(built["llama"]))[0] is None
    monkeypatch.setenv("LOOKAHEAD_SHIPPED_DECODERS", str(bundled))
    drafter, _ = registry.best_drafter(loaded_of(built["llama"]))
    assert drafter.name == "MTP (llama, starter-head)"


def test_memory_bytes_counts_weights_and_cache(built):
    loaded = loaded_of(built["qwen3_5"])
    drafter, _ = registry.best_drafter(loaded)
    weights = sum(p.nbytes for _, p in tree_flatten(drafter.bundle.head.parameters()))
    assert drafter.memory_bytes() == weights > 0
    drafts_for(drafter, loaded, "x" * 40)
    cache = sum(c.keys.nbytes + c.values.nbytes for c in drafter.cache)
    assert cache > 0 and drafter.memory_bytes() == weights + cache
    drafter.close()
    assert drafter.memory_bytes() == weights


def test_token_records_flag_drafted_and_accepted_tokens(built, service):
    events = list(
        service.stream(
            Generate(
                "rec", str(built["glm4_moe"]["path"]), prompt="Hello world, the",
                sampling=SamplingSettings(max_tokens=24, max_loop_count=0),
                decoder=DecoderSettings("auto", draft_tokens=3, adaptive=False),
            )
        )
    )  # fmt: skip
    final = events[-1]
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert isinstance(final, Finished) and final.stats.decoder == "MTP (glm4_moe, built-in)"
    assert sum(t.accepted for t in tokens) == final.stats.accepted > 0
    assert all(t.drafted for t in tokens if t.accepted)
    assert len(final.stats.per_position_acceptance) == 3
    assert final.stats.draft_rounds > 0 and final.stats.decoder_memory_gb > 0


def test_sampling_with_mtp_is_reproducible(built):
    loaded = loaded_of(built["mimo"])
    ids = tuple(loaded.tokenizer.encode("Hello"))
    settings = SamplingSettings(temperature=0.8, seed=3, max_tokens=16, max_loop_count=0)
    outs = []
    for _ in range(2):
        drafter, _ = registry.best_drafter(loaded)
        gen = Generation(
            "t", loaded, Prompt(ids, "Hello", False), settings, lambda e: None,
            threading.Event(), drafter=drafter, policy=DraftLengthPolicy(k=2, adaptive=False),
        )  # fmt: skip
        outs.append(gen.run())
    assert outs[0].token_ids == outs[1].token_ids and outs[0].stats.drafted > 0


@pytest.mark.parametrize("sampled", [True, False], ids=["sampled-drafts", "greedy-drafts"])
@pytest.mark.parametrize("head", ["built-in", "draft-vocabulary"])
def test_sampling_distribution_is_unchanged_by_an_mtp_head(root, built, head, sampled):
    """The first two tokens' joint distribution with an MTP head (random weights, so
    drafts are mostly rejected and the residual draw decides) matches plain decoding,
    whether the head draws its drafts from its own distribution (q over the full or a
    reduced vocabulary) or proposes its greedy pick. Too hot a temperature is caught."""
    if head == "built-in":
        loaded = loaded_of(built["mimo"])

        def make():
            return registry.best_drafter(loaded)[0]
    else:
        b = built["llama"]
        loaded = loaded_of(b)
        even = list(range(0, b["config"]["vocab_size"], 2))
        folder = str(write_lookahead(b, root / f"dist-dv-{sampled}", even))

        def make():
            return registry.open_drafter(loaded, folder)

    runs, bound = 250, 0.12
    plain = first_tokens(loaded, "Hello", lambda: None, runs, 1.0)
    drafted = first_tokens(loaded, "Hello", make, runs, 1.0, seed0=5000, sampled=sampled)
    assert total_variation(plain, drafted, runs) < bound, (
        plain.most_common(4),
        drafted.most_common(4),
    )
    hotter = first_tokens(loaded, "Hello", lambda: None, runs, 2.5, seed0=9000)
    assert total_variation(plain, hotter, runs) > bound


def test_catalog_verdict_is_the_verdict_at_load_time(root, built):
    """Every decoder fixture against every target: the catalog pairs exactly what loads."""
    from engine.decoder_catalog import verdict

    where = root / "agreement"
    decoders = [
        write_nextn(built["deepseek_v32"], where / "ds-nextn"),
        write_nextn(built["glm4_moe"], where / "glm-nextn"),
        write_mlx_vlm(built["qwen3_5"], where / "q35-vlm"),
        write_mlx_vlm(built["qwen3_5_moe"], where / "q35moe-vlm"),
        write_mlx_vlm(built["qwen3_next"], where / "qnext-vlm"),
        write_lookahead(built["llama"], where / "llama-head"),
    ]
    odd = write_mlx_vlm(built["qwen3_5"], where / "gemma-mtp")  # a format we do not run
    cfg = (odd / "config.json").read_text().replace("qwen3_5_mtp", "gemma4_mtp")
    (odd / "config.json").write_text(cfg.replace("qwen3_5_text", "gemma4_text"))
    decoders.append(odd)
    seen = {True: 0, False: 0}
    for family, b in built.items():
        loaded = loaded_of(b)
        for folder in [*decoders, b["path"]]:  # the target itself: its own MTP weights
            shown = verdict(b["path"], folder)
            try:
                registry.open_drafter(loaded, str(folder)).close()
                loads, why = True, ""
            except DecoderError as e:
                loads, why = False, str(e)
            assert shown.ok == loads, (family, folder.name, shown.reason, why)
            if not loads:
                assert shown.reason in why  # the same reason, word for word
            seen[loads] += 1
    assert seen[True] >= 12 and seen[False] >= 30
