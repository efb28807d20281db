"""A drafter trained on a user's own chats, as the Train page makes it, against the
untrained head and the shipped one, in one process.

1. A user's history: the model's greedy replies to ``--chats`` coding requests
   (one template family, as a user who asks for one kind of help), stored in a
   fresh conversations database exactly as the app stores them.
2. A training job on those chats (engine/mtp_train/job.py, what Start runs), which
   measures first- and second-draft acceptance on held-out replies before training
   (the head as initialised) and after.
3. Real decoding on requests of the same kind that neither saw: decoder off vs the
   new decoder vs the shipped head, temperature 0, same tokens required.

    python benchmarks/bench_train_from_chats.py [--model NAME] [--chats 64] [--steps 150]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import engine  # noqa: F401  (first: picks the CPU BLAS before mlx loads)

# isort: split
TASKS = (
    "reverse the words in a sentence", "count vowels in a string", "check if a year is a leap year",
    "find the largest of three numbers", "sum the digits of a number", "convert a list to a set",
    "remove punctuation from a string", "merge two dictionaries", "find the mode of a list",
    "check if a list is sorted", "compute the average of a list", "capitalize every word",
    "find duplicates in a list", "swap two variables", "count lines in a file",
    "convert minutes to hours and minutes", "check if a string is a number", "zip two lists",
    "find the index of an item", "print a multiplication table", "split a list into chunks",
    "compute the power of a number", "filter even numbers", "join a list of strings",
    "read a file into a list of lines", "sort a dictionary by value", "find common items",
    "compute a running total", "check if two lists are equal", "make an acronym from words",
    "count words longer than five letters", "build a frequency table of letters",
    "compute the median of a list", "check whether a number is a perfect square",
    "convert a string to title case", "find the shortest word", "pad a number with zeros",
)  # fmt: skip
FORMS = (
    "Write a Python function to {t}.",
    "How do I {t} in Python? Show the code.",
    "Give me a short Python snippet that can {t}.",
)


def prompts() -> tuple[list[str], list[str]]:
    """(the user's history, unseen requests of the same kind)."""
    everything = [f.format(t=t) for t in TASKS for f in FORMS]
    return [p for i, p in enumerate(everything) if i % 7], [p for i, p in enumerate(everything) if not i % 7]  # fmt: skip


def store_history(loaded, model_id: str, db: Path, texts: list[str], max_new: int) -> int:
    from engine.events import ChatMessage, TokenRecord
    from engine.mtp_train.data import generate_states
    from engine.storage import ConversationStore

    eos = set(getattr(loaded.tokenizer, "eos_token_ids", None) or [])
    stored = 0
    with ConversationStore(db) as store:
        for lo in range(0, len(texts), 24):
            batch = texts[lo : lo + 24]
            ids = [list(loaded.chat.render([ChatMessage("user", t)]).token_ids) for t in batch]
            for text, prompt, rec in zip(batch, ids, generate_states(loaded.model, ids, max_new, eos), strict=True):  # fmt: skip
                reply = [int(t) for t in rec["tokens"].tolist()[len(prompt) :]]
                conv = store.create_conversation(text[:40])
                store.add_message(conv.id, "user", text)
                tokens = [
                    TokenRecord(i, t, loaded.tokenizer.decode([t]), 0.0, 0.0)
                    for i, t in enumerate(reply)
                ]
                store.add_message(
                    conv.id, "assistant", loaded.tokenizer.decode(reply), model=model_id,
                    finish_reason="stop", prompt_token_ids=prompt, tokens=tokens,
                )  # fmt: skip
                stored += 1
    return stored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="SmolLM2-135M-Instruct")
    ap.add_argument("--chats", type=int, default=64, help="stored replies to train on")
    ap.add_argument("--max-new", type=int, default=160, help="tokens per stored reply")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--unseen", type=int, default=4, help="unseen requests decoded")
    ap.add_argument("--tokens", type=int, default=128, help="tokens per decoded request")
    args = ap.parse_args()

    from engine import library
    from engine.bench import Bench
    from engine.model_loader import load_model
    from engine.mtp_train import job as J

    model_dir = library.resolve_model(args.model)  # before the home moves
    os.environ["LOOKAHEAD_HOME"] = tempfile.mkdtemp(prefix="train-from-chats-")
    loaded = load_model(str(model_dir))
    history, unseen = prompts()
    db = Path(os.environ["LOOKAHEAD_HOME"]) / "conversations.sqlite3"
    t0 = time.perf_counter()
    n = store_history(loaded, args.model, db, history[: args.chats], args.max_new)
    print(f"stored {n} replies in {time.perf_counter() - t0:.0f} s")
    out = J.decoder_folder(args.model)
    spec = J.JobSpec(
        model=str(model_dir),
        out=str(out),
        data=J.DataChoice(chats_of=args.model, database=str(db)),
        train={"steps": args.steps, "batch": 4},
    )
    folder = J.create_job(spec)
    t0 = time.perf_counter()
    final = J.run_job(folder)
    status = J.read_status(folder)
    assert final == "done", status.get("message")
    base, best = status["baseline"]["all"], status["best"]["all"]
    print(f"trained in {time.perf_counter() - t0:.0f} s ({status['positions']} positions)")
    print("\nheld-out replies    | 1st draft | 2nd given 1st")
    print(f"untrained head      | {base['acc1']:8.1%} | {base['acc2_given_1']:8.1%}")
    print(f"trained on chats    | {best['acc1']:8.1%} | {best['acc2_given_1']:8.1%}")
    print(f"ratio               | {best['acc1'] / max(base['acc1'], 1e-9):8.2f}x |")
    print(f"expected speed-up from measured costs: {status['expected']}")

    from engine import decoder_catalog

    choices = decoder_catalog.decoders_for(model_dir, library.local_models())
    shipped = [c.path for c in choices if c.origin == "shipped" and c.ok]
    rows = []
    for label, decoder in (("new decoder", str(out)), *(("shipped head", p) for p in shipped)):
        bench = Bench(str(model_dir), decoder, 2, args.tokens)
        bench.run_once("code", unseen[0], True)  # warm-up
        off = on = 0.0
        acc, first, same = [], [], True
        for text in unseen[: args.unseen]:
            a = bench.run_once("code", text, False)
            b = bench.run_once("code", text, True)
            off += a.tokens / max(a.decode_s, 1e-9)
            on += b.tokens / max(b.decode_s, 1e-9)
            acc.append(b.acceptance)
            first.append(b.per_position[0] if b.per_position else 0.0)
            same &= a.token_ids == b.token_ids
        k = len(acc)
        rows.append((label, sum(first) / k, sum(acc) / k, on / off, same))
    print(f"\nunseen requests (k = 2, {args.unseen} x {args.tokens} tokens)")
    print("decoder      | 1st-position | all drafts | tok/s on/off | identical")
    for label, f, a, ratio, same in rows:
        print(f"{label:12} | {f:11.1%} | {a:9.1%} | {ratio:11.2f}x | {same}")


if __name__ == "__main__":
    main()
