"""engine/ must run headless: importing any engine module must not need Qt."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_every_engine_module_imports_without_qt():
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys

        class BlockQt:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PySide6", "pyqtgraph", "qasync", "shiboken6"):
                    raise ImportError(f"engine imported {name}")
                return None

        sys.meta_path.insert(0, BlockQt())
        import engine
        names = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
        for name in names:
            importlib.import_module(name)
        assert not any(m.split(".")[0] in ("PySide6", "pyqtgraph", "qasync") for m in sys.modules)
        print(len(names))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 10


def test_app_is_never_imported_by_engine():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "engine"
    offenders = [
        str(p)
        for p in root.rglob("*.py")
        if any(
            line.strip().startswith(("import app", "from app"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []
