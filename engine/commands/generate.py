"""`lookahead generate`: stream a reply to stdout, as text or JSON lines.

JSON lines (``--json``): one object per token, ``{"type": "token", "id", "text",
"logprob", "top": [[id, text, prob], ...], ...}``, then one ``{"type": "stats", ...}``.
Fields are only ever added, never removed (tools parse this).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from engine.errors import EngineError
from engine.events import ChatMessage, Failed, Finished, Generate, LoadProgress, TokenEvent
from engine.settings import THINKING_MODES, DecoderSettings, SamplingSettings


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate a reply to a prompt")
    p.add_argument("--model", required=True, help="local model name, hub repo id or folder")
    p.add_argument("--prompt", required=True, help="the user message (or raw text with --raw)")
    p.add_argument("--system", default=None, help="a system prompt")
    p.add_argument("--raw", action="store_true", help="no chat template: continue the text")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument(
        "--context", type=int, default=None, metavar="TOKENS", help="cap the context window"
    )
    p.add_argument("--temp", type=float, default=0.0, help="temperature (0 = greedy)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--max-loop-count", type=int, default=6, help="0 disables the loop guard")
    p.add_argument("--thinking", choices=THINKING_MODES, default="off")
    p.add_argument("--decoder", default="none", help="none | auto | lookup | a decoder id or path")
    p.add_argument("--draft-tokens", type=int, default=None, help="k (default: adaptive)")
    p.add_argument("--dtype", default="auto", help="auto | native | float32 | float16 | bfloat16")
    p.add_argument("--json", action="store_true", help="JSON lines: tokens, then stats")
    p.add_argument(
        "--hosts",
        default=None,
        metavar="HOSTFILE",
        help="run the model across machines: an mlx.launch JSON hostfile (or a "
        "comma-separated host list); the first host is this machine",
    )
    p.set_defaults(func=run)


def build_request(args) -> Generate:
    from engine.service import new_request_id
    from engine.settings import ModelSettings
    from engine.text_check import invalid_text_message, invalid_text_path

    for flag, value in (
        ("--prompt", args.prompt),
        ("--system", args.system),
        ("--stop", args.stop),
    ):
        if invalid_text_path(value) is not None:
            raise EngineError(invalid_text_message(flag))
    if not args.prompt.strip() and not args.raw:
        raise EngineError("the prompt is empty")
    sampling = SamplingSettings(
        temperature=args.temp,
        top_p=args.top_p,
        top_k=args.top_k,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
        max_tokens=args.max_tokens,
        stop=tuple(args.stop),
        max_loop_count=args.max_loop_count,
    ).validated()
    # --draft-tokens K fixes k; without it k adapts to recent acceptance.
    decoder = DecoderSettings(
        decoder=args.decoder, draft_tokens=args.draft_tokens, adaptive=args.draft_tokens is None
    ).validated()
    common = dict(
        request_id=new_request_id("cli"),
        model=args.model,
        sampling=sampling,
        decoder=decoder,
        thinking=args.thinking,
        load=ModelSettings(dtype=args.dtype).validated(),
        context_limit=getattr(args, "context", None),
    )
    if args.raw:
        return Generate(prompt=args.prompt, **common)
    messages = []
    if args.system:
        messages.append(ChatMessage("system", args.system))
    messages.append(ChatMessage("user", args.prompt))
    return Generate(messages=tuple(messages), **common)


def run(args) -> int:
    from engine.distributed import make_service

    request = build_request(args)
    service = make_service(getattr(args, "hosts", None)).start()
    out = sys.stdout
    try:
        in_thinking = False
        for event in service.stream(request):
            if isinstance(event, TokenEvent):
                if args.json:
                    out.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
                else:
                    if event.channel == "thinking" and not in_thinking:
                        in_thinking = True
                        sys.stderr.write("[thinking] ")
                    elif event.channel == "answer" and in_thinking:
                        in_thinking = False
                        sys.stderr.write("\n[/thinking]\n")
                    (sys.stderr if event.channel == "thinking" else out).write(event.text)
                out.flush()
            elif isinstance(event, LoadProgress) and not args.json and sys.stderr.isatty():
                sys.stderr.write(f"\rloading {event.model}: {event.stage} {event.fraction:.0%}   ")
                sys.stderr.flush()
            elif isinstance(event, Failed):
                raise EngineError(event.message)
            elif isinstance(event, Finished):
                stats = asdict(event.stats)
                stats["finish_reason"] = event.reason
                if args.json:
                    out.write(json.dumps({"type": "stats", **stats}) + "\n")
                else:
                    out.write("\n")
                    s = event.stats
                    line = (
                        f"[{event.reason}] {s.generation_tokens} tokens, "
                        f"{s.generation_tps:.1f} tok/s, prompt {s.prompt_tps:.1f} tok/s, "
                        f"ttft {s.ttft_s:.2f}s, peak {s.peak_memory_gb:.2f} GB, "
                        f"{s.device}/{s.blas}/{s.dtype}"
                    )
                    if s.decoder:
                        line += (
                            f", {s.decoder}: acceptance {s.acceptance_rate:.0%}, "
                            f"mean accepted length {s.mean_accepted_length:.2f}"
                        )
                    if s.ranks > 1:
                        line += (
                            f", {s.ranks} ranks ({s.parallel}): memory "
                            f"{'/'.join(f'{m:.2f}' for m in s.rank_memory_gb)} GB, "
                            f"communication {s.comm_share:.0%} of a step"
                        )
                    sys.stderr.write(line + "\n")
        return 0
    finally:
        service.close()
