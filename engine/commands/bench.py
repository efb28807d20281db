"""`lookahead bench`: a decoder's speed-up, measured as an A/B against no decoder."""

from __future__ import annotations

import sys
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="A/B benchmark: the same prompts with a decoder off and on",
        description="Runs each prompt with the decoder off and on (alternating, one "
        "process, temperature 0) and prints per prompt kind: tok/s off and on, their "
        "ratio, acceptance, mean accepted length, time to first token and peak memory. "
        "Also writes JSON and a PNG chart.",
    )
    p.add_argument("--model", required=True, help="local model name, hub repo id or folder")
    p.add_argument("--decoder", default="auto", help="auto | lookup | a decoder id or path")
    p.add_argument(
        "--prompts", default="all", help="code, story, chat (comma-separated), all, or a FILE"
    )
    p.add_argument("--draft-tokens", type=int, default=None, help="k (default: adaptive)")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--costs", action="store_true", help="also time verify passes and the head")
    p.add_argument(
        "--out", metavar="DIR", default=".", help="where bench-*.json and .png go (default: .)"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from engine import bench as B
    from engine.errors import EngineError

    prompts = B.load_prompts(args.prompts)
    if args.decoder == "none":
        raise EngineError("--decoder none leaves nothing to compare; name a decoder or auto")
    print(f"loading {args.model} ...", file=sys.stderr)
    bench = B.Bench(args.model, args.decoder, args.draft_tokens, args.max_tokens)

    def show(rec: B.RunRecord) -> None:
        side = "on " if rec.decoder else "off"
        extra = f" accept {rec.acceptance:.0%}" if rec.decoder else ""
        print(
            f"  {rec.kind:<6} {side} {rec.tokens:>4} tok {rec.tps:6.1f} tok/s{extra}"
            f"  {rec.prompt[:48]!r}",
            file=sys.stderr,
        )

    records = bench.run(prompts, show)
    summaries = B.summarize(records)
    meta = B.bench_meta(bench, {"prompts": args.prompts})
    if args.costs:
        meta["costs"] = B.measure_costs(bench)
    print()
    print(f"{meta['model']} | decoder {meta['decoder']} | k {args.draft_tokens or 'adaptive'} "
          f"| {meta['device']}/{meta['blas']}/{meta['dtype']} | temperature 0")  # fmt: skip
    print(B.format_table(summaries))
    if args.costs:
        print(B.format_costs(meta["costs"]))
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    B.write_json(stem.with_suffix(".json"), meta, records, summaries)
    title = f"{Path(meta['model']).name} + {meta['decoder']}"
    B.write_chart(stem.with_suffix(".png"), title, summaries)
    print(f"\nwrote {stem}.json and {stem}.png")
    different = [s.kind for s in summaries if s.identical != s.prompts]
    if different:
        print(f"warning: outputs differed with the decoder on ({', '.join(different)})")
        return 1
    return 0
