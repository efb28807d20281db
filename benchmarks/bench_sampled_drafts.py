"""Drafting at temperature > 0: greedy drafts vs drafts sampled from the drafter's own
distribution, in one process, on the same prompts and seeds.

Greedy drafts are accepted with probability p(draft); sampled ones with
min(1, p/q), which accepts sum(min(p, q)) on average. Both leave the output's
distribution unchanged (tests/engine/test_draft_model.py checks that); this measures
what each costs and gains: first-position and overall acceptance, mean tokens per
verify pass and tok/s, with the ratio sampled / greedy.

    python benchmarks/bench_sampled_drafts.py [--model NAME] [--decoder auto] \\
        [--temperature 0.7] [--tokens 96] [--k 2] [--seeds 3]
"""

from __future__ import annotations

import argparse

import engine  # noqa: F401  (first: picks the CPU BLAS before mlx loads)

# isort: split
from engine.bench import PROMPT_SETS
from engine.events import ChatMessage, Finished, Generate
from engine.service import EngineService
from engine.settings import DecoderSettings, SamplingSettings


def run(service, model, decoder, prompt, seed, args, sampled) -> Finished:
    command = Generate(
        f"{'s' if sampled else 'g'}-{seed}-{hash(prompt) & 0xFFFF}",
        model,
        (ChatMessage("user", prompt),),
        sampling=SamplingSettings(
            temperature=args.temperature, seed=seed, max_tokens=args.tokens, max_loop_count=0
        ),
        decoder=DecoderSettings(
            decoder, draft_tokens=args.k, adaptive=False, sampled_drafts=sampled
        ),
    )
    return service.run(command)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="SmolLM2-135M-Instruct")
    p.add_argument("--decoder", default="auto")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--tokens", type=int, default=96)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    service = EngineService().start()
    try:
        service.run(Generate("warm", args.model, (ChatMessage("user", "hi"),),
                             sampling=SamplingSettings(max_tokens=4),
                             decoder=DecoderSettings(args.decoder, draft_tokens=1, adaptive=False)))  # fmt: skip
        totals = {
            s: {"drafted": 0, "accepted": 0, "first_d": 0, "first_a": 0, "tok": 0, "s": 0.0,
                "rounds": 0, "decoder": ""}
            for s in (False, True)
        }  # fmt: skip
        for prompt in PROMPT_SETS["code"]:
            for seed in range(args.seeds):
                for sampled in (False, True):  # alternate, so drift hits both alike
                    st = run(service, args.model, args.decoder, prompt, seed, args, sampled).stats
                    t = totals[sampled]
                    t["drafted"] += st.drafted
                    t["accepted"] += st.accepted
                    per = st.per_position_acceptance
                    rounds = st.draft_rounds
                    t["first_d"] += rounds
                    t["first_a"] += round(per[0] * rounds) if per else 0
                    t["tok"] += st.generation_tokens
                    t["s"] += st.generation_tokens / st.generation_tps if st.generation_tps else 0
                    t["rounds"] += st.verify_rounds
                    t["decoder"] = st.decoder or ""
    finally:
        service.close()
    print(f"{args.model} + {totals[True]['decoder']} | T={args.temperature} | k={args.k} | "
          f"{len(PROMPT_SETS['code'])} code prompts x {args.seeds} seeds x {args.tokens} tokens")  # fmt: skip
    rows = {}
    for sampled, t in totals.items():
        name = "sampled" if sampled else "greedy"
        rows[name] = {
            "first": t["first_a"] / max(t["first_d"], 1),
            "overall": t["accepted"] / max(t["drafted"], 1),
            "per_pass": t["tok"] / max(t["rounds"], 1),
            "tps": t["tok"] / t["s"] if t["s"] else 0.0,
        }
        r = rows[name]
        print(f"  {name:8} drafts: first-position acceptance {r['first']:.0%}, overall "
              f"{r['overall']:.0%}, {r['per_pass']:.2f} tokens per pass, {r['tps']:.1f} tok/s")  # fmt: skip
    g, s = rows["greedy"], rows["sampled"]
    print(f"  sampled / greedy: acceptance {s['overall'] / max(g['overall'], 1e-9):.2f}x, "
          f"tok/s {s['tps'] / max(g['tps'], 1e-9):.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
