"""Shared pieces of the API server tests (no tests here): a model library of tiny
models, and a scripted tiny model that always answers with a tool call."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tiny_models import CHATML, llama_config, make_tiny_model, write_tokenizer

TOOL_CALL = '{"name":"get_weather","arguments":{"city":"Paris"}}'
# A Qwen/Hermes-style template: tools in the system turn, calls as <tool_call>JSON.
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools:{% for tool in tools %}\n{{ tool | tojson }}"
    "{% endfor %}\nCall one as <tool_call>JSON</tool_call><|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message.tool_calls %}{% for tool_call in message.tool_calls %}<tool_call>"
    "{{ tool_call.name }}</tool_call>{% endfor %}{% endif %}"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tool_caller(path: Path, template: str = TOOL_TEMPLATE) -> Path:
    """A llama whose every layer adds nothing and whose embeddings/lm_head form a
    chain, so after "assistant\\n" it says ``<tool_call>`` TOOL_CALL ``</tool_call>``
    and stops: a real model folder that deterministically calls a tool. With a
    ``template`` that has no tools it writes calls in the generic tool format."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import _get_classes
    from tokenizers import Tokenizer

    path.mkdir(parents=True, exist_ok=True)
    vocab = write_tokenizer(path, ("<tool_call>", "</tool_call>", TOOL_CALL), template)
    cfg = llama_config(vocab)
    (path / "config.json").write_text(json.dumps(cfg))
    model_cls, args_cls = _get_classes(cfg)
    mx.random.seed(3)
    weights = dict(tree_flatten(model_cls(args_cls.from_dict(cfg)).parameters()))
    for name in weights:
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            weights[name] = mx.zeros_like(weights[name])  # the residual stream is the embedding
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    chain = [tok.token_to_id(t) for t in ("Ċ", "<tool_call>", TOOL_CALL, "</tool_call>")]
    chain.append(tok.token_to_id("<|im_end|>"))
    embed = weights["model.embed_tokens.weight"]
    head = weights["lm_head.weight"]
    n = len(chain) - 1
    head[:, :n] = 0.0  # only chain tokens read the chain dimensions
    for i, (src, dst) in enumerate(zip(chain, chain[1:], strict=False)):
        row = mx.zeros((cfg["hidden_size"],))
        row[i] = 1.0
        embed[src] = row
        head[dst] = row * 10.0
    weights["model.embed_tokens.weight"] = embed
    weights["lm_head.weight"] = head
    mx.save_safetensors(str(path / "model.safetensors"), weights)
    return path


@contextlib.contextmanager
def tiny_library(root: Path) -> Iterator[Path]:
    """A model library (models dir, empty hub cache) holding tiny models:
    ``tiny-llama``, ``tiny-thinker``, ``tiny-tools``, ``tiny-caller`` (the same calls,
    from a template without tools), and ``tiny-mtp`` with a trained decoder
    ``tiny-mtp-head`` that pairs with it."""
    from tests.mtp_models import make_target, write_lookahead

    models = root / "models"
    if not models.exists():
        make_tiny_model(models / "tiny-llama")
        make_tiny_model(models / "tiny-thinker", thinking=True)
        make_tool_caller(models / "tiny-tools")
        make_tool_caller(models / "tiny-caller", CHATML)
        built = make_target(models / "tiny-mtp", "llama", mtp="none")
        write_lookahead(built, models / "tiny-mtp-head")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOOKAHEAD_MODELS_DIR", str(models))
        mp.setenv("HF_HUB_CACHE", str(root / "hub"))
        yield models


@contextlib.contextmanager
def running_server(service, **kw) -> Iterator:
    """An ApiServer on 127.0.0.1 and a free port, stopped afterwards."""
    from engine.server import ApiServer

    server = ApiServer(service, host="127.0.0.1", port=0, **kw)
    server.start()
    try:
        yield server
    finally:
        server.stop()
