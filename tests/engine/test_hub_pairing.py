"""Decoder detection and decoder-to-target pairing (engine.compat), on folders built here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.compat import _base_name, carries_mtp, check_pairing, decoder_info
from tests.hubserver import safetensors_bytes
from tests.tiny_models import llama_config, write_tokenizer

H = 64


def make_folder(
    path: Path,
    config: dict,
    weights: dict[str, tuple[int, ...]] | None = None,
    *,
    tokenizer: bool = True,
    weights_file: str = "model.safetensors",
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if tokenizer:
        write_tokenizer(path)
    (path / "config.json").write_text(json.dumps(config))
    (path / weights_file).write_bytes(safetensors_bytes(weights or {"w": (2, 2)}))
    return path


@pytest.fixture(scope="module")
def vocab(tmp_path_factory) -> int:
    return write_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture
def target(tmp_path, vocab) -> Path:
    cfg = llama_config(vocab)
    return make_folder(tmp_path / "models--org--tiny-llama" / "snapshots" / "abc", cfg)


def mtp_config(vocab: int, family: str = "llama", hidden: int = H) -> dict:
    return {
        "model_type": f"{family}_mtp",
        "text_config": {"hidden_size": hidden, "vocab_size": vocab},
    }


def test_mlx_vlm_split_decoder_pairs_with_its_family(tmp_path, target, vocab):
    dec = make_folder(tmp_path / "dec", mtp_config(vocab), {"fc.weight": (H, 2 * H)})
    info = decoder_info(dec)
    assert (info.format, info.family, info.hidden_size, info.vocab_size) == (
        "mlx-vlm",
        "llama",
        H,
        vocab,
    )
    pairing = check_pairing(target, dec)
    assert pairing.ok and "same tokenizer" in pairing.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"hidden": 32}, "hidden size 32, but org/tiny-llama has hidden size 64"),
        ({"family": "qwen3"}, "made for qwen3 models, this one is a llama model"),
        ({"vocab": 1000}, "vocabulary of 1000"),
    ],
)
def test_mismatched_decoders_say_why(tmp_path, target, vocab, change, reason):
    cfg = mtp_config(
        change.get("vocab", vocab), change.get("family", "llama"), change.get("hidden", H)
    )
    pairing = check_pairing(target, make_folder(tmp_path / "dec", cfg))
    assert not pairing.ok and reason in pairing.reason


def test_a_different_tokenizer_does_not_pair(tmp_path, target, vocab):
    dec = make_folder(tmp_path / "dec", mtp_config(vocab))
    tok = json.loads((dec / "tokenizer.json").read_text())
    vocab_map = tok["model"]["vocab"]
    a, b = list(vocab_map)[10:12]
    vocab_map[a], vocab_map[b] = vocab_map[b], vocab_map[a]  # same size, other ids
    (dec / "tokenizer.json").write_text(json.dumps(tok))
    pairing = check_pairing(target, dec)
    assert not pairing.ok and "tokenizer differs" in pairing.reason


def test_sglang_nextn_export_pairs_without_a_tokenizer(tmp_path, vocab):
    v3 = llama_config(vocab, model_type="deepseek_v3", architectures=["DeepseekV3ForCausalLM"])
    target = make_folder(tmp_path / "v3", v3)
    nextn = {**v3, "num_hidden_layers": 1, "architectures": ["DeepseekV3ForCausalLMNextN"]}
    dec = make_folder(
        tmp_path / "nextn", nextn, {"model.layers.0.eh_proj.weight": (H, 2 * H)}, tokenizer=False
    )
    assert decoder_info(dec).format == "nextn"
    pairing = check_pairing(target, dec)
    assert pairing.ok and "tokenizer not checked" in pairing.reason
    # ... and not with a llama of the same shape.
    llama = make_folder(tmp_path / "llama", llama_config(vocab))
    assert "made for deepseek_v3" in check_pairing(llama, dec).reason


def test_raw_mtp_sidecar_repo_and_sidecar_beside_main_weights(tmp_path, target, vocab):
    sidecar = make_folder(
        tmp_path / "sidecar", llama_config(vocab), {"mtp.fc.weight": (H, 2 * H)},
        weights_file="mtp.safetensors", tokenizer=False,
    )  # fmt: skip
    assert decoder_info(sidecar).format == "sidecar"
    assert check_pairing(target, sidecar).ok

    main = make_folder(tmp_path / "main", llama_config(vocab, mtp_num_hidden_layers=1))
    (main / "mtp.safetensors").write_bytes(safetensors_bytes({"mtp.fc.weight": (H, 2 * H)}))
    assert decoder_info(main) is None and carries_mtp(main) == "weights"
    assert check_pairing(main, main).ok


def test_main_checkpoint_with_and_without_its_mtp_weights(tmp_path, vocab):
    cfg = llama_config(vocab, num_nextn_predict_layers=1)  # 2 layers: MTP is layer 2
    kept = make_folder(tmp_path / "kept", cfg, {"model.layers.2.eh_proj.weight": (H, 2 * H)})
    dropped = make_folder(tmp_path / "dropped", cfg, {"model.layers.1.mlp.weight": (H, H)})
    plain = make_folder(tmp_path / "plain", llama_config(vocab))
    assert (carries_mtp(kept), carries_mtp(dropped), carries_mtp(plain)) == (
        "weights",
        "declared",
        "",
    )
    assert check_pairing(kept, kept).ok
    assert "dropped in conversion" in check_pairing(dropped, dropped).reason
    assert not check_pairing(plain, plain).ok


def test_our_trained_heads_pair_by_declared_target(tmp_path, target, vocab):
    head_cfg = {**llama_config(vocab), "lookahead_decoder": {"target": "org/tiny-llama", "k": 1}}
    head = make_folder(tmp_path / "head", head_cfg, tokenizer=False)
    info = decoder_info(head)
    assert (info.format, info.target) == ("lookahead", "org/tiny-llama")
    ok = check_pairing(target, head)  # target is the hub snapshot of org/tiny-llama
    assert ok.ok and "made for org/tiny-llama" in ok.reason
    other = make_folder(tmp_path / "other-model", llama_config(vocab))
    refused = check_pairing(other, head)
    assert not refused.ok and refused.reason == "made for org/tiny-llama, not other-model"


def test_trained_head_checks_the_recorded_tokenizer_hash(tmp_path, target, vocab):
    import hashlib

    sha = hashlib.sha256((target / "tokenizer.json").read_bytes()).hexdigest()
    own = {"family": "llama", "target": "org/tiny-llama", "hidden_size": H, "vocab_size": vocab}
    cfg = {"model_type": "lookahead_mtp", "text_config": llama_config(vocab)}
    good = make_folder(
        tmp_path / "good",
        {**cfg, "lookahead_decoder": {**own, "tokenizer_sha256": sha}},
        tokenizer=False,
    )
    bad = make_folder(
        tmp_path / "bad",
        {**cfg, "lookahead_decoder": {**own, "tokenizer_sha256": "0" * 64}},
        tokenizer=False,
    )
    assert check_pairing(target, good).ok and "same tokenizer" in check_pairing(target, good).reason
    assert "tokenizer differs" in check_pairing(target, bad).reason


def test_mlx_vlm_family_comes_from_its_text_config(tmp_path, vocab):
    moe = make_folder(tmp_path / "moe", llama_config(vocab, model_type="qwen3_5_moe"))
    dense = make_folder(tmp_path / "dense", llama_config(vocab, model_type="qwen3_5"))
    tc = {"model_type": "qwen3_5_moe_text", "hidden_size": H, "vocab_size": vocab}
    dec = make_folder(tmp_path / "dec", {"model_type": "qwen3_5_mtp", "text_config": tc})
    assert decoder_info(dec).family == "qwen3_5_moe"
    assert check_pairing(moe, dec).ok
    assert "made for qwen3_5_moe" in check_pairing(dense, dec).reason


def test_target_names_ignore_storage_suffixes():
    assert _base_name("HuggingFaceTB/SmolLM2-135M-Instruct") == _base_name(
        "mlx-community/SmolLM2-135M-Instruct-4bit"
    )
    assert _base_name("Qwen/Qwen3.5-4B") == _base_name("mlx-community/Qwen3.5-4B-MLX-bf16")
    assert _base_name("Qwen/Qwen3.5-4B") != _base_name("Qwen/Qwen3.5-9B")


def test_draft_models_need_the_same_tokenizer(tmp_path, target, vocab):
    small = make_folder(tmp_path / "small", llama_config(vocab, hidden_size=32))
    assert decoder_info(small) is None
    pairing = check_pairing(target, small)
    assert pairing.ok and pairing.reason == "draft model: same tokenizer"
    stranger = make_folder(tmp_path / "stranger", llama_config(vocab), tokenizer=False)
    (stranger / "tokenizer.json").write_text(
        json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}}})
    )
    assert "different tokenizer" in check_pairing(target, stranger).reason


def test_assistant_drafters_and_decoders_as_targets(tmp_path, target, vocab):
    assistant = make_folder(
        tmp_path / "assistant",
        {"model_type": "llama_assistant", "hidden_size": H, "vocab_size": vocab},
    )
    assert decoder_info(assistant).format == "assistant"
    assert check_pairing(target, assistant).ok
    dec = make_folder(tmp_path / "dec", mtp_config(vocab))
    assert "itself a decoder" in check_pairing(dec, assistant).reason
    assert "no readable config.json" in check_pairing(target, tmp_path / "nothing").reason
