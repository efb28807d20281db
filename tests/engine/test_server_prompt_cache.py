"""The persistent prompt cache: prefixes reused across restarts, bounded on disk with
least-recently-used eviction, broken files ignored, exactness kept."""

from __future__ import annotations

import openai
import pytest

from engine.events import Finished, Generate
from engine.prompt_cache_disk import DiskPromptCache
from engine.service import EngineService
from engine.settings import SamplingSettings
from tests.engine.test_server_support import running_server, tiny_library
from tests.tiny_models import make_tiny_model

S = SamplingSettings(max_tokens=4, max_loop_count=0, top_alternatives=0)
PREFIX = "You are a coding assistant. Follow the house rules. " * 6


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(make_tiny_model(tmp_path_factory.mktemp("pc") / "tiny-llama"))


def run(service: EngineService, model: str, prompt: str) -> Finished:
    final = service.run(Generate("pc", model, prompt=prompt, sampling=S))
    assert isinstance(final, Finished)
    return final


def with_service(folder, fn, **kw):
    svc = EngineService(cache_prompts=True, prompt_cache_dir=folder, **kw).start()
    try:
        return fn(svc)
    finally:
        svc.close()


def test_a_prefix_survives_a_restart_and_gives_the_same_tokens(tiny, tmp_path):
    folder = tmp_path / "cache"
    first = with_service(folder, lambda s: run(s, tiny, PREFIX + "Question one?"))
    assert first.stats.cached_prompt_tokens == 0
    assert len(list(folder.glob("*.safetensors"))) == 1
    second = with_service(folder, lambda s: run(s, tiny, PREFIX + "Another question?"))
    assert second.stats.cached_prompt_tokens >= len(PREFIX.encode()) - 1
    plain = EngineService().start()
    try:
        fresh = run(plain, tiny, PREFIX + "Another question?")
    finally:
        plain.close()
    assert fresh.stats.cached_prompt_tokens == 0
    assert fresh.token_ids == second.token_ids


def test_off_by_default_and_switchable(tiny, tmp_path):
    folder = tmp_path / "cache"
    svc = EngineService(prompt_cache_dir=folder).start()
    try:
        run(svc, tiny, PREFIX + "one")
        assert not list(folder.glob("*.safetensors"))
        svc.cache_prompts = True
        run(svc, tiny, "Different start. " + PREFIX)
        assert len(list(folder.glob("*.safetensors"))) == 1
    finally:
        svc.close()


def test_size_bound_evicts_the_least_recently_used(tiny, tmp_path):
    folder = tmp_path / "cache"
    prompts = [f"{name} " + PREFIX for name in ("Alpha", "Bravo", "Charlie")]
    one = with_service(folder, lambda s: run(s, tiny, prompts[0]))
    entry_size = next(folder.glob("*.safetensors")).stat().st_size
    budget = int(entry_size * 2.5)

    def scenario(svc):
        run(svc, tiny, prompts[1])
        run(svc, tiny, prompts[0])  # Alpha is used again (from memory): Bravo is now oldest
        run(svc, tiny, prompts[2])
        return svc.prompt_cache_disk

    disk = with_service(folder, scenario, prompt_cache_max_bytes=budget)
    kept = {tuple(e.tokens[: len(one.prompt_token_ids)]) for e in disk.entries()}
    assert disk.total_bytes <= budget
    assert len(kept) == 2
    assert tuple(one.prompt_token_ids) in kept  # Alpha survived, Bravo was evicted
    # A restart finds exactly what is on disk.
    assert len(DiskPromptCache(folder).entries()) == 2


def test_longer_entries_replace_their_prefixes(tiny, tmp_path):
    folder = tmp_path / "cache"

    def conversation(svc):
        a = run(svc, tiny, PREFIX)
        b = run(svc, tiny, PREFIX + "And now a much longer follow-up turn, " * 3)
        return a, b

    a, b = with_service(folder, conversation)
    assert b.stats.cached_prompt_tokens >= len(a.prompt_token_ids) - 1
    (entry,) = DiskPromptCache(folder).entries()  # the first entry was superseded
    assert entry.tokens[: len(b.prompt_token_ids)] == list(b.prompt_token_ids)


def test_a_corrupted_file_is_dropped_not_fatal(tiny, tmp_path):
    folder = tmp_path / "cache"
    first = with_service(folder, lambda s: run(s, tiny, PREFIX + "x"))
    (path,) = folder.glob("*.safetensors")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # truncated: header intact, data missing
    again = with_service(folder, lambda s: run(s, tiny, PREFIX + "x"))
    assert again.stats.cached_prompt_tokens == 0
    assert again.token_ids == first.token_ids
    (fresh,) = folder.glob("*.safetensors")  # the bad file was replaced by a good one
    assert fresh.stat().st_size == len(raw)


def test_another_model_never_reuses_an_entry(tiny, tmp_path):
    folder = tmp_path / "cache"
    other = str(make_tiny_model(tmp_path / "other", seed=1))
    with_service(folder, lambda s: run(s, tiny, PREFIX + "q"))
    final = with_service(folder, lambda s: run(s, other, PREFIX + "q"))
    assert final.stats.cached_prompt_tokens == 0


def test_the_api_reports_cached_tokens_after_a_server_restart(tmp_path):
    long_system = {"role": "system", "content": PREFIX * 2}

    def ask(question: str) -> int:
        svc = EngineService(cache_prompts=True, prompt_cache_dir=tmp_path / "cache").start()
        try:
            with running_server(svc) as server:
                client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
                reply = client.chat.completions.create(
                    model="tiny-llama",
                    messages=[long_system, {"role": "user", "content": question}],
                    max_tokens=4,
                )
                return reply.usage.prompt_tokens_details.cached_tokens
        finally:
            svc.close()

    with tiny_library(tmp_path / "lib"):
        assert ask("first question") == 0
        assert ask("second question") > len(long_system["content"])
