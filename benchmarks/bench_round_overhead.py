"""Python overhead per decoding step and per verification round, on a tiny model.

On a model this small the forward pass costs next to nothing, so what is timed is
the loop around it: sampling, token records, the stream, drafting bookkeeping,
rollback. That is what decides the speed-up on a GPU, where a pass over several
tokens costs about what one does. Variants, alternating in one process on the same
weights (loaded once by the engine's loader), temperature 0:

  mlx-lm    mlx_lm.generate.generate_step: seconds per token
  plain     engine Generation without a drafter: seconds per token
  round k   engine Generation with a scripted drafter that proposes the next k tokens
            of the greedy answer (every draft accepted): seconds per verify round
  reject k  the same with k wrong drafts (every round rolls back): seconds per round

Each figure is the median over runs of (decode time / steps or rounds). Targets
(issue #17): plain <= 1.05x mlx-lm; a round <= 1.3x a plain step. An accepted round
also emits k + 1 tokens (records, detokenizing, events), so its cost per token is
printed as well.

    python benchmarks/bench_round_overhead.py [--tokens 200] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import mlx.core as mx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.chat import Prompt
from engine.drafters.policy import DraftLengthPolicy
from engine.events import TokenEvent
from engine.generate import Generation
from engine.model_loader import load_model
from engine.settings import SamplingSettings
from tests.tiny_models import make_tiny_model


class ScriptedDrafter:
    """Proposes what the script says comes next: the greedy answer (all accepted) or,
    with ``wrong``, a token the model never picks there (all rejected)."""

    needs_hidden = False

    def __init__(self, answer: list[int], wrong: bool, vocab: int):
        self.name = "scripted"
        self.answer, self.wrong, self.vocab = answer, wrong, vocab
        self.pos = 0

    def begin(self, prompt_ids, hidden, reused) -> None:
        self.pos = 0

    def propose(self, last_token: int, k: int) -> list[int]:
        nxt = self.answer[self.pos + 1 : self.pos + 1 + k]
        if self.wrong:
            return [(t + 1) % self.vocab for t in nxt]
        return nxt

    def draft_logprobs(self):
        return None

    def commit(self, verified, next_token, hidden) -> None:
        self.pos += len(verified)

    def memory_bytes(self) -> int:
        return 0

    def close(self) -> None:
        pass


def generation(loaded, prompt, n, drafter=None, k=0):
    times: list[float] = []

    def emit(ev) -> None:
        if isinstance(ev, TokenEvent):
            times.append(time.perf_counter())

    gen = Generation(
        "bench",
        loaded,
        prompt,
        SamplingSettings(max_tokens=n, max_loop_count=0),
        emit,
        threading.Event(),
        drafter=drafter,
        policy=DraftLengthPolicy(k=k, adaptive=False) if k else None,
    )
    done = gen.run()
    return done, times


def per_step_mlx_lm(loaded, prompt_ids, n) -> float:
    from mlx_lm.generate import generate_step

    times = []
    for _tok, _ in generate_step(mx.array(prompt_ids), loaded.model, max_tokens=n):
        times.append(time.perf_counter())
    return (times[-1] - times[0]) / (len(times) - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--k", default="1,2,4")
    args = ap.parse_args()
    ks = [int(x) for x in args.k.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        path = make_tiny_model(Path(tmp) / "tiny", seed=3, logit_scale=2.0)
        loaded = load_model(str(path))
    ids = list(range(5, 37))
    prompt = Prompt(tuple(ids), "", False)
    vocab = int(loaded.config.get("vocab_size") or 256)
    reference, _ = generation(loaded, prompt, args.tokens + 20)
    answer = list(reference.token_ids)
    n = args.tokens

    variants = {"mlx-lm": [], "plain": []}
    for k in ks:
        variants[f"round {k}"] = []
        variants[f"reject {k}"] = []
    for _ in range(2):  # warm-up
        per_step_mlx_lm(loaded, ids, 16)
        generation(loaded, prompt, 16)
    for _ in range(args.runs):
        variants["mlx-lm"].append(per_step_mlx_lm(loaded, ids, n))
        done, times = generation(loaded, prompt, n)
        assert list(done.token_ids) == answer[:n]
        variants["plain"].append((times[-1] - times[0]) / (len(times) - 1))
        for k in ks:
            for wrong in (False, True):
                drafter = ScriptedDrafter(answer, wrong, vocab)
                done, times = generation(loaded, prompt, n, drafter, k)
                assert list(done.token_ids) == answer[:n], "drafting changed the output"
                rounds = done.stats.verify_rounds - 1  # the first token is not a round
                key = f"{'reject' if wrong else 'round'} {k}"
                variants[key].append((times[-1] - times[0]) / max(rounds, 1))
    med = {name: statistics.median(v) for name, v in variants.items()}
    print(f"tiny llama ({loaded.parameters:,} parameters), {n} tokens x {args.runs} runs")
    print(f"{'variant':<10}{'us/step':>10}   vs plain step   us/token")
    for name, t in med.items():
        # An accepted round of k drafts gives k + 1 tokens, a rejected one gives 1.
        per = t / (int(name.split()[1]) + 1) if name.startswith("round") else t
        print(f"{name:<10}{t * 1e6:>10.0f}   {t / med['plain']:>12.2f}x   {per * 1e6:>8.0f}")
    print(f"plain step / mlx-lm step = {med['plain'] / med['mlx-lm']:.2f}x (target <= 1.05x)")
    worst = max(med[f"{kind} {k}"] for kind in ("round", "reject") for k in ks)
    print(f"costliest round / plain step = {worst / med['plain']:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
