"""From generated token ids to what people see: text, channels, stops and records.

One ``TokenStream`` per generation, on the engine thread. It detokenizes
incrementally, routes text to the answer or the thinking channel, applies stop
strings, EOS and the loop guard, and emits a TokenEvent per token.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from engine.events import Alternative, TokenEvent
from engine.loop_guard import LoopGuard
from engine.settings import SamplingSettings


class TokenStream:
    def __init__(
        self,
        request_id: str,
        tokenizer,
        settings: SamplingSettings,
        starts_in_thinking: bool,
        emit: Callable[[TokenEvent], None],
    ):
        self.request_id = request_id
        self.tokenizer = tokenizer
        self.settings = settings
        self.emit = emit
        self.detok = tokenizer.detokenizer
        self.eos = set(tokenizer.eos_token_ids)
        self.think_start = getattr(tokenizer, "think_start", None)
        self.think_end = getattr(tokenizer, "think_end", None)
        self.channel = "thinking" if starts_in_thinking else "answer"
        self.answer = ""
        self.reasoning = ""
        self.token_ids: list[int] = []
        self._piece_cache: dict[int, str] = {}
        self.loop_guard = (
            LoopGuard(settings.max_loop_count, self._decode) if settings.max_loop_count else None
        )
        self._stop_max = max((len(s) for s in settings.stop), default=0)
        self.stopped_by_string = False

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def piece(self, token_id: int) -> str:
        """The text of one token on its own (for alternatives), cached."""
        text = self._piece_cache.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id])
            self._piece_cache[token_id] = text
        return text

    def push(
        self,
        token_id: int,
        logprob: float,
        top_ids: list[int],
        top_logprobs: list[float],
        entropy: float,
        drafted: bool = False,
        accepted: bool = False,
    ) -> str | None:
        """Add one generated token. Returns a finish reason when generation must end."""

        if token_id in self.eos:
            return "stop"
        index = len(self.token_ids)
        self.token_ids.append(token_id)
        self.detok.add_token(token_id)
        segment = self.detok.last_segment
        channel = self.channel
        finish = None
        if self.think_start and segment.strip() == self.think_start:
            self.channel = channel = "thinking"
        elif self.think_end and segment.strip() == self.think_end and channel == "thinking":
            self.channel = "answer"
        elif channel == "thinking":
            self.reasoning += segment
        else:
            segment, finish = self._add_answer(segment)
        self.emit(
            TokenEvent(
                request_id=self.request_id,
                index=index,
                id=token_id,
                text=segment,
                logprob=logprob,
                top=tuple(
                    Alternative(i, self.piece(i), math.exp(lp))
                    for i, lp in zip(top_ids, top_logprobs, strict=True)
                ),
                entropy=entropy,
                channel=channel,
                drafted=drafted,
                accepted=accepted,
            )
        )
        if finish:
            return finish
        if self.loop_guard is not None and self.loop_guard.push(token_id):
            return "loop"
        return None

    def _add_answer(self, segment: str) -> tuple[str, str | None]:
        if not self._stop_max:
            self.answer += segment
            return segment, None
        before = len(self.answer)
        self.answer += segment
        window_start = max(0, before - self._stop_max)
        hits = [pos for s in self.settings.stop if (pos := self.answer.find(s, window_start)) >= 0]
        if not hits:
            return segment, None
        cut = min(hits)
        self.answer = self.answer[:cut]
        self.stopped_by_string = True
        return segment[: max(0, cut - before)], "stop"

    def finish(self) -> None:
        """Flush text the detokenizer held back (partial UTF-8 etc.)."""
        if self.stopped_by_string:
            return
        self.detok.finalize()
        tail = self.detok.last_segment
        if tail:
            if self.channel == "thinking":
                self.reasoning += tail
            else:
                self.answer += tail
