"""OpenAI-compatible endpoints: /v1/models, /v1/chat/completions, /v1/completions.

Replies follow the OpenAI wire format, streamed as server-sent events when asked.
Thinking text comes back as ``reasoning_content`` (the convention of OpenAI-compatible
local servers); a ``lookahead`` object adds speculative-decoding figures.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from engine.context_window import model_context_length
from engine.events import Failed, Finished, Generate, GenerationStats, ModelLoaded, TokenEvent
from engine.server.bridge import (
    KEEPALIVE,
    QUEUED_AFTER_S,
    EngineRun,
    first_output,
    keepalive,
    replay,
)
from engine.server.context import ApiContext, collect_finished, failure
from engine.server.errors import ApiError, error_body
from engine.server.params import (
    bad,
    checked_tools,
    new_id,
    openai_messages,
    sampling,
    stop_strings,
    thinking_from_effort,
)
from engine.server.replies import (
    Delta,
    ReplyAssembler,
    logprob,
    openai_token_logprobs,
    prob_to_logprob,
    usage,
    whole_reply,
)
from engine.server.schemas import ChatCompletionRequest, CompletionRequest
from engine.server.tools import plan_tools, with_tools
from engine.settings import DecoderSettings

ERRORS: dict[int | str, dict] = {
    code: {"description": text}
    for code, text in (
        (400, "bad request: malformed JSON, a bad parameter or a refused request"),
        (401, "missing or wrong API key"),
        (404, "unknown model or decoder"),
        (413, "request body too large"),
        (429, "too many requests waiting"),
    )
}
router = APIRouter(prefix="/v1", tags=["OpenAI"], responses=ERRORS)


def _ctx(request: Request) -> ApiContext:
    return request.app.state.ctx


def _sse(data: dict | str) -> str:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n"


def _extras(stats: GenerationStats) -> dict:
    """Our figures, beside the OpenAI fields (clients ignore what they do not know)."""
    return {
        "decoder": stats.decoder,
        "drafted": stats.drafted,
        "accepted": stats.accepted,
        "acceptance_rate": stats.acceptance_rate,
        "mean_accepted_length": stats.mean_accepted_length,
        "cached_prompt_tokens": stats.cached_prompt_tokens,
        "ttft_s": stats.ttft_s,
        "prompt_tps": stats.prompt_tps,
        "generation_tps": stats.generation_tps,
    }


# ------------------------------------------------------------------ models


@router.get("/models", summary="List local models and their decoder variants")
async def list_models(request: Request) -> dict:
    listing = await run_in_threadpool(_ctx(request).catalog.listing)
    return {"object": "list", "data": [_model_card(entry) for entry in listing]}


@router.get("/models/{model_id:path}", summary="One model")
async def get_model(model_id: str, request: Request) -> dict:
    listing = await run_in_threadpool(_ctx(request).catalog.listing)
    for entry in listing:
        if entry.id == model_id:
            return _model_card(entry)
    raise ApiError(404, f"model {model_id!r} not found", "model", "model_not_found")


def _model_card(entry) -> dict:
    try:
        created = int(entry.model.path.stat().st_mtime)
    except OSError:
        created = 0
    card = {"id": entry.id, "object": "model", "created": created, "owned_by": "local"}
    window = model_context_length(entry.model.path)
    if window:
        card["context_length"] = card["max_model_len"] = window  # LM Studio's, vLLM's names
    if entry.decoder != "none":
        card["decoder"] = entry.decoder
        card["decoder_note"] = entry.note
    return card


# ------------------------------------------------------------------ chat


@router.post("/chat/completions", summary="Chat completion (streaming with stream=true)")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    ctx = _ctx(request)
    target = await ctx.target(body.model, body.decoder)
    tools = checked_tools(body.tools)
    fmt = await ctx.tool_format(target)
    plan = plan_tools(fmt, tools, body.tool_choice, target.model)
    messages, continue_final = with_tools(openai_messages(body.messages, plan.fmt), plan)
    if body.response_format is not None and body.response_format.type != "text":
        raise bad("response_format: only 'text' is supported", "response_format")
    top = (body.top_logprobs or 0) if body.logprobs else 0
    settings = _sampling(
        body, ctx.limits.max_tokens(body.max_completion_tokens or body.max_tokens), top
    )
    rid = new_id("chatcmpl")
    command = Generate(
        rid,
        target.model,
        messages=messages,
        continue_final=continue_final,
        thinking=thinking_from_effort(body.reasoning_effort, body.chat_template_kwargs),
        sampling=settings,
        decoder=DecoderSettings(target.decoder),
        tools=plan.template_tools,
        context_limit=ctx.limits.context(),
    )
    reply = ReplyAssembler(plan.fmt, plan.tools, settings.stop)
    reply.prime(plan.prefix)
    head = {"id": rid, "created": int(time.time()), "model": target.served_as}
    run = ctx.bridge.open(command)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events, queued = await _started(run, request)
        stream = _chat_stream(
            events, run, reply, head, bool(body.logprobs), top, include_usage, queued
        )
        return StreamingResponse(
            stream, media_type="text/event-stream", background=BackgroundTask(run.close)
        )
    events, final = await collect_finished(run, request.receive)
    total = whole_reply(reply, events, final)
    message: dict = {"role": "assistant", "content": total.content}
    if total.reasoning:
        message["reasoning_content"] = total.reasoning
    if total.calls:
        message["tool_calls"] = [_tool_call(c) for c in total.calls]
        message["content"] = total.content or None
    choice = {
        "index": 0,
        "message": message,
        "logprobs": {"content": openai_token_logprobs(total.tokens, top)}
        if body.logprobs
        else None,
        "finish_reason": reply.finish_reason(final),
    }
    return {
        **head,
        "object": "chat.completion",
        "choices": [choice],
        "usage": usage(final.stats),
        "lookahead": _extras(final.stats),
    }


def _tool_call(call, index: int | None = None) -> dict:
    args = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
    out = {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": args}}
    if index is not None:
        out["index"] = index
    return out


async def _started(run: EngineRun, request: Request) -> tuple[AsyncIterator, bool]:
    """The run's events, once the engine has taken it on (an early refusal is an HTTP
    error) or at once when it is queued; with KEEPALIVE while nothing is said."""
    try:
        first = await first_output(run, request.receive, QUEUED_AFTER_S)
    except BaseException:
        run.close()
        raise
    if first and isinstance(first[-1], Failed):
        run.close()
        raise failure(first[-1].message)
    queued = not first or not isinstance(first[-1], (ModelLoaded, TokenEvent, Finished))
    return keepalive(replay(first, run)), queued


KEEPALIVE_COMMENT = ": keep-alive\n\n"  # an SSE comment: clients skip it


async def _chat_stream(
    events: AsyncIterator,
    run: EngineRun,
    reply: ReplyAssembler,
    head: dict,
    want_lp: bool,
    top: int,
    include_usage: bool,
    queued: bool = False,
) -> AsyncIterator[str]:
    n_calls = 0

    def chunk(delta: dict, finish: str | None = None, lp: list | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        if lp is not None:
            choice["logprobs"] = {"content": lp}
        return _sse({**head, "object": "chat.completion.chunk", "choices": [choice]})

    def pieces(d: Delta) -> dict:
        nonlocal n_calls
        delta: dict = {}
        if d.content:
            delta["content"] = d.content
        if d.reasoning:
            delta["reasoning_content"] = d.reasoning
        if d.calls:
            delta["tool_calls"] = [_tool_call(c, n_calls + i) for i, c in enumerate(d.calls)]
            n_calls += len(d.calls)
        return delta

    try:
        if queued:
            yield KEEPALIVE_COMMENT  # the headers and a first byte while it waits its turn
        yield chunk({"role": "assistant", "content": ""})
        async for event in events:
            if event is KEEPALIVE:
                yield KEEPALIVE_COMMENT
            elif isinstance(event, TokenEvent):
                d = reply.token(event)
                delta = pieces(d)
                lp = openai_token_logprobs(d.tokens, top) if want_lp and d.tokens else None
                if delta or lp:
                    yield chunk(delta, lp=lp)
            elif isinstance(event, Finished):
                delta = pieces(reply.finish(event))
                if delta:
                    yield chunk(delta)
                yield chunk({}, reply.finish_reason(event))
                if include_usage:
                    yield _sse(
                        {
                            **head,
                            "object": "chat.completion.chunk",
                            "choices": [],
                            "usage": usage(event.stats),
                            "lookahead": _extras(event.stats),
                        }
                    )
            elif isinstance(event, Failed):
                err = failure(event.message)
                yield _sse(error_body("/v1", err.status, err.message, code=err.code))
        yield _sse("[DONE]")
    finally:
        run.close()


# ------------------------------------------------------------------ completions


@router.post("/completions", summary="Text completion of a raw prompt (no chat template)")
async def completions(body: CompletionRequest, request: Request):
    ctx = _ctx(request)
    target = await ctx.target(body.model, body.decoder)
    if body.suffix:
        raise bad("suffix: fill-in-the-middle is not supported", "suffix")
    prompt = body.prompt
    prompt_text: str | None = None
    prompt_tokens: tuple[int, ...] | None = None
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        if len(prompt) != 1:
            raise bad("prompt: send one prompt per request", "prompt")
        prompt_text = prompt[0]
    elif isinstance(prompt, str):
        prompt_text = prompt
    elif isinstance(prompt, list) and prompt:
        prompt_tokens = tuple(prompt)
    else:
        raise bad("prompt: must not be empty", "prompt")
    if prompt_text is not None and not prompt_text:
        raise bad("prompt: must not be empty", "prompt")
    if body.echo and prompt_text is None:
        raise bad("echo: needs a text prompt", "echo")
    top = body.logprobs or 0
    settings = _sampling(body, ctx.limits.max_tokens(body.max_tokens), top)
    rid = new_id("cmpl")
    command = Generate(
        rid,
        target.model,
        prompt=prompt_text,
        prompt_tokens=prompt_tokens,
        sampling=settings,
        decoder=DecoderSettings(target.decoder),
        context_limit=ctx.limits.context(),
    )
    head = {"id": rid, "created": int(time.time()), "model": target.served_as}
    want_lp = body.logprobs is not None
    echo = prompt_text if body.echo else ""
    reply = ReplyAssembler(None, None, settings.stop)
    run = ctx.bridge.open(command)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events, queued = await _started(run, request)
        stream = _text_stream(events, run, reply, head, want_lp, top, echo, include_usage, queued)
        return StreamingResponse(
            stream, media_type="text/event-stream", background=BackgroundTask(run.close)
        )
    events, final = await collect_finished(run, request.receive)
    total = whole_reply(reply, events, final)
    choice = {
        "index": 0,
        "text": echo + total.content,
        "logprobs": _legacy_logprobs(total.tokens, top, len(echo)) if want_lp else None,
        "finish_reason": reply.finish_reason(final),
    }
    return JSONResponse(
        {
            **head,
            "object": "text_completion",
            "choices": [choice],
            "usage": usage(final.stats),
            "lookahead": _extras(final.stats),
        }
    )


def _legacy_logprobs(tokens: list[TokenEvent], top: int, offset: int = 0) -> dict:
    out: dict = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for t in tokens:
        out["tokens"].append(t.text)
        out["token_logprobs"].append(logprob(t.logprob))
        alts: dict[str, float] = {}
        for a in t.top[:top]:
            alts.setdefault(a.text, prob_to_logprob(a.prob))
        out["top_logprobs"].append(alts)
        out["text_offset"].append(offset)
        offset += len(t.text)
    return out


async def _text_stream(
    events: AsyncIterator,
    run: EngineRun,
    reply: ReplyAssembler,
    head: dict,
    want_lp: bool,
    top: int,
    echo: str,
    include_usage: bool,
    queued: bool = False,
) -> AsyncIterator[str]:
    offset = len(echo)

    def chunk(text: str, finish: str | None = None, lp: dict | None = None) -> str:
        choice = {"index": 0, "text": text, "logprobs": lp, "finish_reason": finish}
        return _sse({**head, "object": "text_completion", "choices": [choice]})

    try:
        if queued:
            yield KEEPALIVE_COMMENT
        if echo:
            yield chunk(echo)
        async for event in events:
            if event is KEEPALIVE:
                yield KEEPALIVE_COMMENT
            elif isinstance(event, TokenEvent):
                d = reply.token(event)
                lp = _legacy_logprobs(d.tokens, top, offset) if want_lp else None
                offset += len(d.content)
                if d.content or lp:
                    yield chunk(d.content, lp=lp)
            elif isinstance(event, Finished):
                tail = reply.finish(event).content
                yield chunk(tail, reply.finish_reason(event))
                if include_usage:
                    yield _sse({**head, "object": "text_completion", "choices": [],
                                "usage": usage(event.stats)})  # fmt: skip
            elif isinstance(event, Failed):
                err = failure(event.message)
                yield _sse(error_body("/v1", err.status, err.message, code=err.code))
        yield _sse("[DONE]")
    finally:
        run.close()


def _sampling(body, max_tokens: int, top: int):
    """Sampling settings from the fields chat and text completions share."""
    return sampling(
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=body.top_k or 0,
        min_p=body.min_p or 0.0,
        repetition_penalty=body.repetition_penalty or 1.0,
        seed=body.seed,
        max_tokens=max_tokens,
        stop=stop_strings(body.stop),
        top_alternatives=top,
    )
