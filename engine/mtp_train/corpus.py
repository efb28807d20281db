"""Offline training text: source code and docs that ship with Python and Debian.

Files are picked deterministically (sorted, then an evenly spaced subset up to a
character budget) so the same machine yields the same corpus and the model card
can list exactly what was read.
"""

from __future__ import annotations

import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

DOC_SUFFIXES = (".md", ".txt", ".rst")
WEB_SUFFIXES = (".js", ".html", ".css")
FILE_CHARS = 6000  # read at most this much of a file: many files beat a few long ones


@dataclass(frozen=True)
class TextFile:
    kind: str  # "code" | "docs"
    path: Path


def _readable(path: Path, max_bytes: int = 400_000) -> str | None:
    try:
        if path.stat().st_size > max_bytes:
            return None
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return text[:FILE_CHARS] if text.strip() else None


def _spread(paths: list[Path], budget_chars: int) -> list[Path]:
    """An evenly spaced subset of sorted paths whose texts fit in budget_chars."""
    paths = sorted(paths)
    if not paths:
        return []
    chosen: list[Path] = []
    used = 0
    # Visit in a stride order that covers the whole list early (varied content).
    stride = max(1, len(paths) // 50)
    order = [p for start in range(stride) for p in paths[start::stride]]
    for p in order:
        text = _readable(p)
        if text is None:
            continue
        chosen.append(p)
        used += len(text)
        if used >= budget_chars:
            break
    return chosen


def stdlib_sources() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [
        p
        for p in root.rglob("*.py")
        if not any(
            part in ("test", "tests", "idlelib", "site-packages", "encodings") for part in p.parts
        )
    ]


def web_sources() -> list[Path]:
    """JavaScript, HTML and CSS shipped inside installed Python packages."""
    roots = {Path(sysconfig.get_paths()["purelib"]), Path(sys.prefix)}
    found: set[Path] = set()
    for root in roots:
        for suffix in WEB_SUFFIXES:
            found.update(p for p in root.rglob(f"*{suffix}") if ".min." not in p.name)
    return sorted(found)


def doc_sources(root: Path = Path("/usr/share/doc")) -> list[Path]:
    if not root.is_dir():
        return []
    return [p for p in root.rglob("*") if p.suffix in DOC_SUFFIXES and p.is_file()]


def default_corpus(code_chars: int = 200_000, docs_chars: int = 60_000) -> list[TextFile]:
    """Python stdlib source + web files from site-packages (code), Debian docs (docs)."""
    code = _spread(stdlib_sources(), int(code_chars * 0.85))
    code += _spread(web_sources(), code_chars - sum(len(_readable(p) or "") for p in code))
    docs = _spread(doc_sources(), docs_chars)
    return [TextFile("code", p) for p in code] + [TextFile("docs", p) for p in docs]


def files_from_args(paths: list[str]) -> list[TextFile]:
    """User-given files and folders (folders: every readable text file inside)."""
    out: list[TextFile] = []
    for given in paths:
        p = Path(given).expanduser()
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for f in files:
            if _readable(f) is None:
                continue
            kind = "docs" if f.suffix in DOC_SUFFIXES else "code"
            out.append(TextFile(kind, f))
    return out


def token_windows(tokenizer, files: list[TextFile], window: int) -> list[tuple[str, list[int]]]:
    """(kind, ids) windows of exactly ``window`` tokens.

    Files of a kind are joined into one stream (a header line per file), so short
    files still fill whole windows and every batch has one length.
    """
    out: list[tuple[str, list[int]]] = []
    for kind in sorted({f.kind for f in files}):
        stream: list[int] = []
        for f in (f for f in files if f.kind == kind):
            text = _readable(f.path)
            if text is None:
                continue
            stream += tokenizer.encode(f"# {f.path.name}\n{text}\n\n", add_special_tokens=False)
        for start in range(0, len(stream) - window + 1, window):
            out.append((kind, stream[start : start + window]))
    return out
