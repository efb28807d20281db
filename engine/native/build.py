"""Build the native kernels: ``python -m engine.native.build`` (tools/bootstrap.sh runs it).

Compiles engine/native/_skinny*.so with CMake against the installed mlx wheel's
headers and CMake config, and nanobind. Never fails the install: without a compiler,
CMake or nanobind it prints why and exits 0, and the engine falls back to mx.matmul.
``--strict`` exits 1 instead (CI).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def target_path() -> Path:
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return HERE / f"_skinny{suffix}"


def missing_tools() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"the skinny kernel is built on Linux only (this is {sys.platform})"
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        import nanobind  # noqa: F401
    except ImportError:
        return "nanobind is not installed (pip install nanobind)"
    return None


def up_to_date() -> bool:
    """The module exists, is newer than its sources, and was built against this mlx."""
    dest = target_path()
    if not dest.exists():
        return False
    sources = [*HERE.glob("*.cpp"), *HERE.glob("*.h"), HERE / "CMakeLists.txt"]
    newest = max(p.stat().st_mtime for p in sources)
    import mlx

    mlx_lib = Path(mlx.__path__[0]) / "lib"
    libs = list(mlx_lib.glob("libmlx*"))
    if libs:
        newest = max(newest, *(p.stat().st_mtime for p in libs))
    return dest.stat().st_mtime > newest


def build(verbose: bool = False) -> Path:
    """Compile and copy the module next to this file. Raises on failure."""
    why = missing_tools()
    if why:
        raise RuntimeError(why)
    out = None if verbose else subprocess.DEVNULL
    with tempfile.TemporaryDirectory(prefix="lookahead-native-") as tmp:
        configure = [
            "cmake",
            "-S",
            str(HERE),
            "-B",
            tmp,
            f"-DPython_EXECUTABLE={sys.executable}",
            "-DCMAKE_BUILD_TYPE=Release",
        ]
        for cmd in (configure, ["cmake", "--build", tmp, "-j", "2"]):
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True)
            if done.returncode != 0:
                tail = "\n".join(done.stderr.strip().splitlines()[-15:])
                raise RuntimeError(f"{' '.join(cmd[:2])} failed:\n{tail}")
        built = sorted(Path(tmp).glob("_skinny*.so"))
        if not built:
            raise RuntimeError("the build produced no _skinny module")
        dest = target_path()
        tmp_dest = dest.with_suffix(".tmp")
        shutil.copy2(built[0], tmp_dest)
        tmp_dest.replace(dest)  # atomic: a running engine keeps its mapped copy
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strict", action="store_true", help="exit 1 when the build fails")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = p.parse_args(argv)
    if not args.force and up_to_date():
        print(f"{target_path().name} is up to date")
        return 0
    try:
        dest = build(args.verbose)
    except (RuntimeError, OSError) as e:
        print(f"native kernel not built, using mx.matmul: {e}", file=sys.stderr)
        return 1 if args.strict else 0
    print(f"built {dest.relative_to(HERE.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
