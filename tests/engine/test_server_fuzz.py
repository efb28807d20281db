"""Fuzzing the API (schemathesis against the served OpenAPI schema, and hypothesis
with arbitrary JSON), then a bounded load test of concurrent streaming clients.
The bar: never a 5xx, always an API-style error body, and a live server after."""

from __future__ import annotations

import json
import threading

import httpx
import ollama
import openai
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from engine.server import ServerLimits
from engine.service import EngineService
from tests.engine.test_server_support import running_server, tiny_library

FUZZ = settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
POSTS = ("/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate", "/api/show")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with tiny_library(tmp_path_factory.mktemp("server-lib")):
        svc = EngineService().start()
        yield svc
        svc.close()


@pytest.fixture(scope="module")
def server(service):
    # Every well-formed request really generates (on tiny-llama, at most 4 tokens).
    limits = ServerLimits(max_tokens_cap=4)
    with running_server(service, model_override=lambda: "tiny-llama", limits=limits) as srv:
        yield srv


@pytest.fixture(scope="module")
def plain_server(service):
    with running_server(service, limits=ServerLimits(max_tokens_cap=4)) as srv:
        yield srv


def check_response(path: str, status: int, text: str, content_type: str) -> None:
    assert status < 500, f"{path}: {status} {text[:500]}"
    if status >= 400:
        error = json.loads(text)["error"]
        if path.startswith("/api"):
            assert isinstance(error, str) and error
        else:
            assert isinstance(error, dict) and error["message"] and error["type"]
    elif "json" in content_type and text:
        json.loads(text)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_against_the_served_schema(server, mode):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    fuzzed = 0
    for operation in operations:

        @FUZZ
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case) -> None:
            response = case.call(base_url=server.url, timeout=60)
            ctype = response.headers.get("content-type", "")
            check_response(case.operation.path, response.status_code, response.text, ctype)

        try:
            fuzz()
            fuzzed += 1
        except Unsatisfiable:  # nothing to make invalid (a GET without parameters)
            assert mode == GenerationMode.NEGATIVE
    assert fuzzed >= 5
    assert httpx.get(f"{server.url}/v1/models").status_code == 200


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["tiny-llama", "tiny-llama<decoder>lookup", "nope"]) | JSON,
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "system", "tool"]) | JSON,
                    "content": st.text(max_size=30) | JSON,
                }
            ),  # fmt: skip
            max_size=3,
        )
        | JSON,
        "prompt": st.text(max_size=30) | st.lists(st.integers(-5, 400), max_size=4) | JSON,
        "stream": st.booleans() | JSON,
        "max_tokens": st.integers(-3, 10**12) | JSON,
        "temperature": st.floats(allow_nan=True) | JSON,
        "stop": JSON,
        "tools": JSON,
        "options": st.dictionaries(
            st.sampled_from(["num_predict", "temperature", "stop", "seed"]), JSON
        ),
        "think": JSON,
        "logprobs": JSON,
        "top_logprobs": JSON,
    },
)


@pytest.mark.slow
@given(path=st.sampled_from(POSTS), body=FIELDS | JSON, raw=st.binary(max_size=40))
@FUZZ
def test_arbitrary_json_and_bytes_never_break_the_server(plain_server, path, body, raw):
    url = plain_server.url + path
    try:
        payload = json.dumps(body, allow_nan=True).encode()
    except ValueError:
        payload = raw
    for content in (payload, raw):
        r = httpx.post(url, content=content, timeout=60)
        check_response(path, r.status_code, r.text, r.headers.get("content-type", ""))


@pytest.mark.slow
def test_concurrent_streaming_clients_all_get_answers(service):
    """16 streaming clients at once (OpenAI and Ollama, some with a decoder), 4 of
    them hanging up early: all answered in full, none lost, the server alive."""
    with running_server(service, limits=ServerLimits(max_pending=32)) as srv:
        outcomes: dict[int, str] = {}
        errors: list[BaseException] = []

        def client(i: int) -> None:
            model = "tiny-llama<decoder>lookup" if i % 3 == 0 else "tiny-llama"
            try:
                if i % 4 == 3:  # hangs up after the first chunk
                    with httpx.stream("POST", srv.url + "/v1/chat/completions", timeout=120,
                                      json={"model": model, "stream": True, "max_tokens": 64,
                                            "messages": [{"role": "user", "content": f"#{i}"}]}) as r:  # fmt: skip
                        lines = r.iter_lines()
                        next(lines)
                    outcomes[i] = "left"
                elif i % 2 == 0:
                    oai = openai.OpenAI(
                        base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=120
                    )
                    chunks = list(oai.chat.completions.create(
                        model=model, stream=True, max_tokens=12, temperature=0,
                        messages=[{"role": "user", "content": f"client {i}"}]))  # fmt: skip
                    outcomes[i] = chunks[-1].choices[0].finish_reason
                else:
                    parts = list(ollama.Client(host=srv.url, timeout=120).chat(
                        model=model, stream=True, options={"num_predict": 12, "temperature": 0},
                        messages=[{"role": "user", "content": f"client {i}"}]))  # fmt: skip
                    outcomes[i] = parts[-1].done_reason
            except BaseException as e:  # reported below, with which client failed
                errors.append(e)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors, errors
        assert len(outcomes) == 16
        left = [i for i in range(16) if i % 4 == 3]
        assert all(outcomes[i] == "left" for i in left)
        assert all(outcomes[i] in ("length", "stop") for i in outcomes if i not in left)
        assert httpx.get(srv.url + "/v1/models").status_code == 200
        assert srv.context.bridge.pending == 0
        assert service.alive
