"""How often the starter's MTP head agrees with the model on the bench's own replies.

For each built-in bench prompt the model writes its greedy reply (256 tokens); the
head then runs teacher-forced over the reply (position i: the model's hidden state
at i and token i+1) and we count how often the model's token i+2 is among the
head's top 1..4. Top-1 is the first-draft acceptance a perfect loop would see;
top-n says what a tree of n first-position candidates could reach.

    python benchmarks/mtp_starter/head_agreement.py
"""

from __future__ import annotations

import threading

import engine  # noqa: F401  (loads the fast BLAS before MLX)

# isort: split
import mlx.core as mx

from engine.bench import PROMPT_SETS
from engine.drafters import create_drafter
from engine.events import ChatMessage
from engine.generate import Generation
from engine.model_loader import load_model
from engine.settings import DecoderSettings, SamplingSettings
from engine.target import forward

TOP = (1, 2, 3, 4)


def head_ranking(bundle, seq: list[int], hidden: mx.array) -> list[list[int]]:
    """The head's best len(TOP) tokens at every position, teacher-forced."""
    out = bundle.head(
        bundle.embed(mx.array(seq[1:])[None]), hidden[:, :-1], bundle.head.make_cache()
    )
    if bundle.draft_rows is not None:
        best = mx.argsort(-(out @ bundle.draft_rows.T), axis=-1)[..., : max(TOP)]
        return mx.take(bundle.draft_ids, best)[0].tolist()
    return mx.argsort(-bundle.logits(out), axis=-1)[..., : max(TOP)][0].tolist()


def main() -> None:
    loaded = load_model("SmolLM2-135M-Instruct")
    drafter, _ = create_drafter(loaded, DecoderSettings("auto"))
    bundle = drafter.bundle
    settings = SamplingSettings(max_tokens=256, max_loop_count=0)
    for kind in ("code", "story", "chat"):
        hits = dict.fromkeys(TOP, 0)
        n = 0
        for text in PROMPT_SETS[kind]:
            prompt = loaded.chat.render([ChatMessage("user", text)])
            reply = Generation(
                "agree", loaded, prompt, settings, lambda e: None, threading.Event()
            ).run()
            seq = list(prompt.token_ids) + list(reply.token_ids)
            _, hidden = forward(loaded.model, mx.array(seq)[None], None, True)
            ranking = head_ranking(bundle, seq, hidden)
            for i in range(len(prompt.token_ids) - 1, len(seq) - 2):
                for k in TOP:
                    hits[k] += seq[i + 2] in ranking[i][:k]
                n += 1
        shares = "  ".join(f"top-{k} {hits[k] / n:.1%}" for k in TOP)
        print(f"{kind:6} {n:5} positions  {shares}")


if __name__ == "__main__":
    main()
