"""The context window (issue #20): read once from a model's config, tokenizer and RoPE
scaling; a prompt that does not fit is refused before any work, a reply stops at the
window with finish reason ``length``, and prefill notices a cancel within 64 tokens."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import ollama
import openai
import pytest

from engine.context_window import ContextTooLong, context_length, fit_prompt
from engine.errors import EngineError
from engine.events import Finished, Generate, PromptProgress
from engine.server import ServerLimits
from engine.service import EngineService
from engine.settings import SamplingSettings
from tests.engine.test_server_support import running_server
from tests.tiny_models import make_tiny_model

WORDS = " ".join(f"w{i}" for i in range(900))  # ~4,500 byte tokens


def test_context_length_from_config_tokenizer_and_rope_scaling():
    assert context_length({"max_position_embeddings": 8192}) == 8192
    assert context_length({"n_positions": 1024}) == 1024
    assert context_length({"text_config": {"max_position_embeddings": 32768}}) == 32768
    yarn = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    assert context_length({"max_position_embeddings": 32768, "rope_scaling": yarn}) == 131072
    llama3 = {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}
    assert context_length({"max_position_embeddings": 131072, "rope_scaling": llama3}) == 131072
    linear = {"type": "linear", "factor": 2.0}
    assert context_length({"max_position_embeddings": 4096, "rope_scaling": linear}) == 8192
    assert context_length({}, {"model_max_length": 2048}) == 2048
    assert context_length({}, {"model_max_length": 1e30}) is None  # "unknown"
    assert context_length({"max_position_embeddings": 512}, {"model_max_length": 4096}) == 512


def test_fit_prompt_names_the_sizes():
    assert fit_prompt(100, 512, "org/tiny") == 412
    assert fit_prompt(100, None, "tiny") is None
    with pytest.raises(ContextTooLong, match=r"^prompt is 9,140 tokens; SmolLM2-135M-Instruct holds 8,192$"):  # fmt: skip
        fit_prompt(9140, 8192, "HuggingFaceTB/SmolLM2-135M-Instruct")
    with pytest.raises(ContextTooLong, match=r"limited to 256 \(tiny holds 512\)"):
        fit_prompt(300, 512, "tiny", limit=256)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctx-lib")
    models = root / "models"
    make_tiny_model(models / "tiny-512", max_position_embeddings=512)
    make_tiny_model(models / "tiny-llama")  # 4,096
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOOKAHEAD_MODELS_DIR", str(models))
        mp.setenv("HF_HUB_CACHE", str(root / "hub"))
        yield models


@pytest.fixture(scope="module")
def service(library):
    svc = EngineService().start()
    svc.run(Generate("warm", "tiny-512", prompt="hi", sampling=SamplingSettings(max_tokens=1)))
    yield svc
    svc.close()


def _messages(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_the_engine_refuses_a_prompt_that_does_not_fit_before_any_work(service):
    events = []
    unsubscribe = service.subscribe(events.append)
    try:
        t0 = time.perf_counter()
        with pytest.raises(EngineError, match=r"^prompt is 4,\d{3} tokens; tiny-512 holds 512$"):
            service.run(Generate("long", "tiny-512", prompt=WORDS))
        assert time.perf_counter() - t0 < 1.0
    finally:
        unsubscribe()
    assert not [e for e in events if isinstance(e, PromptProgress)]  # no prefill at all


def test_generation_stops_at_the_context_with_finish_reason_length(service):
    prompt = "a" * 500  # 500 byte tokens: 12 positions left
    sampling = SamplingSettings(temperature=0, max_tokens=32000 // 32, max_loop_count=0)
    final = service.run(Generate("fill", "tiny-512", prompt=prompt, sampling=sampling))
    assert isinstance(final, Finished)
    assert final.stats.prompt_tokens == 500
    assert (final.reason, final.stats.generation_tokens) == ("length", 12)
    limited = service.run(
        Generate("cap", "tiny-llama", prompt=prompt, sampling=sampling, context_limit=505)
    )
    assert limited.stats.generation_tokens <= 5


def test_prefill_notices_a_cancel_within_64_tokens(service):
    rid = "cancel-in-prefill"
    seen: list[int] = []

    def on_event(event) -> None:  # engine thread
        if event.request_id == rid and isinstance(event, PromptProgress):
            seen.append(event.processed)
            if event.processed >= 64:
                service.cancel(rid)

    unsubscribe = service.subscribe(on_event)
    try:
        final = service.run(Generate(rid, "tiny-llama", prompt="b" * 3000))
    finally:
        unsubscribe()
    assert final.reason == "cancelled"
    # Cancelled at 64: at most the one chunk already queued behind it was computed.
    assert max(seen) <= 128, seen


@pytest.fixture(scope="module")
def server(service):
    with running_server(service, limits=ServerLimits(max_tokens_cap=4)) as srv:
        yield srv


def test_the_api_refuses_an_over_long_prompt_in_both_shapes(server):
    oai = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    for stream in (False, True):
        t0 = time.perf_counter()
        with pytest.raises(openai.BadRequestError) as caught:
            reply = oai.chat.completions.create(
                model="tiny-512", messages=_messages(WORDS), stream=stream, max_tokens=32000
            )
            list(reply) if stream else None
        assert time.perf_counter() - t0 < 1.0
        error = caught.value.body
        assert error["code"] == "context_length_exceeded"
        assert "tiny-512 holds 512" in error["message"] and error["message"].startswith("prompt is")
    with pytest.raises(openai.BadRequestError, match="holds 512"):
        oai.completions.create(model="tiny-512", prompt=WORDS)
    oll = ollama.Client(host=server.url)
    with pytest.raises(ollama.ResponseError) as caught:
        oll.chat(model="tiny-512", messages=_messages(WORDS), stream=False)
    assert caught.value.status_code == 400 and "tiny-512 holds 512" in caught.value.error
    with pytest.raises(ollama.ResponseError, match="limited to 64"):
        oll.generate(model="tiny-llama", prompt="c" * 100, options={"num_ctx": 64})


def test_the_api_shows_each_models_context(server):
    models = {m["id"]: m for m in httpx.get(server.url + "/v1/models").json()["data"]}
    assert models["tiny-512"]["context_length"] == 512
    assert models["tiny-llama"]["context_length"] == 4096
    shown = httpx.post(server.url + "/api/show", json={"model": "tiny-512"}).json()
    assert shown["model_info"]["llama.context_length"] == 512


def test_a_short_prompt_with_a_huge_max_tokens_is_clamped_not_refused(server):
    oai = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    reply = oai.chat.completions.create(
        model="tiny-512", messages=_messages("hi"), max_tokens=32000, temperature=0
    )
    assert reply.choices[0].finish_reason in ("length", "stop")


def test_the_cli_prints_one_line_for_a_prompt_that_does_not_fit(library):
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "generate", "--model", "tiny-512", "--prompt", WORDS],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lookahead: error: prompt is "), done.stderr
    assert lines[0].endswith("tokens; tiny-512 holds 512")
