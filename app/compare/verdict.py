"""What a comparison of panes concludes: how much faster, and is it the same answer.

Plain Python (no Qt): each pane's latest reply becomes a ``Run``; ``compare`` groups
the runs that answered the same prompt, picks the decoder-off run as the baseline and,
for every other run, works out the speed-up, the memory the decoder added and whether
the answers are the same token for token — or where they first differ and the cause
Lookahead can name. ``markdown_table`` and ``export_json`` write the result down.
Everything here is recomputed from scratch each time (cheap: a few thousand ids), so
the live bar, a finished comparison and a reopened conversation all agree.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.chat.pane_model import Message

# Settings that change what a model says (max_tokens only where it stops).
COMPARED_SETTINGS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "repetition_context",
    "stop",
)
_SAMPLING_KEYS = (*COMPARED_SETTINGS, "seed", "max_tokens", "max_loop_count")


@dataclass(frozen=True)
class Run:
    """One pane's reply to the compared prompt, as far as it has got."""

    pane: str  # the pane's title
    model: str
    history: tuple[tuple[str, str], ...]  # (role, content) before the reply, prompt last
    settings: dict[str, Any]  # sampling settings and "thinking"
    token_ids: tuple[int, ...]
    answer: str
    reasoning: str
    stats: dict[str, Any]
    finish_reason: str | None  # None while it streams
    drafting_asked: bool = False  # the pane asked for a decoder (before stats say which)
    message: Message | None = field(default=None, compare=False, repr=False)
    # Generation tok/s of each reply since the prompt, when tool calls split the answer
    # into stretches (the call, then the summary after the result); one entry otherwise.
    part_tps: tuple[float, ...] = ()

    @classmethod
    def of(cls, pane: str, messages: Sequence[Message]) -> Run | None:
        """The run of a pane whose transcript ends with a reply to a user message."""
        if len(messages) < 2 or messages[-1].role != "assistant":
            return None
        reply = messages[-1]
        # The prompt is the last user turn: tool calls and results may come after it.
        asked = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
        if asked < 0:
            return None
        before = messages[: asked + 1]
        raw = reply.settings or {}
        sampling = raw.get("sampling") if isinstance(raw.get("sampling"), dict) else raw
        settings = {k: sampling[k] for k in _SAMPLING_KEYS if k in sampling}
        settings["thinking"] = raw.get("thinking", "off")
        if "system_prompt" in raw:
            settings["system_prompt"] = raw["system_prompt"]
        decoder = raw.get("decoder") if isinstance(raw.get("decoder"), dict) else {}
        return cls(
            pane=pane,
            model=reply.model,
            history=tuple((m.role, m.content) for m in before if m.role in ("user", "assistant")),
            settings=settings,
            token_ids=tuple(t.id for t in reply.tokens),
            answer=reply.content,
            reasoning=reply.reasoning,
            stats=dict(reply.stats or {}),
            finish_reason=reply.finish_reason,
            drafting_asked=decoder.get("decoder", "none") not in ("none", ""),
            message=reply,
            part_tps=tuple(
                float(m.stats.get("generation_tps") or 0.0)
                for m in messages[asked + 1 :]
                if m.role == "assistant"
            ),
        )

    @property
    def prompt(self) -> str:
        return self.history[-1][1] if self.history else ""

    @property
    def streaming(self) -> bool:
        return self.finish_reason is None

    @property
    def waiting(self) -> bool:
        """Queued: it has not produced a token yet."""
        return self.streaming and not self.token_ids

    @property
    def decoder(self) -> str | None:
        """The drafter that ran (from the engine's figures), None without one."""
        return self.stats.get("decoder") or None

    @property
    def drafting(self) -> bool:
        return bool(self.decoder) if self.stats else self.drafting_asked

    @property
    def label(self) -> str:
        """'Pane 2 (MTP head)': which pane, with or without which decoder."""
        if self.drafting:
            return f"{self.pane} ({short_decoder(self.decoder or 'decoder on')})"
        return f"{self.pane} (decoder off)"

    def figure(self, name: str) -> float:
        value = self.stats.get(name) or 0.0
        return float(value) if isinstance(value, (int, float)) else 0.0

    @property
    def temperature(self) -> float:
        t = self.settings.get("temperature", 0.0)
        return float(t) if isinstance(t, (int, float)) else 0.0


def short_decoder(name: str) -> str:
    """A decoder's name as the bar shows it (the last part of a path or repo id)."""
    return "prompt lookup" if name == "lookup" else name.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Sameness:
    """Whether two answers are the same, token for token, and if not why not."""

    identical: bool
    same_tokens: int  # the common prefix, in tokens
    first_difference: int | None  # index of the first token that differs (or is missing)
    cause: (
        str  # "" | streaming | stopped | model | dtype | prompt | settings | sampling | numerical
    )
    summary: str  # one line: "Identical, 412 tokens" / "Differ from token 38: sampling"
    explanation: str  # why, in a sentence or two (the tooltip)


@dataclass(frozen=True)
class Row:
    """One run against the baseline."""

    run: Run
    baseline: Run
    speedup: float | None  # generation tok/s against the baseline's
    time_ratio: float | None  # baseline's time to the last token / this run's
    memory_added_gb: float  # what the decoder added (its weights and state)
    same: Sameness
    part_speedups: tuple[float, ...] = ()  # per stretch, when tool calls split the replies

    @property
    def ttft_s(self) -> float:
        return self.run.figure("ttft_s")


@dataclass(frozen=True)
class Comparison:
    """Runs that answered the same prompt: the baseline, then a row for each other."""

    prompt: str
    baseline: Run
    rows: tuple[Row, ...]

    @property
    def runs(self) -> tuple[Run, ...]:
        return (self.baseline, *(r.run for r in self.rows))

    @property
    def finished(self) -> bool:
        return not any(r.streaming for r in self.runs)

    @property
    def waiting(self) -> tuple[Run, ...]:
        """Runs queued behind another (one engine thread runs one at a time)."""
        busy = any(r.streaming and not r.waiting for r in self.runs)
        return tuple(r for r in self.runs if r.waiting) if busy else ()


def compare(runs: Sequence[Run | None]) -> Comparison | None:
    """The comparison of the largest group of runs answering the same prompt (two or
    more), or None. Baseline: the first run without a decoder, else the first run."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run is not None:
            groups.setdefault(run.prompt, []).append(run)
    group = max(groups.values(), key=len, default=[])
    if len(group) < 2:
        return None
    baseline = next((r for r in group if not r.drafting), group[0])
    rows = tuple(row(r, baseline) for r in group if r is not baseline)
    return Comparison(baseline.prompt, baseline, rows)


def row(run: Run, baseline: Run) -> Row:
    tps, base_tps = run.figure("generation_tps"), baseline.figure("generation_tps")
    wall, base_wall = run.figure("elapsed_s"), baseline.figure("elapsed_s")
    same_length = len(run.token_ids) == len(baseline.token_ids)
    done = not run.streaming and not baseline.streaming
    return Row(
        run=run,
        baseline=baseline,
        speedup=tps / base_tps if tps > 0 and base_tps > 0 else None,
        time_ratio=base_wall / wall
        if done and same_length and wall > 0 and base_wall > 0
        else None,
        memory_added_gb=run.figure("decoder_memory_gb"),
        same=sameness(baseline, run),
        part_speedups=tuple(
            a / b for a, b in zip(run.part_tps, baseline.part_tps, strict=False) if a > 0 and b > 0
        )
        if len(run.part_tps) > 1 and len(run.part_tps) == len(baseline.part_tps)
        else (),
    )


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def sameness(a: Run, b: Run) -> Sameness:
    """Compare two runs' answers token for token and name the cause of a difference."""
    n = _common_prefix(a.token_ids, b.token_ids)
    shorter = min(len(a.token_ids), len(b.token_ids))
    if n == shorter:
        if a.streaming or b.streaming:
            return Sameness(
                False,
                n,
                None,
                "streaming",
                f"Same so far, {n:,} tokens" if n else "Waiting for both answers",
                "The answers are compared token for token as they stream.",
            )
        if len(a.token_ids) == len(b.token_ids):
            return Sameness(
                True,
                n,
                None,
                "",
                f"Identical, {n:,} tokens",
                f"Both answers are the same {n:,} tokens, id for id.",
            )
        short = a if len(a.token_ids) == shorter else b
        why = {
            "cancelled": "was stopped",
            "length": "reached its token limit",
            "error": "failed",
            "interrupted": "was interrupted",
        }.get(short.finish_reason or "", "ended")
        said = f"Same for {n:,} tokens, then {short.pane} {why}" if n else f"{short.pane} {why}"
        return Sameness(
            False,
            n,
            n,
            "stopped",
            said,
            f"Every token both produced is the same; {short.pane} {why} after {n:,}.",
        )
    at = f"token {n + 1:,}"
    cause, summary, explanation = _cause(a, b, n)
    return Sameness(False, n, n, cause, f"Differ from {at}: {summary}", explanation)


def _cause(a: Run, b: Run, n: int) -> tuple[str, str, str]:
    if a.model != b.model:
        return ("model", "different models", f"{a.pane} ran {a.model}, {b.pane} {b.model}.")
    da, db = a.stats.get("dtype"), b.stats.get("dtype")
    if da and db and da != db:
        return (
            "dtype",
            f"different weights ({da} vs {db})",
            f"The same model in {da} and {db} computes slightly different numbers.",
        )
    if a.history != b.history:
        return (
            "prompt",
            "different conversations",
            "The conversations before this prompt are not the same in both panes.",
        )
    changed = [
        k
        for k in (*COMPARED_SETTINGS, "thinking", "system_prompt")
        if a.settings.get(k) != b.settings.get(k) and (k in a.settings or k in b.settings)
    ]
    if changed:
        said = ", ".join(
            f"{k.replace('_', ' ')} {_show(a.settings.get(k))} vs {_show(b.settings.get(k))}"
            for k in changed
        )
        return ("settings", f"different settings ({said})", f"The panes asked differently: {said}.")
    if a.temperature > 0:
        return (
            "sampling",
            f"sampling (temperature {a.temperature:g})",
            "Both sample at temperature "
            f"{a.temperature:g}: different draws from the same distribution. "
            "Speculative decoding keeps the distribution, not the draws; "
            "at temperature 0 the answers are compared token for token.",
        )
    return ("numerical", "a numerical difference", _numerical(a, b, n))


def _numerical(a: Run, b: Run, n: int) -> str:
    text = (
        "Same model, settings and prompt at temperature 0, yet the answers part: a pass "
        "over several drafted tokens adds its numbers up in a different order than "
        "single-token steps, and rounding tipped a near tie."
    )
    record = a.message.tokens[n] if a.message is not None and n < len(a.message.tokens) else None
    if record is not None and n < len(b.token_ids):
        other = next((alt for alt in record.top if alt.id == b.token_ids[n]), None)
        if other is not None:
            text += (
                f" At token {n + 1:,} {a.pane} saw {record.text!r} at p = "
                f"{record.prob:.3f} and {other.text!r} at p = {other.prob:.3f}."
            )
    return text


def _show(value: Any) -> str:
    if value is None or value == "":
        return "none"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]" if value else "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------ writing it down


def _x(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def memory_text(gb: float) -> str:
    if gb <= 0:
        return "-"
    return f"+{gb * 1000:.1f} MB" if gb < 1 else f"+{gb:.2f} GB"


def markdown_table(comparison: Comparison) -> str:
    """The comparison as a Markdown table (one line per pane, the baseline first)."""
    head = (
        "| Pane | Model | Decoder | tok/s | Speed-up | Time to last token | TTFT "
        "| Decoder memory | Acceptance | Tokens per pass | Tokens | Same answer |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    rows = [(comparison.baseline, None), *((r.run, r) for r in comparison.rows)]
    for run, r in rows:
        drafting = run.drafting
        cells = [
            run.pane,
            run.model,
            short_decoder(run.decoder) if run.decoder else "off",
            f"{run.figure('generation_tps'):.1f}",
            _x(r.speedup) if r else "1.00x (baseline)",
            f"{run.figure('elapsed_s'):.2f} s" + (f" ({_x(r.time_ratio)})" if r else ""),
            f"{run.figure('ttft_s'):.2f} s",
            memory_text(run.figure("decoder_memory_gb")) if drafting else "-",
            f"{run.figure('acceptance_rate'):.0%}" if drafting else "-",
            f"{run.figure('mean_accepted_length'):.2f}" if drafting else "-",
            f"{len(run.token_ids):,}",
            r.same.summary if r else "-",
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def export_json(comparison: Comparison) -> dict[str, Any]:
    """Both answers with their figures and the verdict, for a JSON file."""

    def run_dict(run: Run) -> dict[str, Any]:
        return {
            "pane": run.pane,
            "model": run.model,
            "decoder": run.decoder,
            "settings": run.settings,
            "finish_reason": run.finish_reason,
            "answer": run.answer,
            "reasoning": run.reasoning,
            "token_ids": list(run.token_ids),
            "stats": run.stats,
        }

    return {
        "format": "lookahead-comparison/1",
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "prompt": comparison.prompt,
        "baseline": comparison.baseline.pane,
        "runs": [run_dict(r) for r in comparison.runs],
        "comparisons": [
            {
                "pane": r.run.pane,
                "against": r.baseline.pane,
                "speedup": r.speedup,
                "time_ratio": r.time_ratio,
                "ttft_s": r.ttft_s,
                "baseline_ttft_s": r.baseline.figure("ttft_s"),
                "decoder_memory_gb": r.memory_added_gb,
                "acceptance_rate": r.run.figure("acceptance_rate"),
                "mean_accepted_length": r.run.figure("mean_accepted_length"),
                "part_speedups": list(r.part_speedups),
                "identical": r.same.identical,
                "same_tokens": r.same.same_tokens,
                "first_difference": r.same.first_difference,
                "cause": r.same.cause,
                "summary": r.same.summary,
                "explanation": r.same.explanation,
            }
            for r in comparison.rows
        ],
    }


__all__ = [
    "Comparison",
    "Row",
    "Run",
    "Sameness",
    "compare",
    "export_json",
    "markdown_table",
    "memory_text",
    "sameness",
    "short_decoder",
]
