"""Our own decoder format on the real starter model (SmolLM2-135M): a head written the
way the training tool writes one pairs by tokenizer hash and drafts losslessly."""

from __future__ import annotations

import hashlib
import json

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten

from engine.events import ChatMessage, Finished, Generate
from engine.service import EngineService
from engine.settings import DecoderSettings, SamplingSettings

pytestmark = pytest.mark.starter


@pytest.fixture(scope="module")
def head_dir(starter_model_dir, tmp_path_factory):
    """A head initialised from the starter (block = its last layer, output norm = its
    final norm, eh_proj passing the hidden through): untrained, but real-sized."""
    from engine.model_loader import load_model

    loaded = load_model(str(starter_model_dir))
    cfg = loaded.config
    h = cfg["hidden_size"]
    n = cfg["num_hidden_layers"]
    body = loaded.model.model
    weights = {f"layers.0.{k}": v for k, v in tree_flatten(body.layers[n - 1].parameters())}
    weights["enorm.weight"] = mx.ones((h,))
    weights["hnorm.weight"] = mx.ones((h,))
    weights["eh_proj.weight"] = mx.concatenate([0.1 * mx.eye(h), mx.eye(h)], axis=1)
    weights["norm.weight"] = body.norm.weight
    keep = ("model_type", "hidden_size", "intermediate_size", "num_attention_heads",
            "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "rope_scaling",
            "max_position_embeddings", "attention_bias", "mlp_bias", "vocab_size",
            "tie_word_embeddings")  # fmt: skip
    tok = (starter_model_dir / "tokenizer.json").read_bytes()
    config = {
        "model_type": "lookahead_mtp",
        "lookahead_decoder": {
            "kind": "mtp", "family": cfg["model_type"], "target": starter_model_dir.name,
            "hidden_size": h, "vocab_size": cfg["vocab_size"],
            "tokenizer_sha256": hashlib.sha256(tok).hexdigest(), "num_layers": 1,
            "draft_vocab_size": None, "trained": {"steps": 0},
        },
        "text_config": {k: cfg[k] for k in keep if k in cfg},
    }  # fmt: skip
    out = tmp_path_factory.mktemp("starter-head") / "smollm2-mtp"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(config))
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    return out


def test_own_head_on_the_starter_model_is_lossless(starter_model_dir, head_dir):
    svc = EngineService().start()
    try:
        outs = {}
        for decoder, k in (("none", None), (str(head_dir), 2), (str(head_dir), 4)):
            events = list(
                svc.stream(
                    Generate(
                        f"st-{k}", str(starter_model_dir),
                        messages=(ChatMessage("user", "List three colours, one per line."),),
                        sampling=SamplingSettings(max_tokens=24, max_loop_count=0),
                        decoder=DecoderSettings(decoder, draft_tokens=k, adaptive=False),
                    )
                )
            )  # fmt: skip
            assert isinstance(events[-1], Finished), events[-1]
            outs[k] = events[-1]
    finally:
        svc.close()
    plain = outs[None]
    assert len(plain.token_ids) >= 8
    for k in (2, 4):
        assert outs[k].token_ids == plain.token_ids, k
        assert outs[k].stats.decoder == "MTP (llama, smollm2-mtp)"
        assert outs[k].stats.drafted > 0
        assert outs[k].stats.decoder_memory_gb > 0
