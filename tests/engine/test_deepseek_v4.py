"""DeepSeek-V4 targets and their MTP block, checked against mlx-vlm itself.

The tiny checkpoints are built with mlx-vlm's own classes and written in each layout
users download (tests/deepseek_v4_models.py): DeepSeek's naming with ``mtp.0.*``, an
``mlx_vlm.convert`` conversion (plain and quantized, MTP dropped) and the separate
``deepseek_v4_mtp`` repo mlx-vlm's splitter writes. The tiny window is 8 tokens and
one layer compresses in groups of 4, so rejected drafts roll back across evictions.
"""

from __future__ import annotations

import subprocess
import sys

import mlx.core as mx
import pytest

pytest.importorskip("mlx_vlm.models.deepseek_v4")

from engine.compat import carries_mtp
from engine.decoder_catalog import verdict
from engine.deepseek_v4.mtp import V4MTPDrafter
from engine.drafters import create_drafter, registry
from engine.errors import DecoderError, ModelLoadError
from engine.model_loader import load_model
from engine.settings import DecoderSettings
from tests import deepseek_v4_models as V4
from tests.drafting import generate, next_token_logits

PROMPTS = ("abc abc abc abc abc abc", "def f(x):\n    return f(x) + f(x)")
EOS = 2


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("v4")
    raw = V4.make_raw(root / "DeepSeek-V4-Flash-tiny")["path"]
    return {
        "raw": raw,
        "mlx": V4.convert_mlx(raw, root / "DeepSeek-V4-Flash-tiny-mlx"),
        "mtp": V4.split_mtp(raw, root / "DeepSeek-V4-Flash-tiny-MTP"),
    }


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    root = tmp_path_factory.mktemp("v4q")
    raw = V4.make_raw(root / "DeepSeek-V4-q-raw", seed=3, **V4.QUANT_SIZES)["path"]
    return {
        "q4": V4.convert_mlx(raw, root / "DeepSeek-V4-q-4bit", quantize=True, q_bits=4),
        "mtp": V4.split_mtp(raw, root / "DeepSeek-V4-q-MTP"),
        "raw": raw,
    }


def mlx_vlm_greedy(path, ids: list[int], n: int) -> list[int]:
    """mlx-vlm's own generation loop on the same folder, cut at the end of turn."""
    from mlx_vlm.generate.ar import generate_step
    from mlx_vlm.utils import load_model as vlm_load

    model = vlm_load(path)
    out = []
    for tok, _ in generate_step(mx.array([ids]), model, None, None, max_tokens=n, temperature=0):
        if int(tok) == EOS:
            break
        out.append(int(tok))
    return out


@pytest.mark.parametrize("layout", ["raw", "mlx"])
def test_target_greedy_tokens_equal_mlx_vlm(repos, layout):
    loaded = load_model(str(repos[layout]))
    assert loaded.model_type == "deepseek_v4" and loaded.dtype == "float32"
    for prompt in PROMPTS:
        ids = loaded.tokenizer.encode(prompt)
        ours = generate(loaded, prompt, max_tokens=40).finished
        assert list(ours.token_ids) == mlx_vlm_greedy(repos[layout], ids, 40)
        assert len(ours.token_ids) > 10


def test_quantized_target_equals_mlx_vlm(quantized):
    loaded = load_model(str(quantized["q4"]))
    assert loaded.dtype == "q4"
    prompt = PROMPTS[1]
    ours = generate(loaded, prompt, max_tokens=30).finished
    ids = loaded.tokenizer.encode(prompt)
    assert list(ours.token_ids) == mlx_vlm_greedy(quantized["q4"], ids, 30)


def _lossless(loaded, decoder_path, ks=(1, 2, 3, 4)):
    accepted = rejected = 0
    for prompt in PROMPTS:
        plain = generate(loaded, prompt, max_tokens=40).finished
        for k in ks:
            drafter = registry.open_drafter(loaded, str(decoder_path))
            assert isinstance(drafter, V4MTPDrafter)
            out = generate(loaded, prompt, drafter, k=k, max_tokens=40).finished
            assert out.token_ids == plain.token_ids, (k, prompt)
            accepted += out.stats.accepted
            rejected += out.stats.drafted - out.stats.accepted
            assert out.stats.decoder_memory_gb > 0
    return accepted, rejected


def test_builtin_mtp_is_lossless_at_every_k(repos):
    loaded = load_model(str(repos["raw"]))
    accepted, rejected = _lossless(loaded, repos["raw"])
    assert accepted > 20 and rejected > 20, (accepted, rejected)


def test_split_decoder_repo_is_lossless_at_every_k(repos):
    loaded = load_model(str(repos["mlx"]))
    accepted, rejected = _lossless(loaded, repos["mtp"])
    assert accepted > 20 and rejected > 20, (accepted, rejected)


def test_quantized_target_with_decoder_is_lossless(quantized):
    loaded = load_model(str(quantized["q4"]))
    accepted, rejected = _lossless(loaded, quantized["mtp"], ks=(1, 3))
    assert accepted + rejected > 0


def test_mtp_drafts_from_the_target_streams(tmp_path):
    """A copy head on a bigram target predicts every token: the drafter feeds the block
    the target's hyper-connection streams and the right token at the right position."""
    raw = V4.make_raw(tmp_path / "V4-bigram", seed=1, layer_scale=0.0, mtp_scale=0.0)["path"]
    loaded = load_model(str(raw))
    for k in (1, 3):
        out = generate(loaded, PROMPTS[0], registry.open_drafter(loaded, str(raw)), k=k).finished
        assert out.stats.drafted > 10
        assert out.stats.accepted == out.stats.drafted, (k, out.stats)


def test_target_cache_after_drafting_matches_plain_decoding(repos):
    loaded = load_model(str(repos["raw"]))
    plain = generate(loaded, PROMPTS[1], max_tokens=40)
    spec = generate(loaded, PROMPTS[1], registry.open_drafter(loaded, str(repos["raw"])), k=3,
                    max_tokens=40)  # fmt: skip
    assert spec.finished.token_ids == plain.finished.token_ids
    from_plain, from_spec, _ = next_token_logits(loaded, plain, spec)
    assert mx.allclose(from_plain, from_spec, atol=1e-4).item()
    # (No fresh one-pass comparison: mlx-vlm's V4 prefill over more than the window
    # differs from decoding token by token; plain decoding is the reference.)


def test_catalog_pairs_and_names_what_is_missing(repos):
    assert verdict(repos["raw"], repos["raw"]).ok
    assert carries_mtp(repos["raw"]) == "weights"
    converted = verdict(repos["mlx"], repos["mlx"])
    assert not converted.ok and "deepseek_v4_mtp decoder repo" in converted.reason
    assert carries_mtp(repos["mlx"]) == "declared"
    pair = verdict(repos["mlx"], repos["mtp"])
    assert pair.ok and "deepseek_v4 family" in pair.reason and "same tokenizer" in pair.reason


def test_auto_picks_the_builtin_block(repos):
    loaded = load_model(str(repos["raw"]))
    drafter, note = create_drafter(loaded, DecoderSettings("auto"))
    assert isinstance(drafter, V4MTPDrafter), note


def test_non_v4_decoder_is_refused_with_the_reason(repos, tmp_path):
    from tests.mtp_models import make_target, write_mlx_vlm

    qwen = write_mlx_vlm(make_target(tmp_path / "Qwen3.5-tiny", "qwen3_5"), tmp_path / "q-mtp")
    pairing = verdict(repos["mlx"], qwen)
    assert not pairing.ok and "made for qwen3_5 models" in pairing.reason
    assert "deepseek_v4" in pairing.reason
    loaded = load_model(str(repos["mlx"]))
    with pytest.raises(DecoderError, match="made for qwen3_5 models"):
        registry.open_drafter(loaded, str(qwen))
    # ...and the V4 block is refused for a model of another family.
    back = verdict(tmp_path / "Qwen3.5-tiny", repos["mtp"])
    assert not back.ok and "made for deepseek_v4 models" in back.reason


def test_corrupt_v4_weights_are_a_load_error(repos, tmp_path):
    import shutil

    bad = tmp_path / "V4-corrupt"
    shutil.copytree(repos["mlx"], bad)
    (bad / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")
    with pytest.raises(ModelLoadError, match="V4-corrupt"):
        load_model(str(bad))


def test_corrupt_decoder_repo_is_a_decoder_error(repos, tmp_path):
    import shutil

    bad = tmp_path / "V4-MTP-corrupt"
    shutil.copytree(repos["mtp"], bad)
    (bad / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")
    assert not verdict(repos["mlx"], bad).ok
    loaded = load_model(str(repos["mlx"]))
    with pytest.raises(DecoderError):
        registry.open_drafter(loaded, str(bad))


def test_engine_and_app_do_not_import_mlx_vlm():
    code = (
        "import sys, engine.model_loader, engine.service, engine.decoder_catalog, "
        "engine.drafters.registry, engine.kv_cache, app.main_window; "
        "print(sorted(m for m in sys.modules if m.startswith('mlx_vlm')))"
    )
    env = {"QT_QPA_PLATFORM": "offscreen"}
    import os

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
