"""The engine on the real starter model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import json
import subprocess
import sys

import mlx.core as mx
import pytest

from engine import native
from engine.events import ChatMessage, Finished, Generate
from engine.settings import DecoderSettings, ModelSettings, SamplingSettings

pytestmark = pytest.mark.starter
QUESTION = "What is the capital of France?"


def ask(service, model, rid, question=QUESTION, n=40, **kw) -> Finished:
    events = list(
        service.stream(
            Generate(
                rid,
                str(model),
                messages=(ChatMessage("user", question),),
                sampling=SamplingSettings(max_tokens=n),
                **kw,
            )
        )
    )
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1]


def test_answers_paris(service, starter_model_dir):
    final = ask(service, starter_model_dir, "paris")
    assert "Paris" in final.text
    assert final.reason == "stop"
    s = final.stats
    # The CPU policy: bf16 weights through the native skinny kernel when it is built.
    assert s.device == "cpu" and s.dtype == ("bfloat16" if native.available() else "float32")
    assert s.generation_tps > 0 and s.ttft_s > 0 and s.peak_memory_gb > 0


def test_greedy_equals_mlx_lm_token_for_token(service, starter_model_dir):
    from mlx_lm.generate import generate_step
    from mlx_lm.utils import dequantize_model, load

    prompt = "Write a haiku about the sea, then explain it."
    final = ask(service, starter_model_dir, "parity", prompt, n=64)
    model, _ = load(str(starter_model_dir))
    dequantize_model(model)
    model.set_dtype(mx.float32)
    expected = []
    for tok, _ in generate_step(mx.array(final.prompt_token_ids), model, max_tokens=64):
        if tok == 2:  # <|im_end|>
            break
        expected.append(int(tok))
    assert list(final.token_ids) == expected


def test_native_dtype_matches_stock_mlx_lm(service, starter_model_dir):
    """With --dtype native the engine runs the 4-bit weights exactly as mlx-lm does."""
    from mlx_lm.generate import generate_step
    from mlx_lm.utils import load

    final = ask(service, starter_model_dir, "native", n=24, load=ModelSettings(dtype="native"))
    assert final.stats.dtype == "q4"
    model, _ = load(str(starter_model_dir))
    expected = []
    for tok, _ in generate_step(mx.array(final.prompt_token_ids), model, max_tokens=24):
        if tok == 2:
            break
        expected.append(int(tok))
    assert list(final.token_ids) == expected


def test_prompt_lookup_is_lossless_on_the_starter(service, starter_model_dir):
    question = "Repeat this list exactly: apples, pears, plums, apples, pears, plums."
    plain = ask(service, starter_model_dir, "pl0", question, n=48)
    spec = ask(
        service,
        starter_model_dir,
        "pl1",
        question,
        n=48,
        decoder=DecoderSettings("lookup", draft_tokens=3, adaptive=False),
    )
    assert spec.token_ids == plain.token_ids
    assert spec.stats.accepted > 0


def test_loop_guard_stops_a_repeating_generation(service, starter_model_dir):
    events = list(
        service.stream(
            Generate(
                "loop",
                str(starter_model_dir),
                prompt="hello hello hello hello hello hello hello hello hello hello",
                sampling=SamplingSettings(max_tokens=200, max_loop_count=6),
            )
        )
    )
    final = events[-1]
    assert isinstance(final, Finished)
    assert final.reason == "loop"
    assert final.stats.generation_tokens < 200


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.launcher", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_json_lines(starter_model_dir):
    out = _cli(
        "generate",
        "--model",
        str(starter_model_dir),
        "--prompt",
        QUESTION,
        "--max-tokens",
        "12",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    tokens, stats = lines[:-1], lines[-1]
    assert tokens and all(t["type"] == "token" for t in tokens)
    for t in tokens:
        assert {"id", "text", "logprob", "top"} <= set(t)
        assert len(t["top"]) == 10 and all(len(a) == 3 for a in t["top"])
    assert stats["type"] == "stats"
    for key in (
        "generation_tokens",
        "generation_tps",
        "prompt_tps",
        "ttft_s",
        "peak_memory_gb",
        "finish_reason",
    ):
        assert key in stats
    assert stats["generation_tokens"] == len(tokens)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--model", "/no/such/model"], "no local model"),
        (["--temp", "-3"], "temperature"),
        (["--prompt", ""], "empty"),
        (["--decoder", "not-a-decoder"], "decoder"),
        (["--draft-tokens", "99", "--decoder", "lookup"], "draft_tokens"),
    ],
)
def test_cli_bad_input_is_one_clear_line(starter_model_dir, args, expected):
    base = {"--model": str(starter_model_dir), "--prompt": "hi"}
    for flag in ("--model", "--prompt"):
        if flag in args:
            base.pop(flag)
    argv = ["generate", *[x for kv in base.items() for x in kv], *args, "--max-tokens", "2"]
    out = _cli(*argv)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert expected in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_the_starter_name_works_in_a_fresh_home(tmp_path, monkeypatch):
    """`--model SmolLM2-135M-Instruct` imports the starter on first use."""
    from engine.library import resolve_model
    from engine.starter import STARTER_NAME

    monkeypatch.setenv("LOOKAHEAD_HOME", str(tmp_path))
    path = resolve_model(STARTER_NAME)
    assert path.is_relative_to(tmp_path) and (path / "config.json").is_file()
