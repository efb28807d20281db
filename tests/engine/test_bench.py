"""`lookahead bench` on a tiny model: table, JSON, chart, identical outputs."""

from __future__ import annotations

import json

import pytest

from engine import bench as B
from engine.cli import main
from engine.errors import EngineError
from tests.tiny_models import make_tiny_model


def test_prompt_sets_and_files(tmp_path) -> None:
    assert set(B.load_prompts("all")) == {"code", "story", "chat"}
    assert any("Flappy Bird" in p for p in B.load_prompts("code")["code"])
    lines = tmp_path / "mine.txt"
    lines.write_text("first prompt\n\nsecond prompt\n")
    assert B.load_prompts(str(lines)) == {"mine": ("first prompt", "second prompt")}
    kinds = tmp_path / "kinds.json"
    kinds.write_text(json.dumps({"a": ["x"], "b": ["y", "z"]}))
    assert B.load_prompts(str(kinds)) == {"a": ("x",), "b": ("y", "z")}
    with pytest.raises(EngineError, match="unknown prompt set"):
        B.load_prompts("poems")


def test_bench_cli_writes_table_json_and_chart(tmp_path, capsys) -> None:
    model = make_tiny_model(tmp_path / "tiny", seed=1)
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps({"rep": ["abcabcabcabc abcabc", "hello hello hello"]}))
    out = tmp_path / "out"
    code = main(
        ["bench", "--model", str(model), "--decoder", "lookup", "--prompts", str(prompts),
         "--draft-tokens", "2", "--max-tokens", "24", "--costs", "--out", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "tok/s off" in printed and "rep" in printed and "t(n) ms" in printed
    (result,) = out.glob("bench-*.json")
    data = json.loads(result.read_text())
    (summary,) = data["summary"]
    assert summary["kind"] == "rep" and summary["prompts"] == 2
    assert summary["identical"] == 2  # temperature 0: decoder on changes nothing
    assert summary["tps_off"] > 0 and summary["tps_on"] > 0
    runs = data["runs"]
    assert [r["decoder"] for r in runs] == [False, True, True, False]  # alternating order
    (costs, *_) = data["meta"]["costs"]["kernels"]
    assert len(costs["verify_s"]) == 8 and len(costs["drafter_s"]) == 8
    assert "break-even" in printed
    png = result.with_suffix(".png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bench_refuses_decoder_none(tmp_path) -> None:
    model = make_tiny_model(tmp_path / "tiny", seed=1)
    assert main(["bench", "--model", str(model), "--decoder", "none"]) == 2


def test_break_even_acceptance() -> None:
    assert B.break_even(1.0, 0.9, 2) == 0.0  # cheaper than a plain step: always pays
    assert B.break_even(1.0, 3.5, 2) is None  # three tokens a round cannot pay 3.5 steps
    assert abs(B.break_even(1.0, 1.5, 1) - 0.5) < 1e-9  # 1 + a = 1.5
    a = B.break_even(2.0, 3.5, 2)  # 1 + a + a^2 = 1.75
    assert abs(1 + a + a * a - 1.75) < 1e-9
