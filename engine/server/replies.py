"""Turning engine events into reply pieces both APIs share: answer and thinking text,
tool calls split out of the answer, per-token logprobs, usage figures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from engine.events import Finished, GenerationStats, TokenEvent
from engine.server.params import THINK_MARKERS
from engine.server.tools import (
    ToolCall,
    ToolCallSplitter,
    ToolFormat,
    parse_calls,
    partial_suffix,
)

LOGPROB_FLOOR = -9999.0  # JSON has no -Infinity


@dataclass
class Delta:
    content: str = ""
    reasoning: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    tokens: list[TokenEvent] = field(default_factory=list)  # answer tokens, for logprobs

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning or self.calls or self.tokens)

    def add(self, other: Delta) -> None:
        self.content += other.content
        self.reasoning += other.reasoning
        self.calls += other.calls
        self.tokens += other.tokens


def whole_reply(reply: ReplyAssembler, events: list, final: Finished) -> Delta:
    """Everything a non-streaming reply holds, from all of a generation's events."""
    total = Delta()
    for e in events:
        if isinstance(e, TokenEvent):
            total.add(reply.token(e))
    total.add(reply.finish(final))
    return total


class ReplyAssembler:
    """Feed it a generation's events in order; it hands back what to send."""

    def __init__(
        self, fmt: ToolFormat | None, tools: list[dict] | None, stop: tuple[str, ...] = ()
    ):
        self._fmt = fmt
        self._tools = tools
        parses = bool(tools) and fmt is not None and fmt.parses_calls
        self._splitter = ToolCallSplitter(fmt.start, fmt.end) if parses else None
        self._stop = stop
        self._answer = ""  # answer text released so far (before tool calls are split out)
        self._held = ""  # text that may be the start of a stop string
        self._reasoning = ""
        self.made_calls = False

    def prime(self, text: str) -> None:
        """Text the reply was made to start with (a call forced by tool_choice): read
        as the start of a tool call, never shown."""
        if self._splitter is not None and text:
            self._splitter.feed(text)

    def _split(self, text: str, final: bool = False) -> tuple[str, list[ToolCall]]:
        if self._splitter is None:
            return text, []
        visible, texts = self._splitter.feed(text)
        if final:
            tail, more = self._splitter.finish()
            visible, texts = visible + tail, texts + more
        calls = parse_calls(self._fmt, texts, self._tools) if texts else []
        self.made_calls = self.made_calls or bool(calls)
        return visible, calls

    def token(self, event: TokenEvent) -> Delta:
        if event.channel == "thinking":
            if event.text.strip() in THINK_MARKERS:
                return Delta()
            self._reasoning += event.text
            return Delta(reasoning=event.text)
        text = self._release(event.text)
        self._answer += text
        content, calls = self._split(text)
        return Delta(content, "", calls, [event])

    def _release(self, text: str) -> str:
        """Hold back what could begin a stop string: the engine cuts the final text at
        a stop that spans tokens, after the first of them was already emitted."""
        if not self._stop:
            return text
        pending = self._held + text
        keep = max(partial_suffix(pending, s) for s in self._stop)
        self._held = pending[len(pending) - keep :] if keep else ""
        return pending[: len(pending) - keep]

    def finish(self, final: Finished) -> Delta:
        """The end of the text (what the detokenizer or the stop check held back, up to
        where the engine cut it), and unfinished tool calls."""
        tail = final.text[len(self._answer) :] if final.text.startswith(self._answer) else ""
        self._held = ""
        rtail = ""
        if final.reasoning.startswith(self._reasoning):
            rtail = final.reasoning[len(self._reasoning) :]
        content, calls = self._split(tail, final=True)
        return Delta(content, rtail, calls)

    def finish_reason(self, final: Finished) -> str:
        if self.made_calls and final.reason == "stop":
            return "tool_calls"
        return "length" if final.reason == "length" else "stop"


def logprob(value: float) -> float:
    if value is None or math.isnan(value) or value < LOGPROB_FLOOR:
        return LOGPROB_FLOOR
    return float(value)


def prob_to_logprob(p: float) -> float:
    return logprob(math.log(p)) if p > 0 else LOGPROB_FLOOR


def openai_token_logprobs(tokens: list[TokenEvent], top: int) -> list[dict]:
    out = []
    for t in tokens:
        out.append(
            {
                "token": t.text,
                "logprob": logprob(t.logprob),
                "bytes": list(t.text.encode("utf-8")),
                "top_logprobs": [
                    {
                        "token": a.text,
                        "logprob": prob_to_logprob(a.prob),
                        "bytes": list(a.text.encode("utf-8")),
                    }
                    for a in t.top[:top]
                ],
            }
        )
    return out


def ollama_token_logprobs(tokens: list[TokenEvent], top: int) -> list[dict]:
    return [
        {
            "token": t.text,
            "logprob": logprob(t.logprob),
            "top_logprobs": [
                {"token": a.text, "logprob": prob_to_logprob(a.prob)} for a in t.top[:top]
            ],
        }
        for t in tokens
    ]


def usage(stats: GenerationStats) -> dict:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.generation_tokens,
        "total_tokens": stats.prompt_tokens + stats.generation_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.cached_prompt_tokens},
    }


def ollama_timings(stats: GenerationStats) -> dict:
    """Ollama's counters (nanoseconds); prompt_eval counts tokens computed, not reused."""
    computed = max(0, stats.prompt_tokens - stats.cached_prompt_tokens)
    prompt_s = computed / stats.prompt_tps if stats.prompt_tps > 0 else 0.0
    gen_s = stats.generation_tokens / stats.generation_tps if stats.generation_tps > 0 else 0.0
    return {
        "total_duration": int(stats.elapsed_s * 1e9),
        "load_duration": 0,
        "prompt_eval_count": computed,
        "prompt_eval_duration": int(prompt_s * 1e9),
        "eval_count": stats.generation_tokens,
        "eval_duration": int(gen_s * 1e9),
    }
