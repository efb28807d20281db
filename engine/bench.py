"""A/B benchmark of a decoder: the same prompts with drafting off and on.

Runs in one process on one thread (which owns MLX for the whole run): a warm-up
pair first, then every prompt with the decoder off and on, the order alternating
per prompt so slow drift (thermal, other load) hits both sides alike. Each run
starts from an empty KV cache: sharing a prompt cache between the two sides would
hand the second one a free prefill. Temperature 0 throughout, so both sides must
produce the same tokens; the report says whether they did.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlx.core as mx

from engine.events import ChatMessage, Event, Finished
from engine.settings import DecoderSettings, SamplingSettings

PROMPT_SETS: dict[str, tuple[str, ...]] = {
    "code": (
        "Write a Flappy Bird clone in HTML.",
        "Write a Python function that checks whether a string is a palindrome, with tests.",
        "Implement a binary search tree in Python with insert, search and delete.",
        "Write a bash script that backs up a folder into a dated tar.gz file.",
    ),
    "story": (
        "Write a short story about a lighthouse keeper who finds a message in a bottle.",
        "Tell a story about a young witch who is bad at magic.",
        "Write a story about a robot exploring an abandoned city.",
    ),
    "chat": (
        "What causes the seasons on Earth?",
        "How should I prepare for my first marathon?",
        "What is the difference between a virus and a bacterium?",
    ),
}


@dataclass
class RunRecord:
    kind: str
    prompt: str
    decoder: bool  # drafting on
    tokens: int
    tps: float
    ttft_s: float
    decode_s: float  # time spent generating after the first token
    peak_memory_gb: float
    acceptance: float
    mean_accepted_length: float
    per_position: list[float]
    drafted: int
    accepted: int
    finish: str
    token_ids: list[int] = field(repr=False, default_factory=list)


@dataclass
class KindSummary:
    kind: str
    prompts: int
    tps_off: float
    tps_on: float
    ratio: float
    acceptance: float
    mean_accepted_length: float
    per_position: list[float]
    ttft_off_s: float
    ttft_on_s: float
    peak_off_gb: float
    peak_on_gb: float
    identical: int  # prompts whose outputs matched token for token


def load_prompts(spec: str) -> dict[str, tuple[str, ...]]:
    """``code``/``story``/``chat`` (comma-separated), ``all``, or a FILE: one prompt a
    line, or JSON (a list of prompts or {kind: [prompts]})."""
    path = Path(spec).expanduser()
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = [line.strip() for line in text.splitlines() if line.strip()]
        if isinstance(data, dict):
            return {str(k): tuple(map(str, v)) for k, v in data.items()}
        return {path.stem: tuple(map(str, data))}
    kinds = list(PROMPT_SETS) if spec == "all" else [k.strip() for k in spec.split(",")]
    unknown = [k for k in kinds if k not in PROMPT_SETS]
    if unknown:
        from engine.errors import EngineError

        raise EngineError(
            f"unknown prompt set {', '.join(unknown)}: use code, story, chat, all or a FILE"
        )
    return {k: PROMPT_SETS[k] for k in kinds}


class Bench:
    """Owns a loaded target for the whole benchmark. Use from one thread only."""

    def __init__(self, model: str, decoder: str, draft_tokens: int | None, max_tokens: int):
        from engine.model_loader import load_model

        self.loaded = load_model(model)
        self.decoder = DecoderSettings(
            decoder=decoder, draft_tokens=draft_tokens, adaptive=draft_tokens is None
        ).validated()
        self.sampling = SamplingSettings(temperature=0.0, max_tokens=max_tokens).validated()
        self.drafter_name: str | None = None

    def run_once(self, kind: str, text: str, on: bool) -> RunRecord:
        from engine.drafters import create_drafter
        from engine.drafters.policy import DraftLengthPolicy
        from engine.generate import Generation

        prompt = self.loaded.chat.render([ChatMessage("user", text)])
        drafter, policy = None, None
        if on:
            drafter, _ = create_drafter(self.loaded, self.decoder)
            policy = DraftLengthPolicy(k=self.decoder.draft_tokens, adaptive=self.decoder.adaptive)
            self.drafter_name = drafter.name if drafter is not None else None
        mx.synchronize()
        mx.clear_cache()
        mx.reset_peak_memory()

        def ignore(_: Event) -> None:
            pass

        gen = Generation(
            f"bench-{kind}-{int(on)}",
            self.loaded,
            prompt,
            self.sampling,
            ignore,
            threading.Event(),
            cache_store=None,  # fresh cache every run (see module docstring)
            drafter=drafter,
            policy=policy,
        )
        done: Finished = gen.run()
        s = done.stats
        decode_s = max(s.elapsed_s - s.ttft_s, 1e-9)
        return RunRecord(
            kind=kind,
            prompt=text,
            decoder=on,
            tokens=s.generation_tokens,
            # Decode speed after the first token: prefill is the same on both sides.
            tps=max(s.generation_tokens - 1, 0) / decode_s,
            ttft_s=s.ttft_s,
            decode_s=decode_s,
            peak_memory_gb=s.peak_memory_gb,
            acceptance=s.acceptance_rate,
            mean_accepted_length=s.mean_accepted_length,
            per_position=list(s.per_position_acceptance),
            drafted=s.drafted,
            accepted=s.accepted,
            finish=done.reason,
            token_ids=list(done.token_ids),
        )

    def run(
        self,
        prompts: dict[str, tuple[str, ...]],
        progress: Callable[[RunRecord], None] | None = None,
    ) -> list[RunRecord]:
        first_kind = next(iter(prompts))
        warm = prompts[first_kind][0]
        self.run_once(first_kind, warm, False)  # warm-up: kernels, allocator, head load
        self.run_once(first_kind, warm, True)
        records: list[RunRecord] = []
        i = 0
        for kind, texts in prompts.items():
            for text in texts:
                order = (False, True) if i % 2 == 0 else (True, False)
                for on in order:
                    rec = self.run_once(kind, text, on)
                    records.append(rec)
                    if progress:
                        progress(rec)
                i += 1
        return records


def summarize(records: list[RunRecord]) -> list[KindSummary]:
    out = []
    for kind in dict.fromkeys(r.kind for r in records):
        off = [r for r in records if r.kind == kind and not r.decoder]
        on = [r for r in records if r.kind == kind and r.decoder]
        pairs = {r.prompt: r for r in off}
        same = sum(1 for r in on if r.prompt in pairs and pairs[r.prompt].token_ids == r.token_ids)
        tps_off = _rate(off)
        tps_on = _rate(on)
        drafted = sum(r.drafted for r in on)
        positions = max((len(r.per_position) for r in on), default=0)
        per_pos = []
        for p in range(positions):
            w = [(r.per_position[p], r.drafted) for r in on if len(r.per_position) > p]
            per_pos.append(sum(a * n for a, n in w) / max(sum(n for _, n in w), 1))
        rounds = sum(r.tokens - 1 for r in on)
        verify = sum((r.tokens - 1) / r.mean_accepted_length for r in on if r.mean_accepted_length)
        out.append(
            KindSummary(
                kind=kind,
                prompts=len(on),
                tps_off=tps_off,
                tps_on=tps_on,
                ratio=tps_on / tps_off if tps_off else 0.0,
                acceptance=sum(r.accepted for r in on) / drafted if drafted else 0.0,
                mean_accepted_length=rounds / verify if verify else 0.0,
                per_position=per_pos,
                ttft_off_s=_mean([r.ttft_s for r in off]),
                ttft_on_s=_mean([r.ttft_s for r in on]),
                peak_off_gb=max((r.peak_memory_gb for r in off), default=0.0),
                peak_on_gb=max((r.peak_memory_gb for r in on), default=0.0),
                identical=same,
            )
        )
    return out


def _rate(records: list[RunRecord]) -> float:
    """Tokens per second over all runs together (long replies weigh more)."""
    seconds = sum(r.decode_s for r in records)
    return sum(max(r.tokens - 1, 0) for r in records) / seconds if seconds else 0.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def format_table(summaries: list[KindSummary]) -> str:
    head = (
        f"{'prompts':<8} {'n':>2} {'tok/s off':>9} {'tok/s on':>9} {'ratio':>6} "
        f"{'accept':>7} {'per pos':>17} {'mean len':>8} {'ttft off/on s':>14} "
        f"{'peak off/on GB':>15} {'same':>5}"
    )
    lines = [head, "-" * len(head)]
    for s in summaries:
        pos = " ".join(f"{a:.0%}" for a in s.per_position[:4]) or "-"
        lines.append(
            f"{s.kind:<8} {s.prompts:>2} {s.tps_off:>9.1f} {s.tps_on:>9.1f} {s.ratio:>5.2f}x "
            f"{s.acceptance:>7.0%} {pos:>17} {s.mean_accepted_length:>8.2f} "
            f"{s.ttft_off_s:>6.2f}/{s.ttft_on_s:<7.2f} {s.peak_off_gb:>7.2f}/{s.peak_on_gb:<7.2f} "
            f"{s.identical:>2}/{s.prompts:<2}"
        )
    return "\n".join(lines)


def write_json(path: Path, meta: dict, records: list[RunRecord], summaries: list[KindSummary]):
    data = {
        "meta": meta,
        "summary": [asdict(s) for s in summaries],
        "runs": [asdict(r) for r in records],
    }
    path.write_text(json.dumps(data, indent=1))


def write_chart(path: Path, title: str, summaries: list[KindSummary]) -> None:
    """Bars of tok/s off and on per prompt kind, acceptance written above (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display, no Qt
    import matplotlib.pyplot as plt

    kinds = [s.kind for s in summaries]
    x = range(len(kinds))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    off = ax.bar([i - 0.2 for i in x], [s.tps_off for s in summaries], 0.4, label="decoder off")
    on = ax.bar([i + 0.2 for i in x], [s.tps_on for s in summaries], 0.4, label="decoder on")
    for bar, s in zip(on, summaries, strict=True):
        ax.annotate(
            f"{s.ratio:.2f}x\nacc {s.acceptance:.0%}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(list(x), kinds)
    ax.set_ylabel("tokens / s (decode)")
    ax.set_title(title, fontsize=10)
    ax.legend(handles=[off, on], loc="lower right")
    ax.margins(y=0.2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def bench_meta(bench: Bench, args: dict) -> dict:
    from engine.runtime import runtime_info

    info = runtime_info()
    return {
        "model": str(bench.loaded.path),
        "decoder": bench.drafter_name or bench.decoder.decoder,
        "draft_tokens": bench.decoder.draft_tokens,
        "adaptive": bench.decoder.adaptive,
        "max_tokens": bench.sampling.max_tokens,
        "device": info.device,
        "blas": info.blas,
        "dtype": bench.loaded.dtype,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        **args,
    }


def measure_costs(bench: Bench, max_n: int = 8, reps: int = 7) -> dict:
    """The terms of the speed-up formula, with the skinny kernel and with mx.matmul:
    seconds of a target forward over n = 1..max_n tokens (verifying n - 1 drafts) at
    the context of a real prompt, the drafter's round (propose k, then commit) for
    k = 1..max_n, and from them the acceptance each k needs to break even. Each time
    is the fastest of ``reps``: on a shared machine the rest is other people's load."""
    from engine.native.kernel import available, kernel_info, use_kernel

    kernels = []
    for on in [True, False] if available() else [False]:
        with use_kernel(on):
            label = kernel_info().label
            verify, drafter = _time_passes(bench, max_n, reps)
        kernels.append(
            {
                "kernel": label,
                "verify_s": verify,
                "drafter_s": drafter,
                "break_even": {
                    k: break_even(verify[1], verify[k + 1] + drafter.get(k, 0.0), k)
                    for k in range(1, max_n)
                },
            }
        )
    return {"kernels": kernels}


def _time_passes(bench: Bench, max_n: int, reps: int):
    """(t(n) for n = 1..max_n, drafter round for k = 1..max_n), in seconds."""
    from engine.drafters import create_drafter
    from engine.drafters.base import draft_ids

    loaded = bench.loaded
    verify, (ids, token, hidden) = target_costs(loaded, max_n, reps)
    rounds: dict[int, float] = {}
    drafter, _ = create_drafter(loaded, bench.decoder)
    if drafter is not None:
        needs = drafter.needs_hidden
        drafter.begin(ids, hidden[0] if needs else None, 0)
        for k in range(1, max_n + 1):
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                drafts = draft_ids(drafter.propose(token, k)) or [token]
                drafter.commit([token], drafts[0], hidden[0, -1:] if needs else None)
                mx.synchronize()
                times.append(time.perf_counter() - t0)
                token = drafts[0]
            rounds[k] = min(times)
        drafter.close()
    return verify, rounds


def target_costs(loaded, max_n: int, reps: int) -> tuple[dict[int, float], tuple]:
    """Seconds of a target forward over n = 1..max_n tokens at the context of a real
    prompt (fastest of ``reps``), and (prompt ids, next token, hidden) for a drafter."""
    from engine.kv_cache import new_cache, rollback
    from engine.target import forward

    ids = list(loaded.chat.render([ChatMessage("user", PROMPT_SETS["code"][0])]).token_ids)
    cache = new_cache(loaded.model)
    logits, hidden = forward(loaded.model, mx.array(ids)[None], cache, True)
    mx.eval(logits, hidden)
    token = int(mx.argmax(logits[0, -1]).item())
    verify: dict[int, float] = {}
    for n in range(1, max_n + 1):
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            out, h = forward(loaded.model, mx.array([[token] * n]), cache, True)
            mx.eval(out, h)
            times.append(time.perf_counter() - t0)
            rollback(cache, n)
        verify[n] = min(times)
    return verify, (ids, token, hidden)


def expected_speedup(
    verify_s: dict[int, float], draft_s: float, acceptance: list[float]
) -> tuple[int, float]:
    """The best k and its speed-up over plain decoding, from measured costs: a round of
    k drafts costs t(k + 1) + k * draft_s and yields 1 + a1 + a1 a2 + ... tokens, where
    ``acceptance`` holds each position's rate given the ones before (the last one
    repeats for later positions). Below 1.0 drafting does not pay at any k; (0, 1.0)
    when there is nothing to go on."""
    if not acceptance or 1 not in verify_s or len(verify_s) < 2:
        return 0, 1.0
    best = (0, 0.0)
    for k in range(1, max(verify_s)):
        chance, tokens = 1.0, 1.0
        for i in range(k):
            chance *= acceptance[min(i, len(acceptance) - 1)]
            tokens += chance
        speedup = tokens * verify_s[1] / (verify_s[k + 1] + k * draft_s)
        if speedup > best[1]:
            best = (k, speedup)
    return best


def break_even(t1: float, t_round: float, k: int) -> float | None:
    """The acceptance rate (each draft accepted with the same chance a) at which a
    round of k drafts costing ``t_round`` matches plain decoding at ``t1`` a token:
    E[tokens a round] = 1 + a + ... + a^k = t_round / t1. None: it never pays."""
    need = t_round / t1
    if need <= 1:
        return 0.0
    if need >= k + 1:
        return None
    lo, hi = 0.0, 1.0
    for _ in range(60):
        a = (lo + hi) / 2
        if sum(a**i for i in range(k + 1)) < need:
            lo = a
        else:
            hi = a
    return (lo + hi) / 2


def format_costs(costs: dict) -> str:
    lines = [
        "",
        "costs (fastest of several): t(n) = target forward over n tokens; d(k) = drafter "
        "round (propose k + commit);",
        "break-even = the acceptance a round of k drafts needs to match plain decoding",
    ]
    for entry in costs["kernels"]:
        v, d, b = entry["verify_s"], entry["drafter_s"], entry["break_even"]
        lines.append(f"  {entry['kernel']}")
        lines.append("    n or k      " + " ".join(f"{n:>6}" for n in v))
        lines.append("    t(n) ms     " + " ".join(f"{1000 * t:>6.1f}" for t in v.values()))
        lines.append("    t(n)/t(1)   " + " ".join(f"{t / v[1]:>6.2f}" for t in v.values()))
        if d:
            lines.append("    d(k) ms     " + " ".join(f"{1000 * t:>6.1f}" for t in d.values()))
            shown = ["never" if a is None else f"{a:.0%}" for a in b.values()]
            lines.append("    break-even  " + " ".join(f"{x:>6}" for x in shown))
    return "\n".join(lines)
