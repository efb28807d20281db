"""A fake hub full of made-up MLX repos, for looking at the Models page without the
internet: ``python -m app.dev.demo models_page --fake-hub``. The headers of the
weights declare realistic shapes; the files themselves are a few MB, served slowly
enough to watch a progress bar. Built from the test helpers, so it runs from a source
checkout only."""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import pytest

from tests.hubserver import HubServer, point_at
from tests.tiny_models import write_tokenizer


def serve_demo_hub(bytes_per_s: float = 4e6) -> HubServer:
    """Start tests/hubserver.py's fake hub with a few made-up MLX repos and point
    huggingface_hub and the library at it (a throwaway cache). Headers of the weights
    declare realistic shapes; the files themselves are a few MB, served slowly enough
    to watch the progress bar."""

    def weights(shapes: dict[str, tuple[str, tuple[int, ...]]], pad_mb: int) -> bytes:
        header = {
            n: {"dtype": d, "shape": list(s), "data_offsets": [0, 0]}
            for n, (d, s) in shapes.items()
        }
        raw = json.dumps(header).encode()
        return struct.pack("<Q", len(raw)) + raw + bytes(pad_mb * 1_000_000)

    def q4(params_b: float) -> dict[str, tuple[str, tuple[int, ...]]]:
        return {
            "w": ("U32", (int(params_b * 1e9 / 8),)),
            "s": ("BF16", (int(params_b * 1e9 / 32),)),
        }

    tmp = Path(tempfile.mkdtemp(prefix="lookahead-demo-hub-"))
    write_tokenizer(tmp)
    tok = {n: (tmp / n).read_bytes() for n in ("tokenizer.json", "tokenizer_config.json")}
    quant = {"bits": 4, "group_size": 64}

    def config(model_type: str, hidden: int, **more: object) -> bytes:
        return json.dumps(
            {"model_type": model_type, "hidden_size": hidden, "vocab_size": 300, **more}
        ).encode()

    server = HubServer().start()
    point_at(server, pytest.MonkeyPatch(), tmp)
    repos = [
        (
            "mlx-community/Qwen3-4B-Instruct-2507-4bit",
            config("qwen3", 2560, quantization=quant),
            q4(4.0),
            182_400,
            96,
            {},
        ),
        (
            "mlx-community/MiMo-7B-RL-MTP-4bit",
            config("mimo", 4096, quantization=quant),
            q4(7.8),
            12_800,
            41,
            {"mtp.safetensors": weights({"m": ("BF16", (1000,))}, 1)},
        ),
        (
            "lookahead/Qwen3-4B-Instruct-2507-MTP",
            json.dumps(
                {
                    "model_type": "qwen3_mtp",
                    "text_config": {"model_type": "qwen3", "hidden_size": 2560, "vocab_size": 300},
                }
            ).encode(),
            {"fc": ("BF16", (60_000_000,))},
            2_310,
            18,
            {},
        ),
        (
            "mlx-community/Llama-3.2-1B-Instruct-4bit",
            config("llama", 2048, quantization=quant),
            q4(1.24),
            95_100,
            32,
            {},
        ),
        (
            "mlx-community/gemma-3-270m-it-bf16",
            config("gemma3_text", 640),
            {"w": ("BF16", (268_000_000,))},
            41_700,
            27,
            {},
        ),
        (
            "mlx-community/Meta-Llama-3.1-8B-Instruct-4bit",
            config("llama", 4096, quantization=quant),
            q4(8.0),
            64_000,
            120,
            {},
        ),
    ]
    for i, (repo_id, cfg, shapes, downloads, likes, extra) in enumerate(repos):
        files = {
            "config.json": cfg,
            **tok,
            "model.safetensors": weights(shapes, 4 + 2 * i),
            **extra,
        }
        server.add_repo(
            repo_id, files, downloads=downloads, likes=likes, tags=["mlx"],
            gated="manual" if "Meta-Llama" in repo_id else False,
            last_modified=f"2025-0{1 + i}-1{i}T00:00:00.000Z",
        )  # fmt: skip
    server.throttle(bytes_per_s)
    return server
