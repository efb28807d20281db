"""Hub search and model details through huggingface_hub, against the fake hub."""

from __future__ import annotations

import json

import pytest

from engine.hub import HubError, model_details, search_models
from tests.hubserver import hub, safetensors_bytes  # noqa: F401 - the fixture
from tests.tiny_models import llama_config

V, H = 300, 64
QUANT = {"bits": 4, "group_size": 64}


def files(config: dict, weights: bytes, **extra: bytes) -> dict[str, bytes]:
    return {"config.json": json.dumps(config).encode(), "model.safetensors": weights, **extra}


def quantized_weights() -> bytes:
    import numpy as np
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    return save(
        {
            "model.embed_tokens.weight": rng.standard_normal((V, H)).astype(np.float32),
            # a 64x128 linear at 4 bits: 8 values per uint32, one scale+bias per 64
            "model.layers.0.mlp.weight": rng.integers(0, 2**32, (64, 16), dtype=np.uint32),
            "model.layers.0.mlp.scales": np.ones((64, 2), np.float16),
            "model.layers.0.mlp.biases": np.zeros((64, 2), np.float16),
        }
    )


@pytest.fixture
def catalog(hub):  # noqa: F811
    fp32 = safetensors_bytes({"model.embed_tokens.weight": (V, H)})
    qcfg = llama_config(V, quantization=QUANT, quantization_config=QUANT)
    hub.add_repo(
        "mlx-community/tiny-llama-4bit", files(qcfg, quantized_weights()),
        downloads=100, likes=5, last_modified="2025-03-01T00:00:00.000Z",
    )  # fmt: skip
    hub.add_repo(
        "org/tiny-llama", files(llama_config(V), fp32),
        downloads=50, likes=20, last_modified="2025-06-01T00:00:00.000Z",
    )  # fmt: skip
    mtp = {"model_type": "llama_mtp", "text_config": {"hidden_size": H, "vocab_size": V}}
    hub.add_repo(
        "org/tiny-llama-mtp", files(mtp, safetensors_bytes({"fc.weight": (H, 2 * H)})),
        downloads=10, likes=1, license="mit", last_modified="2025-02-01T00:00:00.000Z",
    )  # fmt: skip
    hub.add_repo(
        "org/tiny-llama-torch", {"config.json": b"{}", "pytorch_model.bin": b"\0" * 64},
        library_name="transformers", downloads=1000,
    )  # fmt: skip
    hub.add_repo(
        "corp/tiny-gated",
        files(llama_config(V), fp32),
        gated="manual",
        license="llama3",
        downloads=7,
    )
    hub.add_repo(
        "org/tiny-embed",
        files(llama_config(V), fp32),
        pipeline_tag="feature-extraction",
        downloads=3,
    )
    return hub


def ids(results) -> list[str]:
    return [m.id for m in results]


def test_search_mlx_models_sorted_by_downloads_likes_and_recency(catalog):
    assert ids(search_models("tiny")) == [
        "mlx-community/tiny-llama-4bit",
        "org/tiny-llama",
        "org/tiny-llama-mtp",
        "corp/tiny-gated",
        "org/tiny-embed",
    ]
    assert ids(search_models("tiny", sort="likes"))[:2] == [
        "org/tiny-llama",
        "mlx-community/tiny-llama-4bit",
    ]
    assert ids(search_models("llama", sort="recent"))[:3] == [
        "org/tiny-llama",
        "mlx-community/tiny-llama-4bit",
        "org/tiny-llama-mtp",
    ]
    assert ids(search_models("tiny", limit=2)) == ids(search_models("tiny"))[:2]
    request = catalog.requests[-1]
    assert request.path == "/api/models" and request.query["filter"] == ["mlx"]
    assert "safetensors" in request.query["expand"]


def test_search_filters_by_author_task_and_library(catalog):
    assert ids(search_models("", author="corp")) == ["corp/tiny-gated"]
    assert ids(search_models("tiny", task="feature-extraction")) == ["org/tiny-embed"]
    assert "org/tiny-llama-torch" in ids(search_models("tiny", mlx_only=False))
    assert search_models("no-such-thing") == []


def test_each_result_says_size_quantisation_params_mtp_license_and_gating(catalog):
    found = {m.id: m for m in search_models("tiny")}
    q = found["mlx-community/tiny-llama-4bit"]
    assert q.quantization == "4-bit" and q.is_mlx
    assert q.parameters == V * H + 64 * 128  # unpacked, scales and biases not counted
    assert q.size_bytes == V * H * 4 + 64 * 16 * 4 + 2 * 64 * 2 * 2
    fp = found["org/tiny-llama"]
    assert (fp.quantization, fp.parameters, fp.size_bytes) == ("fp32", V * H, V * H * 4)
    assert (fp.mtp, fp.decoder, fp.license, fp.gated) == ("", "", "apache-2.0", "")
    dec = found["org/tiny-llama-mtp"]
    assert (dec.decoder, dec.license) == ("mtp", "mit")
    assert found["corp/tiny-gated"].gated == "manual"
    assert fp.last_modified.year == 2025 and fp.downloads == 50 and fp.likes == 20


def test_details_give_the_download_size_and_read_mtp_from_the_config(hub):  # noqa: F811
    fp32 = safetensors_bytes({"model.embed_tokens.weight": (V, H)})
    cfg = llama_config(V, num_nextn_predict_layers=1)  # 2 layers: MTP would be layer 2
    index = {"weight_map": {"model.embed_tokens.weight": "model.safetensors"}}
    kept = {**index["weight_map"], "model.layers.2.eh_proj.weight": "model.safetensors"}
    dropped_repo = files(cfg, fp32, **{"model.safetensors.index.json": json.dumps(index).encode()})
    kept_repo = files(
        cfg, fp32, **{"model.safetensors.index.json": json.dumps({"weight_map": kept}).encode()}
    )
    hub.add_repo("mlx-community/deep-tiny-4bit", {**dropped_repo, "pytorch_model.bin": b"\0" * 999})
    hub.add_repo("deep/deep-tiny", kept_repo)

    dropped = model_details("mlx-community/deep-tiny-4bit")
    assert dropped.mtp == "declared"
    assert dropped.download_bytes == sum(len(v) for v in dropped_repo.values())
    assert "pytorch_model.bin" not in dropped.files and len(dropped.commit) == 40
    assert model_details("deep/deep-tiny").mtp == "weights"


def test_details_of_a_gated_repo_and_hub_errors(hub, monkeypatch):  # noqa: F811
    hub.add_repo(
        "corp/gated", files(llama_config(V), safetensors_bytes({"w": (4, 4)})), gated="auto"
    )
    details = model_details("corp/gated")  # the listing is public, the files are not
    assert details.gated == "auto" and details.download_bytes > 0
    with pytest.raises(HubError, match="no model 'org/missing'"):
        model_details("org/missing")
    with pytest.raises(HubError, match="unknown sort"):
        search_models("x", sort="size")

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    with pytest.raises(HubError, match="cannot reach the hub"):
        search_models("tiny")
