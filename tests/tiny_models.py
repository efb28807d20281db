"""Tiny random-weight models built inside tests, in real checkpoint naming.

A byte-level BPE tokenizer (256 byte tokens + ChatML specials, no merges) keeps
them self-contained; ``logit_scale`` spreads the logits so greedy choices are far
from ties (float rounding must never decide a test).
"""

from __future__ import annotations

import json
from pathlib import Path

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINKING_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking %}<think>\n"
    "{% else %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def write_tokenizer(
    path: Path, extra_specials: tuple[str, ...] = (), template: str = CHATML
) -> int:
    """A byte-level tokenizer; returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    for special in extra_specials:
        vocab[special] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS + list(extra_specials))
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": None,
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "chat_template": template,
                "clean_up_tokenization_spaces": False,
                "model_max_length": 4096,
            }
        )
    )
    return len(vocab)


def llama_config(vocab_size: int, **over) -> dict:
    cfg = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_hidden_layers": 2,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "vocab_size": vocab_size,
        "tie_word_embeddings": False,
        "max_position_embeddings": 4096,
        "eos_token_id": 2,
    }
    cfg.update(over)
    return cfg


def make_tiny_model(
    path: Path,
    seed: int = 0,
    logit_scale: float = 8.0,
    thinking: bool = False,
    **config,
) -> Path:
    """Write a random llama-family model folder that mlx-lm and the engine load.

    ``thinking`` adds <think>/</think> tokens and a template with enable_thinking."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import _get_classes

    path.mkdir(parents=True, exist_ok=True)
    if thinking:
        vocab = write_tokenizer(path, ("<think>", "</think>"), THINKING_CHATML)
    else:
        vocab = write_tokenizer(path)
    cfg = llama_config(vocab, **config)
    (path / "config.json").write_text(json.dumps(cfg))
    model_cls, args_cls = _get_classes(cfg)
    mx.random.seed(seed)
    model = model_cls(args_cls.from_dict(cfg))
    weights = dict(tree_flatten(model.parameters()))
    if "lm_head.weight" in weights:
        weights["lm_head.weight"] = weights["lm_head.weight"] * logit_scale
    mx.save_safetensors(str(path / "model.safetensors"), weights)
    return path
