"""Distributed inference on 127.0.0.1 with MLX's ring backend.

Greedy output across 2 and 3 processes (tensor parallel and pipeline) must equal the
single-process output token for token, with and without drafters; a rank killed or
stopped mid-generation must end that request with a clear error and leave the
service usable. MLX allows one distributed group per process, so each group runs
in a driver subprocess (rank 0) whose results this process compares with its own
single-process runs. Fast tests cover hostfiles, host checks and launch errors.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.distributed import HostfileError, check_hosts, load_hosts
from engine.distributed.probe import lookahead_version
from engine.distributed.protocol import Command, Op, RankStats, decode, decode_stats, encode
from engine.distributed.protocol import stats_contribution as contribution
from engine.distributed.sharding import choose_mode, lazy_model, pipeline_blocks
from engine.errors import ModelLoadError
from engine.events import Failed, Finished, Generate, TokenEvent
from engine.service import EngineService
from engine.settings import DecoderSettings, SamplingSettings
from tests.tiny_models import make_tiny_model

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "The quick brown fox"
REPEAT = "abc abc abc abc abc"
SHARED = "A long shared prefix for the cache. " * 3


def make_hybrid(path: Path) -> Path:
    """A Qwen3.5 (GatedDeltaNet + attention layers, multimodal wrapper, built-in MTP)
    sized to split over 2 ranks: its recurrent caches cannot be trimmed, so a rejected
    draft makes every rank restore a snapshot and replay."""
    import tests.mtp_models as M
    from tests.tiny_models import write_tokenizer

    path.mkdir(parents=True)
    cfg = M.family_config("qwen3_5", write_tokenizer(path))
    cfg["text_config"].update(
        vocab_size=260, linear_num_key_heads=2, linear_num_value_heads=4, num_attention_heads=4
    )
    target = M.build_target(cfg, 0, 0.3, 8.0)
    main = M.to_hf("qwen3_5", target)
    mtp = M.build_mtp("qwen3_5", cfg, target, 0, 0.3, True)
    module = M.mtp_to_hf("qwen3_5", mtp, main, M.mtp_prefix("qwen3_5", cfg))
    M._write(path, cfg, {**main, **module}, M.HF)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    from tests.mtp_models import make_target, write_lookahead

    root = tmp_path_factory.mktemp("dist")
    built = make_target(root / "mtp-llama", "llama")
    return {
        "hybrid": str(make_hybrid(root / "qwen3_5")),
        "tiny": str(make_tiny_model(root / "tiny")),  # 4 heads, 2 layers
        "draft": str(make_tiny_model(root / "draft", logit_scale=4.0)),  # same argmax: accepts
        "six": str(  # 6 heads, 3 kv heads: tensor parallel over 3 ranks
            make_tiny_model(
                root / "six",
                seed=1,
                hidden_size=96,
                intermediate_size=192,
                num_attention_heads=6,
                num_key_value_heads=3,
                num_hidden_layers=4,
            )
        ),  # fmt: skip
        "four": str(make_tiny_model(root / "four", seed=2, num_hidden_layers=4)),
        "mtp": str(built["path"]),
        "mtp_head": str(write_lookahead(built, root / "mtp-head")),
    }


def runs(models: dict[str, str], three: bool = False) -> dict[str, dict]:
    """name -> Generate keyword arguments, shared by the driver and the reference."""
    n = 10 if three else 24

    def req(model, prompt=PROMPT, decoder="none", k=None, n=n):
        return dict(model=models[model], prompt=prompt, decoder=decoder, k=k, n=n)

    if three:  # "six" splits by heads (tensor), "four" cannot (pipeline)
        return {
            "six": req("six"),
            "six-lookup": req("six", REPEAT, "lookup", 2),
            "four": req("four"),
            "four-lookup": req("four", REPEAT, "lookup", 3),
            "four-draft": req("four", decoder=models["draft"], k=2),
        }
    return {
        "plain": req("tiny"),
        "lookup": req("tiny", REPEAT, "lookup", 3),
        "draft": req("tiny", decoder=models["draft"], k=2),
        "mtp": req("mtp", "Hello world, the", models["mtp_head"], 2, 16),
        "hybrid-mtp": req("hybrid", "Hello world, the", "auto", 2, 16),
        "cache-1": req("tiny", SHARED + "Alpha"),
        "cache-2": req("tiny", SHARED + "Beta"),
    }


def generate(service, rid: str, spec: dict) -> Finished | Failed:
    decoder = DecoderSettings(spec["decoder"], draft_tokens=spec["k"], adaptive=spec["k"] is None)
    sampling = SamplingSettings(max_tokens=spec["n"], max_loop_count=0)
    command = Generate(
        rid, spec["model"], prompt=spec["prompt"], sampling=sampling, decoder=decoder
    )
    return list(service.stream(command))[-1]


def summary(final) -> dict:
    if isinstance(final, Failed):
        return {"failed": final.message}
    s = final.stats
    return {
        "tokens": list(final.token_ids),
        "drafted": s.drafted,
        "accepted": s.accepted,
        "decoder": s.decoder,
        "cached": s.cached_prompt_tokens,
        "ranks": s.ranks,
        "parallel": s.parallel,
        "rank_memory_gb": list(s.rank_memory_gb),
        "rank_comm_share": list(s.rank_comm_share),
        "comm_share": s.comm_share,
    }


# ---------------------------------------------------------------- driver (rank 0)


def drive(hosts: str, models: dict[str, str], three: bool, fault: str | None, only: str) -> None:
    """Run in a subprocess: the runs across the hosts (``only`` these, if given), then
    (fault) a kill or stop of rank 1 mid-generation and one more request; prints a
    JSON summary."""
    from engine.distributed import DistributedEngineService

    service = DistributedEngineService(hosts).start()
    chosen = {k: v for k, v in runs(models, three).items() if not only or k in only.split(",")}
    out = {name: summary(generate(service, name, spec)) for name, spec in chosen.items()}
    if fault:
        worker = service.cluster.workers[0]
        hit = threading.Event()

        def on_event(ev) -> None:
            mine = isinstance(ev, TokenEvent) and ev.request_id == "victim"
            if mine and ev.index == 4 and not hit.is_set():
                hit.set()
                os.kill(worker.proc.pid, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)

        service.subscribe(on_event)
        first = next(iter(chosen.values()))
        out["victim"] = summary(generate(service, "victim", dict(first, n=100_000)))
        out["alive"] = service.alive
        out["after"] = summary(generate(service, "after", first))
    service.close()
    # MLX builds one group per process: a second set of hosts is refused, clearly.
    from engine.distributed import can_link_hosts

    out["can_link"] = can_link_hosts()
    again = DistributedEngineService(hosts).start()
    out["again"] = summary(generate(again, "again", next(iter(chosen.values()))))
    again.close()
    print("RESULT " + json.dumps(out), flush=True)


def run_driver(hosts: str, models: dict[str, str], three=False, fault=None, only="") -> dict:
    code = (
        "import sys, json\n"
        "from tests.engine.test_distributed import drive\n"
        "a = sys.argv\n"
        "drive(a[1], json.loads(a[2]), a[3] == '1', a[4] or None, a[5])\n"
    )
    args = [hosts, json.dumps(models), "1" if three else "0", fault or "", only]
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"driver failed (status {done.returncode}):\n{done.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.fixture(scope="module")
def reference(models) -> dict[str, dict]:
    """Every run on one process (the engine as it is without --hosts)."""
    service = EngineService().start()
    try:
        out = {}
        for three in (False, True):
            for name, spec in runs(models, three).items():
                out[name] = summary(generate(service, f"ref-{name}", spec))
        return out
    finally:
        service.close()


# ---------------------------------------------------------------- across processes


@pytest.mark.slow
def test_two_ranks_match_one_process_and_survive_a_killed_rank(models, reference):
    got = run_driver("127.0.0.1,127.0.0.1", models, fault="kill")
    for name in runs(models):
        assert got[name]["tokens"] == reference[name]["tokens"], name
        assert got[name]["ranks"] == 2 and got[name]["parallel"] == "tensor", name
    assert reference["plain"]["ranks"] == 1 and reference["plain"]["rank_memory_gb"] == []
    # Drafters ran on rank 0 and drafted: lookup, a draft model, an MTP head.
    drafters = {
        "lookup": "Prompt lookup",
        "draft": "Draft model",
        "mtp": "MTP",
        "hybrid-mtp": "MTP",
    }
    for name, decoder in drafters.items():
        assert got[name]["decoder"].startswith(decoder)
        assert got[name]["drafted"] > 0 and got[name]["accepted"] > 0, name
    # Rejected drafts on the recurrent model: rank 1 restored its snapshot and replayed.
    assert got["hybrid-mtp"]["accepted"] < got["hybrid-mtp"]["drafted"]
    for name in ("lookup", "draft"):  # token-only drafters: the very same rounds
        assert got[name]["accepted"] == reference[name]["accepted"], name
    assert got["cache-2"]["cached"] > 0  # the prompt cache rolled back on every rank
    stats = got["plain"]
    assert len(stats["rank_memory_gb"]) == 2 and all(m > 0 for m in stats["rank_memory_gb"])
    assert len(stats["rank_comm_share"]) == 2
    assert all(0 < s <= 1 for s in stats["rank_comm_share"]) and 0 < stats["comm_share"] <= 1
    # Killed mid-generation: a clear error naming the rank; then one process.
    assert "failed" in got["victim"]
    assert "rank 1 (127.0.0.1) stopped (killed by SIGKILL)" in got["victim"]["failed"]
    assert "this machine alone" in got["victim"]["failed"]
    assert got["alive"] is True
    assert got["after"]["tokens"] == reference["plain"]["tokens"]
    assert got["after"]["ranks"] == 1
    assert got["can_link"] is False and "restart lookahead" in got["again"]["failed"]


@pytest.mark.slow
def test_three_ranks_tensor_and_pipeline_match_one_process_and_time_out_a_stopped_rank(
    models, reference, tmp_path
):
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps({"hosts": ["127.0.0.1"] * 3, "timeout_s": 3}))
    got = run_driver(str(hostfile), models, three=True, fault="stop")
    for name in runs(models, three=True):
        assert got[name]["tokens"] == reference[name]["tokens"], name
        assert got[name]["ranks"] == 3
        assert got[name]["parallel"] == ("tensor" if name.startswith("six") else "pipeline")
    for name in ("six-lookup", "four-lookup", "four-draft"):
        assert got[name]["drafted"] > 0 and got[name]["accepted"] == reference[name]["accepted"]
    # Pipeline: rank 0 (last layers + head) holds more than a middle rank.
    mem = got["four"]["rank_memory_gb"]
    assert len(mem) == 3 and mem[0] > mem[1] > 0
    # Rank 1 stopped (SIGSTOP) mid-generation: the watchdog turns the stall into an
    # error naming it, and the service goes on alone.
    assert "made no progress for" in got["victim"]["failed"]
    assert "(rank 1 (127.0.0.1) is stopped)" in got["victim"]["failed"]
    assert got["alive"] is True
    assert got["after"]["tokens"] == reference["six"]["tokens"] and got["after"]["ranks"] == 1


# ---------------------------------------------------------------- launch errors


def _fake_python(tmp_path: Path, **info) -> Path:
    """An 'interpreter' that answers like a worker of another lookahead version."""
    ready = {"event": "ready", "pid": 1, "protocol": 1, "lookahead": "0.0.9", "mlx": "0.30.0",
             "mlx_lm": "0.29.0", "memory_gb": 64, "backends": ["ring"], **info}  # fmt: skip
    probe = {k: v for k, v in ready.items() if k not in ("event", "pid")}
    path = tmp_path / "old-python"
    path.write_text(
        "#!/bin/sh\n"
        f"if [ \"$2\" = engine.distributed.probe ]; then echo '{json.dumps(probe)}'; exit 0; fi\n"
        f"echo '{json.dumps(ready)}'\nexec sleep 30\n"
    )
    path.chmod(0o755)
    return path


def test_a_host_with_another_version_is_refused_by_name(models, tmp_path):
    from engine.distributed import DistributedEngineService

    hostfile = tmp_path / "hosts.json"
    old = _fake_python(tmp_path)
    hostfile.write_text(
        json.dumps({"hosts": ["127.0.0.1", {"ssh": "127.0.0.1", "python": str(old)}]})
    )
    service = DistributedEngineService(str(hostfile)).start()
    try:
        final = generate(service, "v", runs(models)["plain"])
        assert isinstance(final, Failed)
        assert final.message.startswith("rank 1 (127.0.0.1) runs another version")
        assert "lookahead 0.0.9" in final.message and "install the same versions" in final.message
        assert service.alive and not service.cluster.started
        assert service.cluster.workers == []  # the impostor was stopped
    finally:
        service.close()


def test_an_unreachable_host_fails_the_request_with_ssh_reason(models):
    from engine.distributed import DistributedEngineService

    service = DistributedEngineService("127.0.0.1,127.0.0.2").start()  # no sshd anywhere here
    try:
        final = generate(service, "u", runs(models)["plain"])
        assert isinstance(final, Failed)
        assert final.message.startswith("rank 1 (127.0.0.2) did not start")
        assert "ssh" in final.message
        assert service.alive
    finally:
        service.close()


def test_check_hosts_reports_each_host(tmp_path):
    hostfile = tmp_path / "hosts.json"
    old = _fake_python(tmp_path)
    hosts = ["127.0.0.1", {"ssh": "127.0.0.1", "python": str(old)}, "127.0.0.2",
             "no-such-host.invalid", {"ssh": "127.0.0.1", "python": "/no/such/python"}]  # fmt: skip
    hostfile.write_text(json.dumps({"hosts": hosts}))
    ok, other, refused, unknown, nopython = check_hosts(hostfile, timeout_s=60)
    assert ok.ok and ok.reachable and ok.version == lookahead_version() and ok.memory_gb > 0
    assert ok.message.startswith("ok: lookahead")
    assert not other.ok and other.reachable and other.version == "0.0.9"
    assert other.message.startswith("runs another version") and other.memory_gb == 64
    assert not refused.reachable and refused.message.startswith("unreachable: ssh:")
    assert not unknown.reachable and "cannot resolve" in unknown.message
    assert nopython.reachable and "cannot run lookahead there" in nopython.message
    assert [s.rank for s in (ok, other, refused, unknown, nopython)] == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------- hostfiles, plans, protocol


def test_hostfiles_in_mlx_launch_format_lists_and_strings(tmp_path):
    f = tmp_path / "hosts.json"
    f.write_text(json.dumps({
        "backend": "ring", "envs": ["A=1"], "mode": "pipeline", "timeout_s": 9, "port": 4000,
        "hosts": [{"ssh": "127.0.0.1", "ips": ["127.0.0.1"]}, {"ssh": "box", "ips": ["10.9.9.9"]}],
    }))  # fmt: skip
    c = load_hosts(f)
    assert [h.ip for h in c.hosts] == ["127.0.0.1", "10.9.9.9"]
    assert (c.mode, c.timeout_s, c.port, c.envs) == ("pipeline", 9.0, 4000, ("A=1",))
    assert c.hosts[0].local and not c.hosts[1].local
    f.write_text(json.dumps([{"ssh": "localhost"}, "127.0.0.1"]))
    assert [h.ip for h in load_hosts(f).hosts] == ["127.0.0.1", "127.0.0.1"]
    assert load_hosts("127.0.0.1,127.0.0.1").size == 2


@pytest.mark.parametrize(
    "content, message",
    [
        ('["127.0.0.1"]', "at least 2 hosts"),
        ("{not json", "not valid JSON"),
        ('{"hosts": "x"}', "'hosts' must be a list"),
        ('{"hosts": ["127.0.0.1", "127.0.0.1"], "mode": "sideways"}', "mode 'sideways'"),
        ('{"hosts": ["127.0.0.1", "127.0.0.1"], "backend": "smoke"}', "backend 'smoke'"),
        ('{"hosts": ["203.0.113.7", "127.0.0.1"]}', "must be this machine"),
        ('{"hosts": ["127.0.0.1", "no-such-host.invalid"]}', "unreachable"),
        ('{"hosts": ["127.0.0.1", {"ssh": "b", "ips": ["nope"]}]}', "not an IP address"),
    ],
)
def test_bad_hostfiles_say_what_is_wrong(tmp_path, content, message):
    f = tmp_path / "hosts.json"
    f.write_text(content)
    with pytest.raises(HostfileError, match=message):
        load_hosts(f)


def test_missing_hostfile():
    with pytest.raises(HostfileError, match="does not exist"):
        load_hosts("/no/such/hosts.json")


def test_pipeline_blocks_give_rank_zero_the_last_layers():
    assert pipeline_blocks(4, 2) == ((2, 4), (0, 2))
    assert pipeline_blocks(4, 3) == ((2, 4), (1, 2), (0, 1))
    assert pipeline_blocks(7, 3) == ((4, 7), (2, 4), (0, 2))


def test_mode_follows_what_the_model_allows(models):
    from engine.library import read_config

    tiny = lazy_model(Path(models["tiny"]))
    cfg = read_config(Path(models["tiny"]))
    assert choose_mode(tiny, cfg, 2, "auto")[0] == "tensor"
    assert choose_mode(tiny, cfg, 2, "pipeline")[0] == "pipeline"
    with pytest.raises(ModelLoadError, match="num_attention_heads=4 does not divide by 3"):
        choose_mode(tiny, cfg, 3, "tensor")
    with pytest.raises(ModelLoadError, match="2 layers for 3 ranks"):
        choose_mode(tiny, cfg, 3, "auto")
    four = Path(models["four"])
    assert choose_mode(lazy_model(four), read_config(four), 3, "auto")[0] == "pipeline"


def test_header_round_trip():
    size = 3
    cmd = Command(Op.FORWARD, 7, 9, 120, 3, True, 0, 2, (4, 5), 11, (65, 66, 67))
    back = decode(encode(cmd, size))
    assert (back.op, back.model_id, back.cache_id, back.offset) == (Op.FORWARD, 7, 9, 120)
    assert (back.tokens, back.timed, back.drop_model, back.drop_caches) == (
        (65, 66, 67), True, 2, (4, 5),
    )  # fmt: skip
    long = decode(encode(Command(Op.FORWARD, n_tokens=500), size))
    assert long.n_tokens == 500 and not long.inline and long.tokens == ()
    mine = contribution(2, size, RankStats(1.5, 2.25, 0.375, 4))
    summed = [a + b for a, b in zip(encode(cmd, size), mine, strict=True)]
    assert decode(summed).offset == 120
    assert decode_stats(summed, 2) == RankStats(1.5, 2.25, 0.375, 4)
