"""`lookahead search | pull | models | rm`: the model hub and the local library."""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict

from engine.hub.progress import DownloadProgress, human_bytes, human_duration


def register(sub) -> None:
    p = sub.add_parser("search", help="search the Hugging Face hub for models")
    p.add_argument("query", nargs="?", default="", help="words in the repo name")
    p.add_argument("--all", action="store_true", help="not only models with MLX weights")
    p.add_argument("--author", default=None, help="only this user or organisation")
    p.add_argument("--task", default=None, help="pipeline tag, e.g. text-generation")
    p.add_argument(
        "--sort",
        default="downloads",
        choices=["downloads", "likes", "recent", "created", "trending"],
    )
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run_search)

    p = sub.add_parser("pull", help="download a model from the hub (resumes a partial one)")
    p.add_argument("repo", help="hub repo id, owner/name")
    p.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    p.set_defaults(func=run_pull)

    p = sub.add_parser("models", help="list local models, decoders and unfinished downloads")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run_models)

    p = sub.add_parser("rm", help="delete a local model (or an unfinished download)")
    p.add_argument("model", help="model id as `lookahead models` shows it")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")
    p.set_defaults(func=run_rm)


# -- search


def run_search(args) -> int:
    from engine.hub.describe import human_count
    from engine.hub.search import search_models

    results = search_models(
        args.query,
        mlx_only=not args.all,
        author=args.author,
        task=args.task,
        sort=args.sort,
        limit=args.limit,
    )
    if args.json:
        for m in results:
            print(json.dumps(asdict(m), default=str))
        return 0
    if not results:
        print("no models found" + ("" if args.all else " with MLX weights (try --all)"))
        return 0
    rows = [
        (
            m.id,
            human_count(m.parameters) if m.parameters else "?",
            m.quantization or "?",
            human_bytes(m.size_bytes) if m.size_bytes else "?",
            _mtp_cell(m.decoder, m.mtp),
            m.license or "?",
            "gated" if m.gated else ("private" if m.private else "open"),
            human_count(m.downloads),
            str(m.likes),
            m.last_modified.date().isoformat() if m.last_modified else "?",
        )
        for m in results
    ]
    header = (
        "MODEL",
        "PARAMS",
        "QUANT",
        "SIZE",
        "MTP",
        "LICENSE",
        "ACCESS",
        "DL",
        "LIKES",
        "UPDATED",
    )
    _table(header, rows)
    return 0


def _mtp_cell(decoder: str, mtp: str) -> str:
    if decoder:
        return "decoder" if decoder == "mtp" else "draft"
    return {"weights": "yes", "declared": "declared"}.get(mtp, "-")


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    for line in _table_lines(header, rows):
        print(line)


def _table_lines(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


# -- pull


class ProgressLine:
    """One progress line on stderr: redrawn in place on a terminal, else every few s."""

    def __init__(self, stream=None, interval_s: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval_s
        self._last = time.monotonic()  # a log gets a line every interval, not a 0% line
        self._drawn = False

    def update(self, p: DownloadProgress) -> None:
        pct = 100.0 * p.fraction
        line = (
            f"{human_bytes(p.bytes_done)} / {human_bytes(p.bytes_total)}  {pct:3.0f}%  "
            f"{human_bytes(p.rate_bps)}/s  ETA {human_duration(p.eta_s)}  "
            f"[{p.files_done}/{p.files_total}] {p.current_file}"
        )
        if self.tty:
            width = max(shutil.get_terminal_size().columns - 1, 20)
            self.stream.write("\r" + line[:width].ljust(width))
            self.stream.flush()
            self._drawn = True
        elif p.finished or time.monotonic() - self._last >= self.interval:
            self._last = time.monotonic()
            self.stream.write(line + "\n")
            self.stream.flush()

    def end(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def run_pull(args) -> int:
    from engine.hub.download import check_repo_id, download_model
    from engine.hub.state import read_state

    repo_id = check_repo_id(args.repo)
    line = ProgressLine()
    try:
        result = download_model(repo_id, args.revision, on_progress=line.update)
    except KeyboardInterrupt:
        line.end()
        state = read_state(repo_id)
        kept = (
            f"{human_bytes(state.bytes_done)} of {human_bytes(state.bytes_total)} kept; "
            if state is not None and state.bytes_total
            else ""
        )
        print(
            f"lookahead: download cancelled; {kept}run `lookahead pull {repo_id}` to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        line.end()
    if result.bytes_downloaded == 0:
        print(f"{result.repo_id} is already here ({human_bytes(result.bytes_total)})")
    print(f"ready: {result.repo_id} @ {result.commit[:10]}  {result.path}")
    _print_pairings_of(result.repo_id)
    return 0


def _print_pairings_of(model_id: str) -> None:
    from engine.decoder_catalog import decoder_matches
    from engine.library import local_models

    models = local_models()
    matches = [
        m
        for m in decoder_matches(models)
        if model_id in (m.decoder.id, m.target.id) and m.pairing.ok
    ]
    for m in matches:
        print(f"  decoder {m.decoder.id} pairs with {m.target.id}")


# -- models


def run_models(args) -> int:
    from engine.decoder_catalog import decoder_matches, decoders_for, unpaired_reason
    from engine.hub.state import pending_downloads
    from engine.library import local_models

    models = local_models()
    matches = decoder_matches(models)
    pending = pending_downloads()
    if args.json:
        for m in models:
            row = {k: str(v) if k == "path" else v for k, v in asdict(m).items()}
            row["pairs_with"] = [x.target.id for x in matches if x.decoder == m and x.pairing.ok]
            print(json.dumps(row))
        for p in pending:
            print(json.dumps({"id": p.repo_id, "pending": True, "bytes_done": p.bytes_done,
                              "bytes_total": p.bytes_total}))  # fmt: skip
        return 0
    chat = [m for m in models if not m.is_decoder]
    decoders = [m for m in models if m.is_decoder]
    if not models and not pending:
        print("no local models yet: `lookahead search QUERY`, then `lookahead pull REPO`")
        return 0
    choices = {m.id: [c for c in decoders_for(m, models, matches) if c.kind != "lookup"]
               for m in chat}  # fmt: skip
    rows = [
        (m.id, m.model_type, m.quantization or "-", human_bytes(m.size_bytes), m.source,
         _mtp_column(m, choices[m.id]))
        for m in chat
    ]  # fmt: skip
    if rows:
        header, *lines = _table_lines(("MODEL", "TYPE", "QUANT", "SIZE", "SOURCE", "MTP"), rows)
        print(header)
        for target, line in zip(chat, lines, strict=True):
            print(line)
            for c in choices[target.id]:
                name = f"draft model {c.value}" if c.kind == "draft" else f"decoder {c.value}"
                if c.origin == "built-in":
                    name = "built-in DSpark" if c.kind == "dspark" else "built-in MTP"
                if c.origin == "shipped":
                    name += " (shipped with Lookahead)"
                verdict = "pairs with it" if c.ok else "does not pair"
                print(f"  └ {name} {verdict}: {c.reason}")
    if decoders:
        print("\nDecoders")
        for d in decoders:
            paired = [x.target.id for x in matches if x.decoder == d and x.pairing.ok]
            what = f"{d.decoder_format} {d.decoder_kind}, {human_bytes(d.size_bytes)}"
            if paired:
                print(f"  {d.id} ({what}): pairs with {', '.join(paired)}")
            else:
                print(f"  {d.id} ({what}): pairs with nothing here: {unpaired_reason(d, matches)}")
    if pending:
        print("\nUnfinished downloads")
        for p in pending:
            print(
                f"  {p.repo_id}: {human_bytes(p.bytes_done)} of {human_bytes(p.bytes_total)}"
                f" (resume: lookahead pull {p.repo_id}"
                + (f" --revision {p.revision}" if p.revision != "main" else "")
                + f"; discard: lookahead rm {p.repo_id})"
            )
    return 0


def _mtp_column(model, choices) -> str:
    """built-in / dropped (config only) / decoder (a separate MTP head pairs) / -."""
    if model.mtp == "weights" and any(c.origin == "built-in" and c.ok for c in choices):
        return "built-in"
    if any(c.ok and c.kind == "mtp" for c in choices):
        return "decoder"
    return {"declared": "dropped", "weights": "refused"}.get(model.mtp, "-")


# -- rm


def run_rm(args) -> int:
    from engine.errors import ModelNotFound
    from engine.hub import cache
    from engine.library import delete_model, find_model

    try:
        m = find_model(args.model)
        what = f"{m.id} ({human_bytes(m.size_bytes)})"
    except ModelNotFound:
        folder = cache.repo_folder(args.model.strip("/")) if "/" in args.model else None
        if folder is None or not folder.is_dir():
            raise
        what = f"the unfinished download of {args.model} ({human_bytes(cache.dir_size(folder))})"
    if not args.yes and sys.stdin.isatty():
        answer = input(f"Delete {what}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("kept")
            return 1
    removed = delete_model(args.model)
    print(f"deleted {removed.id}, freed {human_bytes(removed.freed_bytes)}")
    return 0
