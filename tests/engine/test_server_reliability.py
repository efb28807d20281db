"""The API server's guard rails: API key, body limit, browser origins, cancelling on
disconnect, a bounded queue, start/stop, and the `lookahead serve` command."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import ollama
import openai
import pytest

from engine.errors import EngineError
from engine.events import Finished
from engine.server import ApiServer, ServerLimits
from engine.service import EngineService
from tests.engine.test_server_support import running_server, tiny_library

HI = [{"role": "user", "content": "hi"}]
# Sampled, so the loop guard does not end it: it runs until cancelled.
ENDLESS = {
    "model": "tiny-llama",
    "messages": HI,
    "max_tokens": 100_000,
    "temperature": 1,
    "seed": 1,
}


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    with tiny_library(tmp_path_factory.mktemp("server-lib")) as models:
        yield models


@pytest.fixture(scope="module")
def service(library):
    svc = EngineService().start()
    yield svc
    svc.close()


class FinishedLog:
    """Records the engine's Finished events (engine thread) for the tests to wait on."""

    def __init__(self, service: EngineService):
        self.events: list[Finished] = []
        self._cond = threading.Condition()
        self.unsubscribe = service.subscribe(self._on_event)

    def _on_event(self, event) -> None:
        if isinstance(event, Finished):
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def wait_for(self, reason: str, timeout: float = 30.0) -> Finished:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: any(e.reason == reason for e in self.events), timeout=timeout
            )
        assert ok, f"no generation finished with {reason!r}: {self.events}"
        return next(e for e in self.events if e.reason == reason)


def test_api_key_is_required_when_set(service):
    with running_server(service, api_key="s3cret") as srv:
        for path, style in (("/v1/models", dict), ("/api/tags", str)):
            r = httpx.get(srv.url + path)
            assert r.status_code == 401 and isinstance(r.json()["error"], style)
            wrong = httpx.get(srv.url + path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
        r = httpx.post(
            srv.url + "/v1/chat/completions", json={"model": "tiny-llama", "messages": HI}
        )
        assert r.status_code == 401
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.url + "/v1", api_key="nope", max_retries=0).models.list()
        good = openai.OpenAI(base_url=srv.url + "/v1", api_key="s3cret", max_retries=0)
        assert good.chat.completions.create(model="tiny-llama", messages=HI, max_tokens=2).choices
        client = ollama.Client(host=srv.url, headers={"Authorization": "Bearer s3cret"})
        assert client.chat(model="tiny-llama", messages=HI, options={"num_predict": 2}).done
        assert httpx.get(srv.url + "/", headers={}).status_code == 200  # liveness stays open
        assert httpx.get(srv.url + "/v1/models", headers={"x-api-key": "s3cret"}).status_code == 200


def test_request_bodies_are_size_limited(service):
    with running_server(service, limits=ServerLimits(max_body_bytes=2048)) as srv:
        big = {"model": "tiny-llama", "messages": [{"role": "user", "content": "x" * 4096}]}
        r = httpx.post(srv.url + "/v1/chat/completions", json=big)
        assert r.status_code == 413 and "larger" in r.json()["error"]["message"]

        def chunks():  # no Content-Length: the limit is enforced while reading
            yield json.dumps(big).encode()

        r = httpx.post(srv.url + "/api/chat", content=chunks())
        assert r.status_code == 413 and "larger" in r.json()["error"]
        small = {"model": "tiny-llama", "messages": HI, "max_tokens": 2}
        assert httpx.post(srv.url + "/v1/chat/completions", json=small).status_code == 200


def test_web_pages_and_foreign_hosts_are_refused(service):
    with running_server(service) as srv:
        page = httpx.get(srv.url + "/v1/models", headers={"Origin": "https://evil.example"})
        assert page.status_code == 403
        rebound = httpx.get(srv.url + "/api/tags", headers={"Host": "evil.example"})
        assert rebound.status_code == 403
        local = httpx.get(srv.url + "/v1/models", headers={"Origin": "http://localhost:3000"})
        assert local.status_code == 200


def test_a_client_that_disconnects_cancels_its_generation(service):
    log = FinishedLog(service)
    try:
        with running_server(service) as srv:
            with httpx.stream(
                "POST", srv.url + "/v1/chat/completions", json={**ENDLESS, "stream": True}
            ) as r:
                lines = r.iter_lines()
                assert next(lines).startswith("data:")
                next(lines)
            # Streaming: leaving the `with` closed the connection.
            first = log.wait_for("cancelled")
            assert first.stats.generation_tokens < 100_000
            log.events.clear()
            # Not streaming: the client gives up waiting.
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(srv.url + "/v1/chat/completions", json=ENDLESS, timeout=1.0)
            log.wait_for("cancelled")
            assert srv.context.bridge.pending == 0
    finally:
        log.unsubscribe()


def test_the_queue_is_bounded_and_first_come_first_served(service):
    limits = ServerLimits(max_pending=2)
    log = FinishedLog(service)
    try:
        with running_server(service, limits=limits) as srv:
            url = srv.url + "/v1/chat/completions"
            slow = httpx.stream("POST", url, json={**ENDLESS, "stream": True})
            response = slow.__enter__()
            lines = response.iter_lines()  # keep it: a dropped iterator closes the stream
            next(lines)  # the first request is running
            results: list[int] = []
            second = threading.Thread(
                target=lambda: results.append(
                    httpx.post(url, json={**ENDLESS, "max_tokens": 3}, timeout=60).status_code
                )
            )
            second.start()
            deadline = time.time() + 10
            while srv.context.bridge.pending < 2 and time.time() < deadline:
                time.sleep(0.02)
            third = httpx.post(url, json={**ENDLESS, "max_tokens": 3})
            assert third.status_code == 429 and third.headers["retry-after"] == "1"
            slow.__exit__(None, None, None)  # hang up: the queued request runs next
            second.join(60)
            assert results == [200]
            assert [e.reason for e in log.events] == ["cancelled", "length"]
    finally:
        log.unsubscribe()


def test_start_stop_restart_and_port_in_use(service):
    server = ApiServer(service, port=0)
    url = server.start()
    assert server.running and httpx.get(url + "/").status_code == 200
    with pytest.raises(EngineError, match="cannot listen"):
        ApiServer(service, port=server._bound_port).start()
    server.stop()
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/")
    url2 = server.start()
    assert httpx.get(url2 + "/v1/models").status_code == 200
    server.stop()
    assert service.alive  # the engine outlives its servers


def test_stopping_ends_open_streams_and_cancels_their_generations(service):
    log = FinishedLog(service)
    server = ApiServer(service, port=0)
    url = server.start()
    got: list[str] = []

    def stream() -> None:
        with httpx.stream(
            "POST", url + "/v1/chat/completions", json={**ENDLESS, "stream": True}, timeout=60
        ) as r:
            got.extend(r.iter_lines())

    reader = threading.Thread(target=stream)
    try:
        reader.start()
        deadline = time.time() + 30
        while not got and time.time() < deadline:
            time.sleep(0.05)
        started = time.time()
        server.stop()
        assert time.time() - started < 8
        reader.join(10)
        assert not reader.is_alive()
        log.wait_for("cancelled")
        assert service.alive
    finally:
        log.unsubscribe()
        server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lookahead_serve_command(library, tmp_path):
    port = _free_port()
    env = {**os.environ, "LOOKAHEAD_MODELS_DIR": str(library), "LOOKAHEAD_API_KEY": "k"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--cache-prompts"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in banner, banner + proc.stdout.read()
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        reply = client.chat.completions.create(model="tiny-llama", messages=HI, max_tokens=3)
        assert reply.usage.completion_tokens == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
