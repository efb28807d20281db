"""`lookahead train-mtp`: train an MTP head for a model that has none.

Three stages, each resumable: (1) cache the target's hidden states and its own
predictions over self-generated replies, the user's chats and offline text, (2)
train the head by self-distillation, checkpointing as it goes, (3) write a decoder
repo the engine pairs with the model by itself. The run is a training job
(engine/mtp_train/job.py), the same the app's Train page starts; ``--job DIR`` runs
one the app created (that is how the app starts its worker process).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "train-mtp",
        help="train an MTP decoder head for a model (self-distillation)",
        description="Train a DeepSeek-style MTP head (one decoder block of the model's own "
        "kind, initialised from its last layer) to predict the model's own next-next "
        "token, and write it as a decoder repo. Interrupted runs resume.",
    )
    p.add_argument("--model", help="local model name, hub repo id or folder")
    p.add_argument(
        "--data",
        nargs="*",
        default=None,
        metavar="FILE",
        help="text files or folders to train on (default: Python stdlib source, web files "
        "from site-packages and /usr/share/doc text)",
    )
    p.add_argument("--out", metavar="DIR", help="decoder repo to write")
    p.add_argument(
        "--chats",
        action="store_true",
        help="also train on your own conversations with this model (the app's database)",
    )
    p.add_argument(
        "--no-self-gen",
        action="store_true",
        help="skip the model's own replies to built-in prompts (they are the best data)",
    )
    p.add_argument("--max-new", type=int, default=256, help="tokens per self-generated reply")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch", type=int, default=8, help="windows per step")
    p.add_argument("--window", type=int, default=256, help="positions per window")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--depths", type=int, choices=(1, 2), default=2, help="2: train chaining too")
    p.add_argument("--draft-vocab", type=int, default=8192, help="0 = full vocabulary")
    p.add_argument("--minutes", type=float, default=0.0, help="stop training after this long")
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument(
        "--init", choices=("target", "random"), default="target", help="block initialisation"
    )
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    p.add_argument(
        "--any-tokenizer-file",
        action="store_true",
        help="pair by family, sizes and vocabulary only, not by the tokenizer.json bytes "
        "(for a model that arrives in several packagings, e.g. a GGUF import and the hub repo)",
    )
    p.add_argument("--work", metavar="DIR", default=None, help="checkpoint folder")
    p.add_argument("--fresh", action="store_true", help="ignore an earlier checkpoint")
    p.add_argument("--job", metavar="DIR", help=argparse.SUPPRESS)  # the app's worker
    p.set_defaults(func=run)


def _bar(total: int, desc: str, unit: str, initial: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, ncols=110)


def run(args) -> int:
    import shutil

    from engine import paths
    from engine.errors import EngineError
    from engine.mtp_train import job as J

    if args.job:
        return 0 if J.run_job(Path(args.job)) in ("done", "paused", "cancelled") else 1
    if not args.model or not args.out:
        raise EngineError("train-mtp needs --model and --out")
    data = J.DataChoice(
        chats_of=args.model if args.chats else "",
        builtin_prompts=0 if args.no_self_gen else -1,
        folders=list(args.data or []),
        default_corpus=args.data is None,
    )
    train = dict(
        steps=args.steps,
        batch=args.batch,
        window=args.window,
        lr=args.lr,
        depths=args.depths,
        draft_vocab=args.draft_vocab,
        val_every=args.val_every,
        minutes=args.minutes,
        init=args.init,
    )
    spec = J.JobSpec(
        model=args.model,
        out=str(Path(args.out).resolve()),
        data=data,
        train=train,
        max_new=args.max_new,
        dtype=args.dtype,
        tokenizer_hash=not args.any_tokenizer_file,
    )
    key = hashlib.sha256(f"{spec}".encode()).hexdigest()[:10]
    work = Path(args.work) if args.work else paths.cache_dir() / "mtp-runs" / key
    if args.fresh and work.exists():
        shutil.rmtree(work)
    if (work / "run" / "state.json").exists():
        print(f"resuming ({work})", file=sys.stderr)
    folder = J.create_job(spec, work)
    print(f"loading {args.model} ...", file=sys.stderr)
    bars: dict = {}

    def on_event(event: dict) -> None:
        kind = event["kind"]
        if kind == "data":
            bar = bars.get("data") or bars.setdefault(
                "data", _bar(event["planned"], "target states", "tok")
            )
            bar.total, bar.n = event["planned"], event["done"]
            bar.refresh()
        elif kind == "state" and event.get("state") == "training":
            if "data" in bars:
                bars.pop("data").close()
            status = J.read_status(folder)
            print(f"data: {status.get('positions')} positions in {status.get('sequences')} "
                  "sequences", file=sys.stderr)  # fmt: skip
            bars["train"] = _bar(event["steps"], "training", "step", status.get("step", 0))
        elif kind == "step" and "train" in bars:
            bars["train"].n = event["step"]
            bars["train"].set_postfix_str(f"loss {event['loss']:.3f}" + bars.get("val", ""))
        elif kind == "val" and event.get("step"):
            m = event["metrics"]["all"]
            bars["val"] = f" | val accept {m['acc1']:.1%} (2nd {m['acc2_given_1']:.0%})"

    try:
        final = J.run_job(folder, on_event)
    except KeyboardInterrupt:
        J.request_stop(folder)
        print("\ninterrupted; run again to resume", file=sys.stderr)
        return 130
    finally:
        for bar in bars.values():
            if not isinstance(bar, str):
                bar.close()
    status = J.read_status(folder)
    if final != "done":
        raise EngineError(status.get("message") or f"training {final}")
    r = status["result"]
    print(f"wrote {r['decoder']}: validation acceptance {r['acceptance']:.1%} first draft "
          f"(untrained {r['baseline']:.1%}), {r['acceptance_2']:.1%} second")  # fmt: skip
    return 0


def data_facts(data) -> dict:
    """Tokens per source kind, for the config and the model card."""
    import numpy as np

    lengths = np.diff(data.offsets)
    by_kind: dict[str, int] = {}
    for kind, n in zip(data.kinds, lengths, strict=True):
        by_kind[kind] = by_kind.get(kind, 0) + int(n)
    m = data.manifest
    facts = {
        "self_generated": (
            f"greedy replies to {m.get('prompts', 0)} built-in chat prompts "
            f"(up to {m.get('max_new_tokens')} new tokens each; prompt tokens included)"
        ),
        "text": f"{len(m.get('files', []))} files in windows of {m.get('window')} tokens",
        "tokens_by_kind": by_kind,
        "total_tokens": int(sum(lengths)),
    }
    if m.get("sequences"):
        facts["chats"] = f"{m['sequences']} of your replies, as the model wrote them"
    return facts


def _states_seconds(data) -> float:
    """Compute time of the data set's units, whenever they were built (cached or not)."""
    from engine.mtp_train.data import read_manifest

    units = read_manifest(Path(data.manifest["folder"]))["units"]
    return sum(units.get(u, {}).get("seconds", 0.0) for u in data.manifest["units"])


def trained_facts(loaded, data, trainer, state) -> dict:
    """What the decoder's config and model card say about its training."""
    from engine.runtime import runtime_info

    info = runtime_info()
    cfg = trainer.cfg
    return {
        "method": "self-distillation: label at i = the target's top-8 distribution at i+1",
        "data": data_facts(data),
        "train_sequences": len(trainer.train_seqs),
        "validation_sequences": len(trainer.val_seqs),
        "draft_vocab_coverage_on_validation": round(trainer.coverage, 4),
        "steps": state.step,
        "best_step": state.best.get("step"),
        "batch": f"{cfg.batch} x {cfg.window} positions",
        "optimizer": f"AdamW lr {cfg.lr} (warm-up {cfg.warmup}, cosine to 10%), "
        f"weight decay {cfg.weight_decay}",
        "depths": f"{cfg.depths} (depth-2 loss weight {cfg.depth2_weight})",
        "init": cfg.init if cfg.init in ("target", "random") else "continued from the decoder",
        "target_states_minutes": round(_states_seconds(data) / 60, 1),
        "train_minutes": round(state.seconds / 60, 1),
        "hardware": f"{info.device}, {info.blas}, {loaded.dtype}",
        "validation": {k: v for k, v in state.best.items() if isinstance(v, dict)},
        "files": data.manifest.get("files", []),
    }
