"""Faults a reliability pass found (issue #20): text that is not valid Unicode, an
empty API key, browser requests to a server bound beyond loopback, and queued
streaming clients left without response headers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import EngineError
from engine.server import ApiServer, ServerLimits
from engine.service import EngineService
from engine.text_check import invalid_text_path
from tests.engine.test_server_support import running_server, tiny_library

HI = [{"role": "user", "content": "hi"}]
ENDLESS = {  # sampled, so the loop guard does not end it: it runs until cancelled
    "model": "tiny-llama",
    "messages": HI,
    "max_tokens": 100_000,
    "temperature": 1,
    "seed": 1,
}
ROUTES = ("/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    with tiny_library(tmp_path_factory.mktemp("faults-lib")) as models:
        yield models


@pytest.fixture(scope="module")
def service(library):
    svc = EngineService().start()
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def server(service):
    with running_server(service, limits=ServerLimits(max_tokens_cap=2)) as srv:
        yield srv


def _body(path: str, text: str) -> dict:
    """A request to ``path`` with ``text`` in its main text field."""
    if path == "/v1/chat/completions":
        return {"model": "tiny-llama", "messages": [{"role": "user", "content": text}]}
    if path == "/v1/completions":
        return {"model": "tiny-llama", "prompt": text}
    if path == "/api/chat":
        return {"model": "tiny-llama", "stream": False, "messages": [{"role": "user", "content": text}]}  # fmt: skip
    return {"model": "tiny-llama", "stream": False, "prompt": text}


def _post_raw(url: str, body: dict) -> httpx.Response:
    # json.dumps writes a lone surrogate as the escape \ud800, as a client's JSON would.
    return httpx.post(
        url, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )


def test_a_surrogate_pair_is_one_valid_character(server):
    r = _post_raw(server.url + "/v1/completions", _body("/v1/completions", "x\ud83d\ude00"))
    assert r.status_code == 200, r.text


def test_invalid_text_path_names_the_field():
    assert invalid_text_path({"a": ["ok", {"b": "x\ud800"}]}) == "a.1.b"
    assert invalid_text_path({"a": "fine", "n": 3}) is None
    assert invalid_text_path("\udcff", "--prompt") == "--prompt"


@pytest.mark.parametrize("path", ROUTES)
def test_a_lone_surrogate_is_a_400_naming_the_field(server, path):
    r = _post_raw(server.url + path, _body(path, "x\ud800y"))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    message = error if path.startswith("/api") else error["message"]
    field = "prompt" if path in ("/v1/completions", "/api/generate") else "messages.0.content"
    assert message.startswith(f"{field}: text is not valid Unicode")
    if not path.startswith("/api"):
        assert error["param"] == field and error["type"] == "invalid_request_error"


def test_a_surrogate_in_a_tool_or_stop_field_and_bytes_that_are_not_utf8(server):
    url = server.url + "/v1/chat/completions"
    tools = [{"type": "function", "function": {"name": "f", "description": "\udc80"}}]
    r = _post_raw(url, {"model": "tiny-llama", "messages": HI, "tools": tools})
    assert r.status_code == 400 and "tools.0.function.description" in r.json()["error"]["message"]
    r = _post_raw(url, {"model": "tiny-llama", "messages": HI, "stop": ["\ud83d"]})
    assert r.status_code == 400
    for raw in (b'\xff\xfe{"model": 1}', b'{"model": "tiny-llama", "prompt": "a\xc3"}'):
        for path in ("/v1/completions", "/api/generate"):
            r = httpx.post(server.url + path, content=raw, headers={"content-type": "application/json"})  # fmt: skip
            assert 400 <= r.status_code < 500, r.text
            assert r.json()["error"]


SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
TEXT = st.text(alphabet=st.characters() | SURROGATES, max_size=40)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(ROUTES), text=TEXT.filter(bool), where=st.sampled_from(["main", "system", "stop"]))  # fmt: skip
def test_any_text_in_any_field_is_answered_without_a_5xx(server, path, text, where):
    body = _body(path, "hi")
    if where == "main":
        body = _body(path, text)
    elif where == "system":
        if "messages" in body:
            body["messages"].insert(0, {"role": "system", "content": text})
        else:
            body["system" if path == "/api/generate" else "suffix"] = text
    else:
        body["stop"] = [text]
    r = _post_raw(server.url + path, body)
    assert r.status_code < 500, r.text
    # What the server reads: json.dumps escapes each surrogate, and a high one followed
    # by a low one decodes back as one valid character (the JSON spelling of U+10000+).
    if invalid_text_path(json.loads(json.dumps(text))) is not None:
        assert r.status_code == 400
        error = r.json()["error"]
        assert "not valid Unicode" in (error if isinstance(error, str) else error["message"])


def _cli(*args: bytes, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable.encode(), b"-m", b"engine.cli", *args],
        capture_output=True,
        env=env or os.environ.copy(),
        timeout=120,
    )


def test_generate_with_a_prompt_that_is_not_utf8_prints_one_line(library):
    for prompt in (b"a\xed\xa0\x80b", b"a\xffb"):
        done = _cli(b"generate", b"--model", b"tiny-llama", b"--prompt", prompt)
        assert done.returncode == 2
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        assert lines == [
            "lookahead: error: --prompt: text is not valid Unicode "
            "(a lone UTF-16 surrogate or bytes that are not UTF-8)"
        ]
        assert b"Traceback" not in done.stdout + done.stderr


def test_an_empty_api_key_is_refused_at_start(service):
    env = {**os.environ, "LOOKAHEAD_API_KEY": ""}
    for args, environ in (((b"serve", b"--port", b"0"), env), ((b"serve", b"--api-key", b""), None)):  # fmt: skip
        done = _cli(*args, env=environ)
        assert done.returncode == 2
        err = done.stderr.decode().strip()
        assert err.startswith("lookahead: error: the API key is empty"), err
        assert "\n" not in err
    with pytest.raises(EngineError, match="API key is empty"):
        ApiServer(service, api_key="  ")


@pytest.fixture(scope="module")
def lan_server(service):
    """Bound to every interface (reached here through 127.0.0.1)."""
    server = ApiServer(service, host="0.0.0.0", port=0, limits=ServerLimits(max_tokens_cap=2))
    server.start()
    yield server
    server.stop()


def test_beyond_loopback_posts_must_be_json(lan_server):
    url = lan_server.url + "/v1/chat/completions"
    body = json.dumps({"model": "tiny-llama", "messages": HI})
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "text/plain; x=json", ""):
        r = httpx.post(url, content=body, headers={"content-type": ctype})
        assert r.status_code == 415, ctype
        assert "application/json" in r.json()["error"]["message"]
    r = httpx.post(lan_server.url + "/api/chat", content=body, headers={"content-type": "text/plain"})  # fmt: skip
    assert r.status_code == 415 and isinstance(r.json()["error"], str)
    ok = httpx.post(url, content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


def test_beyond_loopback_the_origin_must_be_the_served_host(lan_server):
    host = lan_server.url.split("://", 1)[1]
    url = lan_server.url + "/v1/models"
    assert httpx.get(url, headers={"Origin": "https://evil.example"}).status_code == 403
    assert httpx.get(url, headers={"Origin": "null"}).status_code == 403
    assert httpx.get(url, headers={"Origin": f"http://{host}"}).status_code == 200
    assert httpx.get(url).status_code == 200  # no Origin: not a browser page


def test_the_loopback_server_still_takes_curl_form_posts(server):
    body = json.dumps({"model": "tiny-llama", "prompt": "hi", "stream": False})
    r = httpx.post(server.url + "/api/generate", content=body,
                   headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 200


def test_a_queued_stream_gets_headers_and_a_keepalive_at_once(service):
    with running_server(service) as srv:
        url = srv.url + "/v1/chat/completions"
        with httpx.stream("POST", url, json={**ENDLESS, "stream": True}, timeout=60) as busy:
            first = busy.iter_lines()
            assert next(first).startswith("data:")  # running: no comment needed
            t0 = time.perf_counter()
            queued_request = {**ENDLESS, "max_tokens": 2, "stream": True}
            got: dict = {}
            with httpx.stream("POST", url, json=queued_request, timeout=5) as queued:
                got["status"] = queued.status_code
                got["type"] = queued.headers["content-type"]
                lines = queued.iter_lines()
                got["line"] = next(lines)
                got["after"] = time.perf_counter() - t0
                # Ollama's NDJSON has no comments, but its headers come at once too.
                ollama_body = {"model": "tiny-llama", "messages": HI, "options": {"num_predict": 2}}
                with httpx.stream("POST", srv.url + "/api/chat", json=ollama_body, timeout=5) as o:
                    got["ollama"] = (o.status_code, time.perf_counter() - t0)
        assert got["status"] == 200 and got["type"].startswith("text/event-stream")
        assert got["line"] == ": keep-alive"
        assert got["after"] < 2.0
        assert got["ollama"][0] == 200 and got["ollama"][1] < 3.0
        deadline = time.time() + 30
        while srv.context.bridge.pending and time.time() < deadline:
            time.sleep(0.05)
        assert srv.context.bridge.pending == 0


def test_a_queued_stream_still_completes_when_its_turn_comes(service):
    import openai

    with running_server(service) as srv:
        url = srv.url + "/v1/chat/completions"
        results: list = []

        def queued() -> None:
            client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=60)
            chunks = list(client.chat.completions.create(
                model="tiny-llama", messages=HI, max_tokens=3, temperature=0, stream=True,
                stream_options={"include_usage": True}))  # fmt: skip
            results.append(chunks)

        with httpx.stream("POST", url, json={**ENDLESS, "stream": True}, timeout=60) as busy:
            lines = busy.iter_lines()
            next(lines)
            worker = threading.Thread(target=queued)
            worker.start()
            time.sleep(0.5)
        worker.join(60)
        (chunks,) = results
        assert chunks[-1].usage.completion_tokens == 3
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
