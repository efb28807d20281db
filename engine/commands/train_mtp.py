"""`lookahead train-mtp`: train an MTP head for a model that has none.

Three stages, each resumable: (1) cache the target's hidden states and its own
predictions over self-generated replies and offline text, (2) train the head by
self-distillation, checkpointing as it goes, (3) write a decoder repo the engine
pairs with the model by itself.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "train-mtp",
        help="train an MTP decoder head for a model (self-distillation)",
        description="Train a DeepSeek-style MTP head (one decoder block of the model's own "
        "kind, initialised from its last layer) to predict the model's own next-next "
        "token, and write it as a decoder repo. Interrupted runs resume.",
    )
    p.add_argument("--model", required=True, help="local model name, hub repo id or folder")
    p.add_argument(
        "--data",
        nargs="*",
        default=None,
        metavar="FILE",
        help="text files or folders to train on (default: Python stdlib source, web files "
        "from site-packages and /usr/share/doc text)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="decoder repo to write")
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
    p.set_defaults(func=run)


def _bar(total: int, desc: str, unit: str, initial: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, ncols=110)


def run(args) -> int:
    import shutil

    from engine import paths
    from engine.errors import EngineError
    from engine.model_loader import load_model
    from engine.mtp_train import data as D
    from engine.mtp_train.corpus import files_from_args
    from engine.mtp_train.train import TrainConfig, Trainer

    print(f"loading {args.model} ...", file=sys.stderr)
    loaded = load_model(args.model)
    files = None
    if args.data is not None:
        files = files_from_args(args.data)
        if not files:
            raise EngineError("--data: no readable text files found")
    prompts = [] if args.no_self_gen else None

    bar = None
    t0 = time.perf_counter()

    def data_progress(unit: str, done: int, planned: int) -> None:
        nonlocal bar
        if bar is None:
            bar = _bar(planned, "target states", "tok", 0)
        bar.total = planned
        bar.n = done
        bar.set_postfix_str(unit)
        bar.refresh()

    recipe = D.prepare(loaded, files, prompts, args.max_new, data_progress)
    if bar is not None:
        bar.close()
    data = D.load_dataset(recipe)
    data_seconds = time.perf_counter() - t0
    print(f"data: {len(data.tokens)} positions in {data.n_sequences} sequences", file=sys.stderr)

    key = hashlib.sha256(f"{recipe}|{Path(args.out).resolve()}".encode()).hexdigest()[:10]
    work = Path(args.work) if args.work else paths.cache_dir() / "mtp-runs" / key
    if args.fresh and work.exists():
        shutil.rmtree(work)
    cfg = TrainConfig(
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
    trainer = Trainer(loaded, data, work, cfg)
    if trainer.state.step:
        print(f"resuming from step {trainer.state.step} ({work})", file=sys.stderr)
    tbar = _bar(cfg.steps, "training", "step", trainer.state.step)
    last_val: dict = trainer.state.history[-1] if trainer.state.history else {}

    def on_step(state, info: dict) -> None:
        nonlocal last_val
        last_val = info.get("val", last_val)
        post = f"loss {info['loss']:.3f}"
        if last_val:
            post += f" | val accept {last_val['all']['acc1']:.1%}"
            post += f" (2nd {last_val['all']['acc2_given_1']:.0%})"
        tbar.set_postfix_str(post)
        tbar.update(1)

    try:
        state = trainer.run(on_step)
    except KeyboardInterrupt:
        trainer.save_checkpoint()
        tbar.close()
        print(f"\ninterrupted at step {trainer.state.step}; run again to resume", file=sys.stderr)
        return 130
    tbar.close()
    out = _export(args, loaded, data, trainer, state, data_seconds)
    best = state.best
    print(f"wrote {out}: best step {best.get('step')}, validation acceptance "
          f"{best['all']['acc1']:.1%} first draft, {best['all']['acc2_given_1']:.1%} second")  # fmt: skip
    return 0


def data_facts(data) -> dict:
    """Tokens per source kind, for the config and the model card."""
    import numpy as np

    lengths = np.diff(data.offsets)
    by_kind: dict[str, int] = {}
    for kind, n in zip(data.kinds, lengths, strict=True):
        by_kind[kind] = by_kind.get(kind, 0) + int(n)
    m = data.manifest
    return {
        "self_generated": (
            f"greedy replies to {m.get('prompts', 0)} built-in chat prompts "
            f"(up to {m.get('max_new_tokens')} new tokens each; prompt tokens included)"
        ),
        "text": f"{len(m.get('files', []))} files in windows of {m.get('window')} tokens",
        "tokens_by_kind": by_kind,
        "total_tokens": int(sum(lengths)),
    }


def _states_seconds(data) -> float:
    """Compute time of the data set's units, whenever they were built (cached or not)."""
    from engine.mtp_train.data import read_manifest

    units = read_manifest(Path(data.manifest["folder"]))["units"]
    return sum(units.get(u, {}).get("seconds", 0.0) for u in data.manifest["units"])


def _export(args, loaded, data, trainer, state, data_seconds: float) -> Path:
    from engine.mtp_train.export import export_decoder, head_weights_from
    from engine.runtime import runtime_info

    info = runtime_info()
    cfg = trainer.cfg
    trained = {
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
        "init": cfg.init,
        "target_states_minutes": round(_states_seconds(data) / 60, 1),
        "data_wall_minutes_this_run": round(data_seconds / 60, 1),
        "train_minutes": round(state.seconds / 60, 1),
        "hardware": f"{info.device}, {info.blas}, {loaded.dtype}",
        "validation": {k: v for k, v in state.best.items() if isinstance(v, dict)},
        "files": data.manifest.get("files", []),
    }
    return export_decoder(
        Path(args.out),
        head_weights_from(trainer.best_head_path()),
        trainer.draft_ids,
        loaded.path.name,
        loaded.path,
        loaded.config,
        trained,
        dtype=args.dtype,
        tokenizer_hash=not args.any_tokenizer_file,
    )
