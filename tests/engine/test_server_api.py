"""The API server with the real openai and ollama client packages, on tiny models:
streaming and not, decoder tags, logprobs, stops, tools, thinking, errors."""

from __future__ import annotations

import json

import httpx
import ollama
import openai
import pytest

from engine.events import ChatMessage, Finished, Generate
from engine.service import EngineService
from engine.settings import SamplingSettings
from tests.engine.test_server_support import TOOL_CALL, running_server, tiny_library

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
HI = [{"role": "user", "content": "Say something"}]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    with tiny_library(tmp_path_factory.mktemp("server-lib")) as models:
        yield models


@pytest.fixture(scope="module")
def service(library):
    svc = EngineService().start()
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def server(service):
    with running_server(service) as srv:
        yield srv


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def oll(server):
    return ollama.Client(host=server.url)


def engine_text(service, model: str, n: int) -> str:
    final = service.run(
        Generate(
            "direct",
            model,
            messages=(ChatMessage("user", HI[0]["content"]),),
            thinking="on",
            sampling=SamplingSettings(max_tokens=n, top_alternatives=0),
        )
    )
    assert isinstance(final, Finished)
    return final.text


# ------------------------------------------------------------------ listing


def test_models_list_local_models_and_their_decoders(oai, oll, server):
    ids = {m.id for m in oai.models.list().data}
    assert {"tiny-llama", "tiny-llama<decoder>lookup", "tiny-tools"} <= ids
    assert "tiny-mtp<decoder>tiny-mtp-head" in ids  # a paired decoder repo
    assert "tiny-llama<decoder>tiny-mtp-head" not in ids  # made for another model
    assert not any(i.startswith("tiny-mtp-head") for i in ids)  # decoders are not chat models
    names = {m.model for m in oll.list().models}
    assert ids == names
    shown = oll.show("tiny-tools")
    assert "tools" in shown.capabilities and "<tool_call>" in shown.template
    assert "thinking" in oll.show("tiny-thinker").capabilities
    assert httpx.get(f"{server.url}/api/version").json()["version"]
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate"} <= set(
        schema["paths"]
    )


# ------------------------------------------------------------------ OpenAI


def test_openai_chat_equals_the_engine_with_and_without_decoders(oai, service):
    expected = engine_text(service, "tiny-llama", 20)
    plain = oai.chat.completions.create(
        model="tiny-llama", messages=HI, max_tokens=20, temperature=0
    )
    assert plain.choices[0].message.content == expected
    assert plain.choices[0].finish_reason == "length"
    assert plain.usage.completion_tokens == 20
    assert plain.usage.prompt_tokens > 0
    assert plain.model == "tiny-llama"
    # Greedy speculation is lossless: the lookup decoder, streamed, gives the same text.
    stream = oai.chat.completions.create(
        model="tiny-llama<decoder>lookup",
        messages=HI,
        max_tokens=20,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    assert chunks[-1].usage.completion_tokens == 20
    assert chunks[-1].model_extra["lookahead"]["decoder"] == "Prompt lookup"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_openai_chat_with_a_trained_decoder_repo(oai, service):
    expected = engine_text(service, "tiny-mtp", 16)
    reply = oai.chat.completions.create(
        model="tiny-mtp<decoder>tiny-mtp-head", messages=HI, max_tokens=16, temperature=0
    )
    assert reply.choices[0].message.content == expected
    extra = reply.model_extra["lookahead"]
    assert "MTP" in extra["decoder"] and extra["drafted"] > 0


def test_openai_logprobs_stop_and_seed(oai):
    reply = oai.chat.completions.create(
        model="tiny-llama", messages=HI, max_tokens=8, temperature=0, logprobs=True, top_logprobs=3
    )
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    for entry in content:
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert abs(entry.logprob - tops[0]) < 1e-4  # greedy picks the most likely
    full = reply.choices[0].message.content
    stop = full[3:5]
    cut = oai.chat.completions.create(
        model="tiny-llama", messages=HI, max_tokens=8, temperature=0, stop=[stop]
    )
    assert cut.choices[0].message.content == full[: full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    kw = dict(model="tiny-llama", messages=HI, max_tokens=12, temperature=1.0, top_p=0.9)
    a = oai.chat.completions.create(seed=11, **kw).choices[0].message.content
    b = oai.chat.completions.create(seed=11, **kw).choices[0].message.content
    assert a == b


def test_openai_text_completions(oai):
    full = oai.completions.create(
        model="tiny-llama", prompt="Once upon", max_tokens=10, temperature=0
    )
    text = full.choices[0].text
    assert full.object == "text_completion" and full.usage.completion_tokens == 10
    streamed = oai.completions.create(
        model="tiny-llama<decoder>lookup",
        prompt="Once upon",
        max_tokens=10,
        temperature=0,
        stream=True,
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == text
    echoed = oai.completions.create(
        model="tiny-llama", prompt="Once upon", max_tokens=10, temperature=0, echo=True, logprobs=2
    )
    assert echoed.choices[0].text == "Once upon" + text
    assert len(echoed.choices[0].logprobs.tokens) == 10
    by_ids = oai.completions.create(model="tiny-llama", prompt=[79, 80, 81], max_tokens=3)
    assert by_ids.usage.prompt_tokens == 3


def test_openai_tool_calls(oai):
    reply = oai.chat.completions.create(
        model="tiny-tools", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL]
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    chunks = list(
        oai.chat.completions.create(
            model="tiny-tools",
            messages=[{"role": "user", "content": "Weather?"}],
            tools=[WEATHER_TOOL],
            stream=True,
        )
    )
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(c.index, c.function.name) for c in calls] == [(0, "get_weather")]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ""
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # The call and its result go back into the conversation.
    history = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    again = oai.chat.completions.create(model="tiny-tools", messages=history, tools=[WEATHER_TOOL])
    assert again.choices[0].message.tool_calls
    # Without tools in the request the same text is just text.
    plain = oai.chat.completions.create(model="tiny-tools", messages=HI)
    assert plain.choices[0].message.content == f"<tool_call>{TOOL_CALL}</tool_call>"


def test_openai_thinking_goes_to_reasoning_content(oai):
    reply = oai.chat.completions.create(
        model="tiny-thinker", messages=HI, max_tokens=8, temperature=0
    )
    message = reply.choices[0].message
    # The template opened a think block this random model, greedy, never closes.
    assert message.model_extra["reasoning_content"] and message.content == ""
    off = oai.chat.completions.create(
        model="tiny-thinker", messages=HI, max_tokens=8, reasoning_effort="none", temperature=0
    )
    assert "reasoning_content" not in off.choices[0].message.model_extra
    assert off.choices[0].message.content
    streamed = oai.chat.completions.create(
        model="tiny-thinker", messages=HI, max_tokens=8, stream=True, temperature=0
    )
    reasoning = "".join(
        c.choices[0].delta.model_extra.get("reasoning_content") or "" for c in streamed if c.choices
    )
    assert reasoning and "<think>" not in reasoning


# ------------------------------------------------------------------ Ollama


def test_ollama_chat_and_generate(oll, service):
    expected = engine_text(service, "tiny-llama", 12)
    options = {"num_predict": 12, "temperature": 0}
    reply = oll.chat(model="tiny-llama", messages=HI, options=options, stream=False)
    assert reply.message.content == expected and reply.done and reply.done_reason == "length"
    assert reply.eval_count == 12 and reply.prompt_eval_count > 0
    parts = list(
        oll.chat(model="tiny-llama<decoder>lookup", messages=HI, options=options, stream=True)
    )
    assert "".join(p.message.content for p in parts) == expected
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    gen = oll.generate(model="tiny-llama", prompt=HI[0]["content"], options=options)
    assert gen.response == expected and gen.context
    raw = list(
        oll.generate(
            model="tiny-llama:latest", prompt="Once upon", raw=True, stream=True, options=options
        )
    )
    assert raw[-1].done and "".join(p.response for p in raw)
    loaded = oll.generate(model="tiny-llama", prompt="")
    assert loaded.done_reason == "load"
    unloaded = oll.generate(model="tiny-llama", prompt="", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert oll.chat(model="tiny-llama", messages=HI, options=options).message.content == expected


def test_ollama_tools_and_thinking(oll):
    reply = oll.chat(model="tiny-tools", messages=[{"role": "user", "content": "Weather?"}],
                     tools=[WEATHER_TOOL], stream=False)  # fmt: skip
    (call,) = reply.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "Paris"}
    greedy = {"num_predict": 6, "temperature": 0}
    think = oll.chat(model="tiny-thinker", messages=HI, think=True, options=greedy)
    assert think.message.thinking and not think.message.content
    parts = list(
        oll.chat(model="tiny-thinker", messages=HI, think=False, stream=True, options=greedy)
    )
    assert not any(p.message.thinking for p in parts)


# ------------------------------------------------------------------ errors


def test_errors_are_4xx_with_api_style_bodies(oai, oll, server):
    with pytest.raises(openai.NotFoundError, match="not found"):
        oai.chat.completions.create(model="gpt-4o", messages=HI)
    with pytest.raises(openai.NotFoundError, match="decoder"):
        oai.chat.completions.create(model="tiny-llama<decoder>nope", messages=HI)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        oai.chat.completions.create(model="tiny-llama", messages=HI, temperature=5)
    bad_tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "list"}}}
    with pytest.raises(openai.BadRequestError, match="tools.0.function.parameters"):
        oai.chat.completions.create(model="tiny-llama", messages=HI, tools=[bad_tool])
    with pytest.raises(openai.BadRequestError, match="n"):
        oai.chat.completions.create(model="tiny-llama", messages=HI, n=2)
    with pytest.raises(openai.BadRequestError, match="messages"):
        oai.chat.completions.create(model="tiny-llama", messages=[])
    # The engine refuses a decoder made for another model: a 400 saying why, stream or not.
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError, match="tiny-mtp-head|decoder|made for"):
            oai.chat.completions.create(
                model="tiny-llama",
                messages=HI,
                stream=stream,
                extra_body={"decoder": "tiny-mtp-head"},
            )
    with pytest.raises(ollama.ResponseError) as err:
        oll.chat(model="nope", messages=HI)
    assert err.value.status_code == 404 and "not found" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        oll.chat(model="tiny-llama", messages=HI, options={"temperature": "hot"})
    assert err.value.status_code == 400
    for path in ("/v1/chat/completions", "/api/chat"):
        for body in (b"{not json", b"[1, 2]", b"", json.dumps({"model": 3}).encode()):
            r = httpx.post(server.url + path, content=body)
            assert r.status_code == 400, (path, body, r.text)
            error = r.json()["error"]
            assert isinstance(error, dict if path.startswith("/v1") else str)
    assert httpx.get(server.url + "/v1/nothing").status_code == 404
    assert oai.models.list().data  # still serving


def test_decoder_field_and_override(service, oai):
    reply = oai.chat.completions.create(
        model="tiny-llama", messages=HI, max_tokens=4, extra_body={"decoder": "lookup"}
    )
    assert reply.model == "tiny-llama<decoder>lookup"
    with running_server(service, model_override=lambda: "tiny-llama<decoder>lookup") as srv:
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=4)
        assert reply.model == "tiny-llama<decoder>lookup"
        assert reply.model_extra["lookahead"]["decoder"] == "Prompt lookup"
        ollama_reply = ollama.Client(host=srv.url).chat(
            model="llama3", messages=HI, options={"num_predict": 3}
        )
        assert ollama_reply.model == "tiny-llama<decoder>lookup"
