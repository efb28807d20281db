"""`lookahead import-gguf FILE`: turn a llama.cpp GGUF into a local MLX model."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser(
        "import-gguf",
        help="import a GGUF file as a local MLX model",
        description="Convert a GGUF file (llama, qwen2, qwen3; F16/BF16/F32, Q4_0, Q4_1, "
        "Q8_0, Q4_K, Q6_K) into an MLX model folder in the models dir.",
    )
    p.add_argument("file", metavar="FILE", help="the .gguf file")
    p.add_argument("--name", default=None, help="model name (default: from the file name)")
    p.add_argument("--out", metavar="DIR", default=None, help="folder to create instead")
    p.add_argument("--force", action="store_true", help="replace an existing model folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.gguf.importer import default_model_name, import_gguf

    name = args.name or default_model_name(args.file)
    tty = sys.stderr.isatty()
    last_stage = None

    def progress(fraction: float, stage: str) -> None:
        nonlocal last_stage
        if tty:  # one line, rewritten in place
            print(f"\rimporting {name}: {stage} {fraction:4.0%}", end="", file=sys.stderr)
        elif stage != last_stage:
            print(f"importing {name}: {stage}", file=sys.stderr)
        last_stage = stage

    try:
        path = import_gguf(args.file, out_dir=args.out, name=name, progress=progress,
                           overwrite=args.force)  # fmt: skip
    finally:
        if tty:
            print(file=sys.stderr)
    print(path)
    return 0
