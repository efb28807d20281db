"""The API server on the real starter model (SmolLM2-135M-Instruct) with the openai and
ollama client packages: streaming and not, with and without a decoder tag."""

from __future__ import annotations

import ollama
import openai
import pytest

from engine.service import EngineService
from tests.engine.test_server_support import running_server

pytestmark = pytest.mark.starter
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
MODEL = "SmolLM2-135M-Instruct"
TAGGED = f"{MODEL}<decoder>lookup"


@pytest.fixture(scope="module")
def server(starter_model_dir):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOOKAHEAD_MODELS_DIR", str(starter_model_dir.parent))
        svc = EngineService().start()
        try:
            with running_server(svc) as srv:
                yield srv
        finally:
            svc.close()


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="local", max_retries=0)


@pytest.fixture(scope="module")
def oll(server):
    return ollama.Client(host=server.url)


@pytest.fixture(scope="module")
def answer(oai) -> str:
    reply = oai.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=40, temperature=0
    )
    assert reply.choices[0].finish_reason == "stop"
    return reply.choices[0].message.content


def test_models_include_the_starter_and_its_lookup_decoder(oai, oll):
    ids = {m.id for m in oai.models.list().data}
    assert {MODEL, TAGGED} <= ids
    assert {m.model for m in oll.list().models} == ids


def test_openai_client_streaming_and_not_with_and_without_a_decoder(oai, answer):
    assert "Paris" in answer
    tagged = oai.chat.completions.create(
        model=TAGGED, messages=QUESTION, max_tokens=40, temperature=0
    )
    assert tagged.choices[0].message.content == answer  # greedy speculation is lossless
    assert tagged.model_extra["lookahead"]["decoder"] == "Prompt lookup"
    for model in (MODEL, TAGGED):
        chunks = list(
            oai.chat.completions.create(
                model=model, messages=QUESTION, max_tokens=40, temperature=0, stream=True
            )
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == answer
        assert chunks[-1].choices[0].finish_reason == "stop"
    # The starter's template has no tools: the generic tool format serves them, and a
    # required call is begun for it, so the 135M model writes a call it can parse.
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    forced = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[weather],
        tool_choice="required",
        max_tokens=40,
        temperature=0,
    )
    (call,) = forced.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and forced.choices[0].finish_reason == "tool_calls"


def test_ollama_client_streaming_and_not_with_and_without_a_decoder(oll, answer):
    options = {"temperature": 0, "num_predict": 40}
    for model in (MODEL, TAGGED):
        reply = oll.chat(model=model, messages=QUESTION, options=options, stream=False)
        assert reply.message.content == answer and reply.done_reason == "stop"
        parts = list(oll.chat(model=model, messages=QUESTION, options=options, stream=True))
        assert "".join(p.message.content for p in parts) == answer
        assert parts[-1].done and parts[-1].eval_count > 0
    generated = oll.generate(model=TAGGED, prompt=QUESTION[0]["content"], options=options)
    assert generated.response == answer
