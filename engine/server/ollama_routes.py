"""Ollama-compatible endpoints: /api/tags, /api/show, /api/chat, /api/generate,
/api/version. Streams are newline-delimited JSON (Ollama streams by default);
thinking text comes back in ``thinking``, errors as ``{"error": "..."}``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from engine.context_window import model_context_length
from engine.events import (
    ChatMessage,
    Failed,
    Finished,
    Generate,
    LoadModel,
    TokenEvent,
    UnloadModel,
)
from engine.server.bridge import QUEUED_AFTER_S, EngineRun, collect, first_output, replay
from engine.server.catalog import Target
from engine.server.context import ApiContext, collect_finished, failure
from engine.server.errors import ApiError
from engine.server.params import (
    bad,
    checked_tools,
    new_id,
    ollama_messages,
    ollama_sampling,
    thinking_from_ollama,
)
from engine.server.replies import (
    Delta,
    ReplyAssembler,
    ollama_timings,
    ollama_token_logprobs,
    whole_reply,
)
from engine.server.schemas import OllamaChatRequest, OllamaGenerateRequest, OllamaShowRequest
from engine.server.tools import ToolFormat, plan_tools, with_tools
from engine.settings import DecoderSettings

OLLAMA_VERSION = "0.12.0"  # what we answer /api/version with: clients gate features on it
ERRORS: dict[int | str, dict] = {
    400: {"description": "malformed JSON, a bad parameter or a refused request"},
    401: {"description": "missing or wrong API key"},
    404: {"description": "unknown model"},
    413: {"description": "request body too large"},
    429: {"description": "too many requests waiting"},
}
router = APIRouter(prefix="/api", tags=["Ollama"], responses=ERRORS)


def _ctx(request: Request) -> ApiContext:
    return request.app.state.ctx


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _line(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------ listing


@router.get("/version", summary="Server version (Ollama-compatible)")
async def version() -> dict:
    return {"version": OLLAMA_VERSION}


@router.get("/tags", summary="Local models and their decoder variants")
async def tags(request: Request) -> dict:
    listing = await run_in_threadpool(_ctx(request).catalog.listing)
    return {"models": [_tag(entry.id, entry.model) for entry in listing]}


def _details(m) -> dict:
    return {
        "parent_model": "",
        "format": "safetensors",
        "family": m.model_type,
        "families": [m.model_type],
        "parameter_size": "",
        "quantization_level": m.quantization or "",
    }


def _tag(name: str, m) -> dict:
    try:
        modified = datetime.fromtimestamp(m.path.stat().st_mtime, UTC).isoformat()
    except OSError:
        modified = _now()
    return {
        "name": name,
        "model": name,
        "modified_at": modified,
        "size": m.size_bytes,
        "digest": hashlib.sha256(f"{name}|{m.path}|{m.revision}".encode()).hexdigest(),
        "details": _details(m),
    }


@router.post("/show", summary="Details of one model")
async def show(body: OllamaShowRequest, request: Request) -> dict:
    ctx = _ctx(request)
    name = body.model or body.name
    if not name:
        raise bad("model: required", "model")
    target = await ctx.target(name)
    if target.local is None:
        raise ApiError(404, f"model {name!r} not found")
    fmt = await ctx.tool_format(target)
    m = target.local
    capabilities = ["completion"]
    if fmt.accepts_tools or fmt.template:  # the generic format serves the rest
        capabilities.append("tools")
    if "enable_thinking" in fmt.template or "<think>" in fmt.template:
        capabilities.append("thinking")
    return {
        "modelfile": f"FROM {m.path}\n",
        "parameters": "",
        "template": fmt.template,
        "details": _details(m),
        "model_info": _model_info(m),
        "capabilities": capabilities,
        "modified_at": _tag(m.id, m)["modified_at"],
    }


def _model_info(m) -> dict:
    info = {"general.architecture": m.model_type, "general.basename": m.id}
    window = model_context_length(m.path)
    if window:  # where Ollama's clients look for the window
        info[f"{m.model_type}.context_length"] = window
    return info


# ------------------------------------------------------------------ generation


def _check_common(body) -> None:
    if body.format not in (None, "", {}):
        raise bad("format: structured output is not supported", "format")


def _num_ctx(ctx: ApiContext, options: dict | None) -> int | None:
    """Ollama's ``num_ctx`` caps the context window (it never stretches the model's)."""
    value = (options or {}).get("num_ctx")
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value <= 0):
        return ctx.limits.context()
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad("options.num_ctx: must be a whole number", "num_ctx")
    return ctx.limits.context(value)


def _unloads(keep_alive) -> bool:
    return keep_alive is not None and str(keep_alive).strip() in ("0", "0s", "0m", "0.0")


async def _load_only(ctx: ApiContext, target: Target, request: Request, keep_alive) -> dict:
    """An empty request loads the model, or with keep_alive 0 unloads it, as in Ollama."""
    unload = _unloads(keep_alive)
    if unload:
        command = UnloadModel(new_id("unload"), target.model)
    else:
        command = LoadModel(new_id("load"), target.model)
    events = await collect(ctx.bridge.open(command), request.receive)
    if events and isinstance(events[-1], Failed):
        raise failure(events[-1].message)
    reason = "unload" if unload else "load"
    return {"model": target.served_as, "created_at": _now(), "done": True, "done_reason": reason}


@router.post("/chat", summary="Chat (NDJSON stream unless stream=false)")
async def chat(body: OllamaChatRequest, request: Request):
    ctx = _ctx(request)
    _check_common(body)
    target = await ctx.target(body.model)
    if not body.messages:
        result = await _load_only(ctx, target, request, body.keep_alive)
        result["message"] = {"role": "assistant", "content": ""}
        return result
    tools = checked_tools(body.tools)
    fmt = await ctx.tool_format(target)
    plan = plan_tools(fmt, tools, None, target.model)
    messages, continue_final = with_tools(ollama_messages(body.messages, plan.fmt), plan)
    top = (body.top_logprobs or 0) if body.logprobs else 0
    command = Generate(
        new_id("ollama"),
        target.model,
        messages=messages,
        continue_final=continue_final,
        thinking=thinking_from_ollama(body.think),
        sampling=ollama_sampling(body.options, ctx.limits.max_tokens, top),
        decoder=DecoderSettings(target.decoder),
        tools=plan.template_tools,
        context_limit=_num_ctx(ctx, body.options),
    )
    return await _respond(ctx, request, command, target, plan.fmt, plan.tools, body, chat=True)


@router.post("/generate", summary="Complete a prompt (NDJSON stream unless stream=false)")
async def generate(body: OllamaGenerateRequest, request: Request):
    ctx = _ctx(request)
    _check_common(body)
    if body.suffix:
        raise bad("suffix: fill-in-the-middle is not supported", "suffix")
    if body.images:
        raise bad("images: this server runs text models only", "images")
    if body.template:
        raise bad("template: custom templates are not supported", "template")
    target = await ctx.target(body.model)
    if not body.prompt:
        return await _load_only(ctx, target, request, body.keep_alive)
    top = (body.top_logprobs or 0) if body.logprobs else 0
    settings = ollama_sampling(body.options, ctx.limits.max_tokens, top)
    common = dict(
        sampling=settings,
        decoder=DecoderSettings(target.decoder),
        context_limit=_num_ctx(ctx, body.options),
    )
    if body.raw:
        command = Generate(new_id("ollama"), target.model, prompt=body.prompt, **common)
    else:
        messages = ([ChatMessage("system", body.system)] if body.system else []) + [
            ChatMessage("user", body.prompt)
        ]
        command = Generate(
            new_id("ollama"),
            target.model,
            messages=tuple(messages),
            thinking=thinking_from_ollama(body.think),
            **common,
        )
    return await _respond(ctx, request, command, target, None, None, body, chat=False)


async def _respond(
    ctx: ApiContext,
    request: Request,
    command: Generate,
    target: Target,
    fmt: ToolFormat | None,
    tools: list | None,
    body,
    chat: bool,
):
    reply = ReplyAssembler(fmt, tools, command.sampling.stop)
    top = (body.top_logprobs or 0) if body.logprobs else 0
    shape = _Shape(target.served_as, chat, bool(body.logprobs), top)
    run = ctx.bridge.open(command)
    if body.stream:
        try:
            # NDJSON has no comments: a queued client gets its headers now, then waits.
            first = await first_output(run, request.receive, QUEUED_AFTER_S)
        except BaseException:
            run.close()
            raise
        if first and isinstance(first[-1], Failed):
            run.close()
            raise failure(first[-1].message)
        stream = _stream(replay(first, run), run, reply, shape)
        return StreamingResponse(
            stream, media_type="application/x-ndjson", background=BackgroundTask(run.close)
        )
    events, final = await collect_finished(run, request.receive)
    total = whole_reply(reply, events, final)
    return shape.final(total, reply, final)


class _Shape:
    """Ollama's reply objects, for chat or generate."""

    def __init__(self, model: str, chat: bool, want_lp: bool, top: int):
        self.model, self.chat, self.want_lp, self.top = model, chat, want_lp, top

    def piece(self, d: Delta, done: bool = False) -> dict:
        out: dict = {"model": self.model, "created_at": _now()}
        if self.chat:
            msg: dict = {"role": "assistant", "content": d.content}
            if d.reasoning:
                msg["thinking"] = d.reasoning
            if d.calls:
                msg["tool_calls"] = [
                    {"function": {"name": c.name, "arguments": _args(c.arguments)}} for c in d.calls
                ]
            out["message"] = msg
        else:
            out["response"] = d.content
            if d.reasoning:
                out["thinking"] = d.reasoning
        if self.want_lp and d.tokens:
            out["logprobs"] = ollama_token_logprobs(d.tokens, self.top)
        out["done"] = done
        return out

    def final(self, d: Delta, reply: ReplyAssembler, final: Finished) -> dict:
        out = self.piece(d, done=True)
        reason = reply.finish_reason(final)
        out["done_reason"] = "stop" if reason == "tool_calls" else reason
        out.update(ollama_timings(final.stats))
        if not self.chat:
            out["context"] = list(final.prompt_token_ids) + list(final.token_ids)
        return out


def _args(arguments) -> dict:
    if isinstance(arguments, dict):
        return arguments
    return {"value": arguments}  # Ollama's clients require an object


async def _stream(
    events: AsyncIterator, run: EngineRun, reply: ReplyAssembler, shape: _Shape
) -> AsyncIterator[str]:
    try:
        async for event in events:
            if isinstance(event, TokenEvent):
                d = reply.token(event)
                if d:
                    yield _line(shape.piece(d))
            elif isinstance(event, Finished):
                yield _line(shape.final(reply.finish(event), reply, event))
            elif isinstance(event, Failed):
                yield _line({"error": failure(event.message).message})
    finally:
        run.close()
