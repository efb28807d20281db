"""The app bundle's recipe agrees with the code, checked without running PyInstaller.

packaging/bundle_config.py lists what the spec collects; these tests hold it to the
.desktop file, the engine's own names and the imports the code makes by name.
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import os
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"


@pytest.fixture(scope="module")
def cfg():
    spec = importlib.util.spec_from_file_location("bundle_config", PACKAGING / "bundle_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def desktop(cfg) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(cfg.DESKTOP_FILE, encoding="utf-8")
    return parser["Desktop Entry"]


def _python_files(*folders: str) -> list[Path]:
    return [p for f in folders for p in (ROOT / f).rglob("*.py") if "__pycache__" not in p.parts]


def _imports(path: Path) -> set[str]:
    """Modules a file imports anywhere (PyInstaller follows these), as dotted names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _import_module_prefixes(path: Path) -> set[str]:
    """Packages whose submodules are imported by a computed name, e.g. the
    ``mlx_lm.models`` of ``importlib.import_module(f"mlx_lm.models.{name}")``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    prefixes = set()
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.JoinedStr)
        ):
            continue
        first = node.args[0].values[0] if node.args[0].values else None
        if isinstance(first, ast.Constant) and str(first.value).endswith("."):
            prefixes.add(str(first.value).rstrip("."))
    return prefixes


def test_desktop_entry_names_the_bundle(cfg, desktop):
    assert desktop["Type"] == "Application"
    assert desktop["Name"] == cfg.APP_NAME
    assert desktop["Exec"].split()[0] == cfg.EXECUTABLE
    assert desktop["Icon"] == cfg.ICON_NAME
    assert desktop["Terminal"] == "false"
    # Qt's X11 window class is the application name app/main.py sets.
    assert desktop["StartupWMClass"] == cfg.APP_NAME
    assert 'setApplicationName("Lookahead")' in (ROOT / "app" / "main.py").read_text()
    assert desktop["Categories"].endswith(";")


def test_executable_is_the_console_script(cfg):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"][cfg.EXECUTABLE] == "app.launcher:main"
    entry = cfg.ENTRY_SCRIPT.read_text()
    assert "from app.launcher import main" in entry


def test_spec_takes_its_names_from_the_config(cfg):
    spec = (PACKAGING / "lookahead.spec").read_text()
    ast.parse(spec)  # valid Python
    assert "import bundle_config as cfg" in spec
    for name in ("name=cfg.EXECUTABLE", "name=cfg.APP_NAME", "cfg.ICON_NAME", "cfg.BUNDLE_ID"):
        assert name in spec, name
    for attr in ("APP_PACKAGES", "DYNAMIC_PACKAGES", "HIDDEN_IMPORTS", "DATA_PACKAGES"):
        assert f"cfg.{attr}" in spec, attr
    assert "excludes=list(cfg.EXCLUDES)" in spec
    assert "runtime_hooks=" in spec and "cfg.RUNTIME_HOOKS" in spec
    for hook in cfg.RUNTIME_HOOKS:
        ast.parse(hook.read_text())


def test_the_build_scripts_use_the_same_names(cfg):
    linux = (PACKAGING / "build_linux.sh").read_text()
    macos = (PACKAGING / "build_macos.sh").read_text()
    for script in (linux, macos):
        assert "packaging/lookahead.spec" in script
        assert "packaging/make_icons.py" in script
        assert f"APP={cfg.APP_NAME}" in script
        assert f"ICON={cfg.ICON_NAME}" in script
        assert "packaging/smoke_test.sh" in script
    assert f"EXE={cfg.EXECUTABLE}" in linux
    assert "packaging/linux/lookahead.desktop" in linux
    assert "hdiutil create" in macos
    for script in ("build_linux.sh", "build_macos.sh", "smoke_test.sh", "linux/install.sh"):
        assert os.access(PACKAGING / script, os.X_OK), f"{script} is not executable"


def test_our_packages_are_collected_whole_and_tests_never(cfg):
    assert set(cfg.APP_PACKAGES) == {"app", "engine", "resources"}
    for name in ("tests", "pytest", "_pytest"):
        assert name in cfg.EXCLUDES
    assert "resources" in cfg.DATA_PACKAGES  # icons and stylesheets are data files
    assert cfg.ICON_SVG.is_file()


def test_modules_imported_by_name_are_collected(cfg):
    prefixes = set()
    for path in _python_files("engine", "app"):
        prefixes |= _import_module_prefixes(path)
    collected = set(cfg.DYNAMIC_PACKAGES) | set(cfg.APP_PACKAGES)
    missing = {p for p in prefixes if not any(p == c or p.startswith(c + ".") for c in collected)}
    assert not missing, f"imported by computed name but not collected: {sorted(missing)}"
    from engine import cli

    for module in cli.COMMAND_MODULES:
        assert module.split(".")[0] in cfg.APP_PACKAGES


# Developer-only code that may import excluded modules: the demo runner's --fake-hub
# (`python -m app.dev.demo models_page --fake-hub`) is built from the test helpers.
DEV_ONLY_IMPORTS = {"app/dev/demo.py": {"tests"}}


def test_nothing_excluded_is_needed(cfg):
    """No excluded module is imported anywhere in the app (outside developer demos),
    and no declared dependency is excluded."""
    excluded = set(cfg.EXCLUDES)
    for path in _python_files("engine", "app", "resources"):
        allowed = DEV_ONLY_IMPORTS.get(path.relative_to(ROOT).as_posix(), set())
        for module in _imports(path):
            top = module.split(".")[0]
            assert top not in excluded or top in allowed, f"{path.relative_to(ROOT)}: {module}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = {
        re.split(r"[\[<>=!;~ ]", dep, maxsplit=1)[0].lower().replace("-", "_")
        for dep in pyproject["project"]["dependencies"]
    }
    assert not declared & {e.lower() for e in cfg.EXCLUDES}


def test_starter_model_matches_the_engine(cfg):
    from engine import starter

    assert cfg.STARTER_PACKAGE == starter.STARTER_PACKAGE
    assert cfg.STARTER_GGUF_FILE == starter.STARTER_GGUF_FILE


def test_bundle_uses_the_pip_apps_data_locations(cfg):
    """Same platformdirs name, and nothing in the bundle redirects the paths."""
    from engine import paths

    assert cfg.APP_NAME == paths.APP_NAME
    hooks = "".join(h.read_text() for h in cfg.RUNTIME_HOOKS)
    spec = (PACKAGING / "lookahead.spec").read_text()
    for text in (hooks, spec, cfg.ENTRY_SCRIPT.read_text()):
        for var in ("LOOKAHEAD_HOME", "LOOKAHEAD_DATA_DIR", "LOOKAHEAD_MODELS_DIR", "HF_HOME"):
            assert var not in text


def test_openblas_fallback_hook_matches_the_config(cfg):
    hook = (PACKAGING / "rthooks" / "blas.py").read_text()
    tree = ast.parse(hook)
    deps = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and node.targets[0].id == "_DEPENDENCIES"
    )
    assert deps == cfg.OPENBLAS_DEPENDENCIES
    assert f'"{cfg.OPENBLAS_BUNDLE_DIR}"' in hook
    assert "libopenblas.so.0" in hook
    from engine import runtime

    assert "libopenblas.so.0" in runtime._BLAS_CANDIDATES  # the soname the hook probes


def test_macos_bundle_metadata(cfg):
    spec = (PACKAGING / "lookahead.spec").read_text()
    assert "BUNDLE(" in spec and '"LSMinimumSystemVersion": cfg.MACOS_MIN_VERSION' in spec
    assert 'target_arch="arm64" if IS_MAC' in spec
    assert re.fullmatch(r"[a-z]+(\.[A-Za-z]+)+", cfg.BUNDLE_ID)
    plist = cfg.MACOS_ENTITLEMENTS.read_text()
    assert "com.apple.security.cs.disable-library-validation" in plist
    assert re.fullmatch(r"\d+\.\d+\.\d+", cfg.version())


def test_packaging_is_not_a_python_package():
    """An __init__.py would shadow the `packaging` library when run from the repo root."""
    assert not (PACKAGING / "__init__.py").exists()
